"""The language gate (model/language.py) through the shipped model, the worker's scores and note."""

from __future__ import annotations

import json
import shutil

import pytest

from model.data import SENTIMENT_LABELS, URGENCY_LABELS
from model.language import UNDETERMINED, LanguageGate
from model.runtime import DEFAULT_MODEL_DIR, TriageModel
from worker.decision import note_body
from worker.scoring import ModelScorer, to_scores

GERMAN = "Seit heute Morgen kann sich niemand mehr anmelden, 200 Mitarbeiter sind blockiert. Bitte dringend helfen!"
FRENCH = "Personne ne peut se connecter depuis ce matin, 200 salariés bloqués, c'est inadmissible."
SPANISH = "Hola, el pago se ha cobrado dos veces en mi tarjeta y nadie me responde desde hace una semana."
ENGLISH = "Since this morning nobody can log in, 200 staff are blocked. Please help urgently!"


@pytest.fixture(scope="module")
def model() -> TriageModel:
    return TriageModel(DEFAULT_MODEL_DIR, threads=1)


def test_the_shipped_gate_is_measured_data_in_the_artifact(model):
    meta = json.loads((DEFAULT_MODEL_DIR / "triage.json").read_text())["language"]
    assert meta["supported"] == ["en"] and model.gate.active
    assert 0 < meta["min_supported_probability"] < 1 and meta["min_letters"] >= 0
    langs = meta["per_language_xlmt_train_no_gate"]
    assert set(langs) == {"ar", "de", "en", "es", "fr", "hi", "it", "pt"}
    assert meta["calibration"]["english_withheld"] <= 0.005


def test_english_is_supported_and_scored(model):
    [p] = model.score([ENGLISH])
    assert p.language == "en" and p.language_supported
    assert p.sentiment.reason != "language" and p.urgency.reason != "language"


@pytest.mark.parametrize(("text", "code"), [(GERMAN, "de"), (FRENCH, "fr"), (SPANISH, "es")])
def test_unsupported_language_abstains_with_its_reason_and_keeps_the_guess(model, text, code):
    [p] = model.score([text])
    assert p.language == code and not p.language_supported
    for head, labels in (("sentiment", SENTIMENT_LABELS), ("urgency", URGENCY_LABELS)):
        h = getattr(p, head)
        assert h.abstained and h.label == "unsure" and h.reason == "language"
        assert h.best_guess in labels and abs(sum(h.probabilities.values()) - 1) < 1e-3
    out = p.to_dict()
    assert out["language"] == code and out["urgency"]["reason"] == "language"


def test_mixed_text_takes_the_language_of_most_of_it(model):
    english_with_german_sign_off = ENGLISH + " Our invoices page also times out. Mit freundlichen Grüßen, Jörg"
    german_with_english_error = GERMAN + " Fehlermeldung: 'Internal Server Error'."
    a, b = model.score([english_with_german_sign_off, german_with_english_error])
    assert a.language == "en" and a.language_supported
    assert b.language == "de" and not b.language_supported


@pytest.mark.parametrize("text", ["ok", "Danke!", "Merci", "??", "404"])
def test_very_short_text_is_undetermined_and_scored_as_usual(model, text):
    [p] = model.score([text])
    assert p.language == UNDETERMINED and p.language_supported
    assert p.sentiment.reason != "language" and p.urgency.reason != "language"


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01"])
def test_empty_text_is_undetermined_and_abstains_as_empty(model, text):
    [p] = model.score([text])
    assert p.empty and p.language == UNDETERMINED and p.sentiment.reason == "empty"


def test_gate_thresholds_decide(model):
    gate = model.gate
    assert gate.detect("x" * (gate.min_letters - 1)).code == UNDETERMINED if gate.min_letters else True
    strict = LanguageGate(("en",), 0.999999, 0)
    assert not strict.detect("das ist nicht englisch, wirklich nicht").supported
    assert not LanguageGate().active and LanguageGate().detect(GERMAN).supported  # no gate: reported only
    assert LanguageGate().detect(GERMAN).code == "de"


def test_an_artifact_without_a_gate_reports_the_language_and_scores_everything(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, folder, ignore=shutil.ignore_patterns("figures", "*.md"))
    meta = json.loads((folder / "triage.json").read_text())
    del meta["language"]
    (folder / "triage.json").write_text(json.dumps(meta))
    [p] = TriageModel(folder).score([GERMAN])
    assert p.language == "de" and p.language_supported and p.urgency.reason != "language"


def test_worker_scores_and_note_say_why_a_ticket_was_not_scored(model):
    [de, en] = ModelScorer(model).score([GERMAN, ENGLISH])
    assert de.language == "de" and de.unreadable_language and de.urgency.reason == "language"
    assert de.urgency.best_guess in URGENCY_LABELS
    note = note_body(de, ())
    assert "not scored" in note and "(de)" in note and "does not read" in note
    assert en.language == "en" and not en.unreadable_language and "not scored" not in note_body(en, ())
    again = type(de).from_dict(json.loads(json.dumps(de.to_dict())))
    assert again == de


def test_to_scores_carries_reason_and_best_guess(model):
    [p] = model.score([FRENCH])
    s = to_scores(p)
    assert s.language == "fr" and s.sentiment.reason == "language" and s.sentiment.best_guess == p.sentiment.best_guess


def test_decide_replaces_a_stale_language_tag() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from worker.decision import HeadScore, Scores
    from worker.events import TicketEvent
    from worker.rules import parse_rules
    from worker.triage import decide

    head = HeadScore("low", {"low": 0.9}, 0.9)
    scores = replace(Scores(head, head, "t"), language="de")
    event = TicketEvent("zendesk", "1", "r2", text="x", tags=("triage_language_fr", "vip"))
    d = decide(event, scores, parse_rules("rules: []\n"), datetime(2026, 1, 5, tzinfo=UTC))
    assert "triage_language_de" in d.actions.add_tags and d.actions.remove_tags == ("triage_language_fr",)
    assert d.to_dict()["language"] == "de"
