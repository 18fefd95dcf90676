"""Ray executor and shards: the same images, records and scores as one local run."""

import json
import os
import sys
from pathlib import Path

import pytest

from spqr_fast.config import load_config
from spqr_fast.distributed.ray_executor import RayExecutor, _Worker
from spqr_fast.distributed.shards import merge_shards, parse_shard, shard_slice
from spqr_fast.errors import InputError, SpqrError
from spqr_fast.evaluate import Evaluator

pytestmark = pytest.mark.heavy  # Ray clusters and sharded full evals


def _run(cfg_path, out, **kw):
    """The run's results as results.json holds them (None for a shard)."""
    results = Evaluator(load_config(cfg_path), out).run(**kw)
    return None if results is None else results.dump()


def _per_image(out):
    rows = [json.loads(x) for x in (out / "per_image.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["model"], r["stage"], r["prompt_set"], r.get("judge", ""), r["prompt_id"],
                                       r["sample_index"]))


class _DyingWorker(_Worker):
    """The production worker, except that the first actor to start its second task exits abruptly
    (once: a marker file records that it happened)."""

    marker = ""  # set by the test before the class is shipped to the actors

    def __init__(self, *args):
        super().__init__(*args)
        self.tasks_started = 0

    def _maybe_die(self) -> None:
        self.tasks_started += 1
        if self.tasks_started >= 2 and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)

    def generate(self, stage, items):
        self._maybe_die()
        return super().generate(stage, items)

    def judge(self, items, ref_paths):
        self._maybe_die()
        return super().judge(items, ref_paths)


def test_ray_executor_equals_local_and_survives_a_killed_worker(small_config, tmp_path, monkeypatch):
    import ray.cloudpickle

    cfg = small_config(generation__batch_size=2)
    local = _run(cfg, tmp_path / "local")
    monkeypatch.setattr(_DyingWorker, "marker", str(tmp_path / "died"))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    monkeypatch.setattr("spqr_fast.evaluate.make_executor", lambda kind, address=None: RayExecutor(address, _DyingWorker))

    def not_in_the_driver(*args, **kwargs):
        raise AssertionError("with Ray the judges run on the workers")

    monkeypatch.setattr("spqr_fast.judging.JudgeRunner.run", not_in_the_driver)  # Ray workers are other processes
    remote = _run(cfg, tmp_path / "ray", executor="ray")
    assert (tmp_path / "died").is_file()  # a worker really died mid-run, and its items were retried
    assert remote["provenance"]["executor"] == "ray"
    assert remote["models"] == local["models"]
    assert remote["provenance"]["judges"] == local["provenance"]["judges"]
    assert _per_image(tmp_path / "ray") == _per_image(tmp_path / "local")
    for png in (tmp_path / "local" / "images").rglob("*.png"):
        assert (tmp_path / "ray" / "images" / png.parent.name / png.name).read_bytes() == png.read_bytes()


def test_merged_shards_equal_one_unsharded_run(small_config, tmp_path):
    cfg = small_config()
    whole = _run(cfg, tmp_path / "whole")
    shards = [tmp_path / f"s{i}" for i in range(3)]
    for i, d in enumerate(shards):
        assert _run(cfg, d, shard=(i, 3)) is None  # a shard is scored by the merge
    sizes = [json.loads((d / "shard.json").read_text())["items"] for d in shards]
    assert min(sizes) > 0 and max(sizes) - min(sizes) <= 1
    config = merge_shards(shards, tmp_path / "merged")
    from spqr_fast.config import parse_config

    merged = Evaluator(parse_config(config), tmp_path / "merged").run(require_complete=True).dump()
    assert merged["models"] == whole["models"]
    assert _per_image(tmp_path / "merged") == _per_image(tmp_path / "whole")


def test_mismatched_or_incomplete_shards_are_refused(small_config, tmp_path):
    a = small_config()
    _run(a, tmp_path / "a0", shard=(0, 2))
    b = small_config(seed=7)
    _run(b, tmp_path / "b1", shard=(1, 2))
    with pytest.raises(InputError, match="different config"):
        merge_shards([tmp_path / "a0", tmp_path / "b1"], tmp_path / "m")
    with pytest.raises(InputError, match=r"shards \[1\] of 2 are missing"):
        merge_shards([tmp_path / "a0"], tmp_path / "m")
    with pytest.raises(InputError, match="not a shard output"):
        merge_shards([tmp_path], tmp_path / "m")


def test_shard_parsing_and_slicing():
    assert parse_shard("0/4") == (0, 4)
    for bad in ("4/4", "x/2", "1", "-1/2"):
        with pytest.raises(SpqrError):
            parse_shard(bad)
    items = list(range(10))
    parts = [shard_slice(items, i, 3) for i in range(3)]
    assert sum(parts, []) == items and all(parts)
