"""Workers follow the registry's champion without a restart (as rules reload).

When TRIAGE_MODEL_DIR names a models folder (one holding registry.json: model/registry.py), the worker
scores with a `ChampionScorer`: every `interval_s` it asks which version is the champion, and when that
changed it loads the new model in a background thread while the old one keeps scoring, then swaps in
one assignment. A model call takes the scorer it uses once, so every ticket is scored, from first
text to the version in its note, by one fully loaded model: never a half-loaded one.

Which version is the champion: the Redis key triage:model:champion (written by `triage model
promote` / `rollback`), so all workers, on any machine, follow the same pointer; without that key,
the models folder's registry.json. Workers switch within `interval_s` of each other.
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


def publish(redis: Any, registry: Any) -> dict[str, Any]:
    """Write the registry's champion to Redis, for every worker to follow; returns what was written."""
    v = registry.version("champion")
    pointer = {"n": v.n, "name": v.name, "path": str(Path(registry.path(v)).resolve())}
    redis.set(CHAMPION_KEY, json.dumps(pointer))
    return pointer


def is_models_folder(path: str | Path) -> bool:
    return bool(str(path)) and (Path(path) / "registry.json").is_file()


class ChampionScorer:
    """A Scorer (score, version) over whichever model is the champion now."""

    def __init__(self, models_dir: str | Path, redis: Any = None, *, interval_s: float = 5.0,
                 load: Callable[[Path], Any] | None = None, clock: Callable[[], float] = time.monotonic):
        from model.registry import Registry

        self.registry = Registry(models_dir)
        self.redis = redis
        self.interval_s = interval_s
        self._load = load or load_model_scorer
        self._clock = clock
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None
        self._checked = clock()
        self.swaps = 0
        path = self._wanted()
        self._path = path
        self._scorer = self._load(path)  # the first model loads before the worker takes jobs

    @property
    def version(self) -> str:
        return str(self._scorer.version)

    def score(self, texts: Sequence[str]) -> list[Scores]:
        self._maybe_swap()
        scorer = self._scorer  # one model for the whole call
        return list(scorer.score(texts))

    def _wanted(self) -> Path:
        if self.redis is not None:
            try:
                raw = self.redis.get(CHAMPION_KEY)
            except Exception as e:  # Redis down: keep following the folder, say so once per check
                log.warning("champion pointer unreadable in Redis (%s); reading %s", type(e).__name__,
                            self.registry.file)
                raw = None
            if raw:
                return Path(json.loads(raw)["path"])
        return self.registry.champion_dir().resolve()

    def _maybe_swap(self) -> None:
        now = self._clock()
        if now - self._checked < self.interval_s:
            return
        self._checked = now
        with self._lock:
            if self._loading is not None:
                return
            try:
                wanted = self._wanted()
            except Exception as e:  # a registry mid-edit or unreadable: keep the model we have
                log.warning("champion unknown (%s); scoring with %s", e, self.version)
                return
            if wanted == self._path:
                return
            self._loading = threading.Thread(target=self._swap_to, args=(wanted,), name="champion-load", daemon=True)
            self._loading.start()

    def _swap_to(self, path: Path) -> None:
        try:
            scorer = self._load(path)
        except Exception as e:  # a broken folder must not stop scoring: keep the old model, retry later
            log.error("champion at %s did not load (%s); still scoring with %s", path, e, self.version)
        else:
            old = self.version
            self._scorer, self._path = scorer, path  # the swap: one assignment
            self.swaps += 1
            log.info("champion now %s (was %s)", scorer.version, old)
        finally:
            with self._lock:
                self._loading = None

    def wait_loaded(self, timeout: float = 60.0) -> None:
        """Tests and shutdown: wait for a swap under way."""
        thread = self._loading
        if thread is not None:
            thread.join(timeout)


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
