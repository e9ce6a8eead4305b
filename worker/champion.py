"""Workers follow the registry's champion without a restart (as rules reload), and shadow its challenger.

When TRIAGE_MODEL_DIR names a models folder (one holding registry.json: model/registry.py), the worker
scores with a `ChampionScorer`: every `interval_s` it asks which version is the champion, and when that
changed it loads the new model in a background thread while the old one keeps scoring, then swaps in
one assignment. A model call takes the scorer it uses once, so every ticket is scored, from first
text to the version in its note, by one fully loaded model: never a half-loaded one.

Which version is the champion: the Redis key triage:model:champion (written by `triage model
promote` / `rollback`), so all workers, on any machine, follow the same pointer; without that key,
the models folder's registry.json. Workers switch within `interval_s` of each other.

Shadow mode: while the registry has a challenger, each text is also scored by it, after the champion,
and never written back: only the champion's scores leave the scorer. Both answers go to the Redis stream
triage:shadow (worker/shadow.py), keyed by a hash of the scrubbed text (no ticket text), for
`triage model compare` to score both against what agents later set.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from worker.decision import Scores

log = logging.getLogger(__name__)
CHAMPION_KEY = "triage:model:champion"
CHALLENGER_KEY = "triage:model:challenger"
KEYS = {"champion": CHAMPION_KEY, "challenger": CHALLENGER_KEY}


def publish(redis: Any, registry: Any) -> dict[str, Any]:
    """Write the registry's champion (and challenger, or its absence) to Redis for every worker to follow."""
    state = registry.state()
    out: dict[str, Any] = {}
    for alias, key in KEYS.items():
        if alias not in state.aliases:
            redis.set(key, json.dumps({"none": True}))
            continue
        v = registry.version(alias, state)
        out[alias] = {"n": v.n, "name": v.name, "path": str(Path(registry.path(v)).resolve())}
        redis.set(key, json.dumps(out[alias]))
    return out


def is_models_folder(path: str | Path) -> bool:
    return bool(str(path)) and (Path(path) / "registry.json").is_file()


class _Follower:
    """One alias's model: which folder it names now, and the scorer loaded from it."""

    def __init__(self, owner: ChampionScorer, alias: str):
        self.owner = owner
        self.alias = alias
        self.path: Path | None = None
        self.scorer: Any = None
        self.loading: threading.Thread | None = None
        self.swaps = 0

    def wanted(self) -> Path | None:
        owner = self.owner
        if owner.redis is not None:
            try:
                raw = owner.redis.get(KEYS[self.alias])
            except Exception as e:  # Redis down: follow the folder meanwhile
                log.warning("%s pointer unreadable in Redis (%s); reading %s", self.alias, type(e).__name__,
                            owner.registry.file)
                raw = None
            if raw:
                pointer = json.loads(raw)
                return None if pointer.get("none") else Path(pointer["path"])
        state = owner.registry.state()
        if self.alias not in state.aliases:
            return None
        return owner.registry.path(owner.registry.version(self.alias, state)).resolve()

    def check(self) -> None:
        if self.loading is not None:
            return
        wanted = self.wanted()
        if wanted == self.path:
            return
        if wanted is None:  # no challenger any more: stop shadowing
            self.path, self.scorer = None, None
            return
        self.loading = threading.Thread(target=self._swap_to, args=(wanted,), name=f"{self.alias}-load", daemon=True)
        self.loading.start()

    def _swap_to(self, path: Path) -> None:
        try:
            scorer = self.owner._load(path)
        except Exception as e:  # a broken folder must not stop scoring: keep the old model
            log.error("%s at %s did not load (%s); keeping %s", self.alias, path, e,
                      getattr(self.scorer, "version", "none"))
        else:
            old = getattr(self.scorer, "version", "none")
            self.scorer, self.path = scorer, path  # the swap: one assignment each, scorer first
            self.swaps += 1
            log.info("%s now %s (was %s)", self.alias, scorer.version, old)
            if self.alias == "champion":
                _tell_metrics(str(scorer.version))
        finally:
            self.loading = None


class ChampionScorer:
    """A Scorer (score, version) over whichever model is the champion now; shadows the challenger."""

    def __init__(self, models_dir: str | Path, redis: Any = None, *, interval_s: float = 5.0,
                 load: Callable[[Path], Any] | None = None, clock: Callable[[], float] = time.monotonic,
                 shadow: bool = True, recorder: Any = None):
        from model.registry import Registry

        self.registry = Registry(models_dir)
        self.redis = redis
        self.interval_s = interval_s
        self._load = load or load_model_scorer
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = clock()
        self.champion = _Follower(self, "champion")
        self.challenger = _Follower(self, "challenger") if shadow else None
        path = self.champion.wanted()
        if path is None:
            raise RuntimeError(f"{self.registry.file} names no champion")
        self.champion.path, self.champion.scorer = path, self._load(path)  # loads before the worker takes jobs
        if recorder is None and redis is not None and shadow:
            from worker.shadow import ShadowLog

            recorder = ShadowLog(redis)
        self.recorder = recorder
        if self.challenger is not None:
            self.challenger.check()

    @property
    def version(self) -> str:
        return str(self.champion.scorer.version)

    @property
    def swaps(self) -> int:
        return self.champion.swaps

    def score(self, texts: Sequence[str]) -> list[Scores]:
        self._maybe_check()
        scores = list(self.champion.scorer.score(texts))  # one model for the whole call
        shadow = self.challenger.scorer if self.challenger is not None else None
        if shadow is not None and self.recorder is not None:
            try:
                self.recorder.record(texts, scores, list(shadow.score(texts)))
            except Exception as e:  # shadowing is an experiment: it never fails a ticket
                log.warning("shadow scoring failed (%s); the champion's scores stand", type(e).__name__)
        return scores

    def _maybe_check(self) -> None:
        now = self._clock()
        if now - self._checked < self.interval_s:
            return
        self._checked = now
        with self._lock:
            for follower in (self.champion, self.challenger):
                if follower is None:
                    continue
                try:
                    follower.check()
                except Exception as e:  # a registry mid-edit or unreadable: keep the models we have
                    log.warning("%s unknown (%s); scoring with %s", follower.alias, e, self.version)

    def wait_loaded(self, timeout: float = 60.0) -> None:
        """Tests and shutdown: wait for swaps under way."""
        for follower in (self.champion, self.challenger):
            thread = follower.loading if follower is not None else None
            if thread is not None:
                thread.join(timeout)


def _tell_metrics(version: str) -> None:
    """The model version metric (worker/metrics.py, when there) follows the swap."""
    try:
        from worker.metrics import set_model_version
    except ImportError:
        return
    set_model_version(version)


def load_model_scorer(path: Path, threads: int = 1, batch_size: int = 1) -> Any:
    from model.runtime import TriageModel
    from worker.scoring import ModelScorer

    return ModelScorer(TriageModel(path, threads=threads, batch_size=batch_size))


def champion_scorer(settings: Any) -> ChampionScorer | None:
    """The worker's scorer when TRIAGE_MODEL_DIR names a models folder, else None (a fixed model)."""
    if not is_models_folder(settings.model_dir):
        return None
    from functools import partial

    redis = None
    if settings.redis_url:
        from redis import Redis

        redis = Redis.from_url(settings.redis_url)
    return ChampionScorer(settings.model_dir, redis, load=partial(load_model_scorer, threads=settings.model_threads,
                                                                 batch_size=settings.batch_size))
