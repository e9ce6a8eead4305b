"""Two workers follow the champion through Redis: promote and rollback swap their model without a
restart, a model loads fully before it scores, a broken folder keeps the old model."""

from __future__ import annotations

import threading
from pathlib import Path

from redis import Redis
from test_registry import candidate

from model.registry import Registry
from worker.champion import CHAMPION_KEY, ChampionScorer, champion_scorer, load_model_scorer, publish
from worker.settings import Settings

TEXT = ["The checkout has been down for an hour, we are losing sales!"]


def registry_with_challenger(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "models")
    reg.add(*candidate(tmp_path, "team-7", True))
    return reg


def test_two_workers_swap_on_promote_and_rollback_without_restart(tmp_path: Path, redis: Redis) -> None:
    reg = registry_with_challenger(tmp_path)
    publish(redis, reg)
    workers = [ChampionScorer(reg.root, redis, interval_s=0) for _ in range(2)]
    shipped = workers[0].version
    assert [w.score(TEXT)[0].model_version for w in workers] == [shipped, shipped]
    reg.promote()
    publish(redis, reg)
    for w in workers:
        w.score(TEXT)  # notices the new pointer, loads it in the background, scores with the old one
        w.wait_loaded()
    assert [w.score(TEXT)[0].model_version for w in workers] == ["team-7", "team-7"]
    reg.rollback(reason="test")
    publish(redis, reg)
    for w in workers:
        w.score(TEXT)
        w.wait_loaded()
    assert [w.version for w in workers] == [shipped, shipped] and [w.swaps for w in workers] == [2, 2]
    from worker import metrics

    assert metrics._model_version == shipped  # the version metric followed the swaps


def test_a_model_scores_only_once_fully_loaded(tmp_path: Path, redis: Redis) -> None:
    reg = registry_with_challenger(tmp_path)
    gate = threading.Event()

    def slow_load(path: Path):
        if "v1" in str(path):
            gate.wait(10)  # the new model is still loading
        return load_model_scorer(path)

    worker = ChampionScorer(reg.root, redis, interval_s=0, load=slow_load)
    old = worker.version
    reg.promote()
    publish(redis, reg)
    during = [worker.score(TEXT)[0].model_version for _ in range(3)]
    assert during == [old] * 3  # scored by the old model, whole, while the new one loads
    gate.set()
    worker.wait_loaded()
    assert worker.score(TEXT)[0].model_version == "team-7"


def test_a_broken_champion_keeps_the_old_model(tmp_path: Path, redis: Redis) -> None:
    reg = registry_with_challenger(tmp_path)
    worker = ChampionScorer(reg.root, redis, interval_s=0)
    old = worker.version
    reg.promote()
    publish(redis, reg)
    (reg.root / "v1" / "model.int8.onnx").write_bytes(b"not a model")
    worker.score(TEXT)
    worker.wait_loaded()
    assert worker.version == old and worker.score(TEXT)[0].model_version == old


def test_without_the_redis_pointer_workers_read_the_folder_and_checks_are_spaced(tmp_path: Path,
                                                                                 redis: Redis) -> None:
    reg = registry_with_challenger(tmp_path)
    now = [0.0]
    worker = ChampionScorer(reg.root, None, interval_s=5, clock=lambda: now[0])
    reg.promote()
    worker.score(TEXT)
    assert worker.swaps == 0  # not yet time to look
    now[0] = 6.0
    worker.score(TEXT)
    worker.wait_loaded()
    assert worker.version == "team-7" and redis.get(CHAMPION_KEY) is None


def test_champion_scorer_only_for_a_models_folder(tmp_path: Path) -> None:
    assert champion_scorer(Settings(model_dir="")) is None
    reg = registry_with_challenger(tmp_path)
    follower = champion_scorer(Settings(model_dir=str(reg.root)))
    assert follower is not None
    follower.wait_loaded()  # its challenger loads in the background: let it finish before the test ends
