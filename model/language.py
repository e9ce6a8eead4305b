"""Which language a ticket is written in, and whether the model can read it.

The encoder reads English only: on other languages it gives confident answers that are often wrong.
`LanguageGate` detects the language with py3langid (a naive Bayes model over byte n-grams that ships
inside its wheel; numpy only) and says whether the text is in a language the artifact supports.
What counts as supported, and how sure the detector must be, is data in the artifact's triage.json
(`language`), measured by `model/language_calibration.py`:

    "language": {"supported": ["en"], "min_supported_probability": 0.02, "min_letters": 12,
                 "detector": "py3langid 0.4.0", ...figures...}

- `supported`: the probability the detector gives the supported languages together, at least
  `min_supported_probability`: the text is scored, and its language is the likeliest supported one.
- Otherwise the text is in the detector's likeliest language, and the model abstains
  (reason "language"), still reporting its best guesses.
- Fewer than `min_letters` letters: too short to tell. The language is `und` (undetermined) and the
  text is scored as usual; the confidence floors catch what the model cannot read.

An artifact without a `language` section (triage-v2) gets the language reported and no gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNDETERMINED = "und"
MAX_CHARS = 600  # the detector reads the start of the text: enough to tell, bounded in cost


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1 (639-3 where the detector has no 2-letter code), or "und"
    supported: bool  # the model was trained to read it (or it is too short to tell)
    probability: float  # the detector's probability of `code` (0 for "und")


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENTIFIER


_IDENTIFIER: Any = None


def letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text[:MAX_CHARS])


@dataclass(frozen=True)
class LanguageGate:
    supported: tuple[str, ...] = ("en",)
    min_supported_probability: float = 0.0  # 0: every text is supported (no gate)
    min_letters: int = 12

    @classmethod
    def from_meta(cls, meta: dict | None) -> LanguageGate:
        if not meta:
            return cls(min_supported_probability=0.0)
        return cls(tuple(meta["supported"]), float(meta["min_supported_probability"]), int(meta["min_letters"]))

    @property
    def active(self) -> bool:
        return self.min_supported_probability > 0

    def probabilities(self, text: str) -> dict[str, float]:
        """The detector's probability of each language for the start of `text`."""
        ident = _identifier()
        scores = ident._decide(text[:MAX_CHARS])  # rank() sorts 140 labels: one argmax is all we need
        return {lang: float(p) for lang, p in zip(ident.nb_classes, scores.tolist()) if p > 0}

    def detect(self, text: str) -> Language:
        if letters(text) < self.min_letters:
            return Language(UNDETERMINED, True, 0.0)
        probs = self.probabilities(text)
        supported = {k: probs.get(k, 0.0) for k in self.supported}
        best_supported = max(supported, key=lambda k: supported[k])
        if not self.active or sum(supported.values()) >= self.min_supported_probability:
            if not self.active:  # no gate: report the detector's own best guess
                top = max(probs, key=lambda k: probs[k])
                return Language(top, True, round(probs[top], 4))
            return Language(best_supported, True, round(supported[best_supported], 4))
        top = max(probs, key=lambda k: probs[k])
        return Language(top, False, round(probs[top], 4))
