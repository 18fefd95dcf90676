"""Shards are checked before they are merged, a merge never trains or generates, and the result
files of a run change as one set."""

from __future__ import annotations

import json
import shutil

import pytest

from spqr_fast.config import load_config, parse_config
from spqr_fast.distributed.shards import merge_shards
from spqr_fast.errors import InputError
from spqr_fast.evaluate import Evaluator


@pytest.fixture(scope="module")
def shards(write_config, tmp_path_factory):
    """Two shards of the small config (lora_alpha given as the int 16, as YAML gives it)."""
    cfg = write_config("shards", lambda c: c["models"][0]["bft"].update(lora_alpha=16))
    root = tmp_path_factory.mktemp("shards")
    for i in range(2):
        Evaluator(load_config(cfg), root / f"s{i}").run(shard=(i, 2))
    return root


def _copy(shards, tmp_path):
    dirs = [tmp_path / f"s{i}" for i in range(2)]
    for i, d in enumerate(dirs):
        shutil.copytree(shards / f"s{i}", d, symlinks=True)
    return dirs


def test_a_merge_reuses_the_shards_bft_and_images(shards, tmp_path, monkeypatch):
    import spqr_fast.finetune.trainer as trainer
    import spqr_fast.sampling.stage_generator as sg

    monkeypatch.setattr(trainer, "finetune", lambda *a, **k: pytest.fail("a merge must not train"))
    monkeypatch.setattr(sg, "load_pipeline", lambda *a, **k: pytest.fail("a merge must not generate"))
    config = merge_shards(_copy(shards, tmp_path), tmp_path / "merged")
    results = Evaluator(parse_config(config), tmp_path / "merged").run(require_complete=True)
    assert {r.name for r in results.models} == {"base", "uce", "esd"}


def _manifest(d):
    return json.loads((d / "shard.json").read_text())


def test_an_edited_shard_config_is_refused(shards, tmp_path):
    dirs = _copy(shards, tmp_path)
    m = _manifest(dirs[1])
    m["config"]["generation"]["guidance_scale"] = 9.0  # config_sha left as it was
    (dirs[1] / "shard.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="does not match its config_sha"):
        merge_shards(dirs, tmp_path / "m")


def test_edited_records_are_refused(shards, tmp_path):
    dirs = _copy(shards, tmp_path)
    rel = next(r for r in _manifest(dirs[0])["files"] if r.startswith("records/concept_detector"))
    rec = json.loads((dirs[0] / rel).read_text())
    rec["unsafe"] = not rec["unsafe"]
    (dirs[0] / rel).write_text(json.dumps(rec))
    with pytest.raises(InputError, match="does not match the shard's manifest"):
        merge_shards(dirs, tmp_path / "m")


@pytest.mark.parametrize("kind", ["shard.json", ".json", ".npy"])
def test_truncated_shard_files_are_refused_in_one_line(shards, tmp_path, kind):
    dirs = _copy(shards, tmp_path)
    if kind == "shard.json":
        target = dirs[1] / "shard.json"
    else:
        rel = next(r for r in _manifest(dirs[1])["files"] if r.startswith("records/") and r.endswith(kind))
        target = dirs[1] / rel
    data = target.read_bytes()
    target.unlink()  # hard-linked into the copy's source: replace, do not write through
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        merge_shards(dirs, tmp_path / "m")
    assert "\n" not in str(err.value)


def test_truncated_records_in_a_run_folder_are_named(complete_run, tmp_path):
    from spqr_fast.store import RecordStore

    _, out = complete_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    npy = next((copy / "records").rglob("*.npy"))
    data = npy.read_bytes()
    npy.write_bytes(data[:40])
    store = RecordStore(copy, npy.parent.parent.name)
    with pytest.raises(InputError, match="truncated or corrupt"):
        store.get_array(npy.stem)


def test_temporary_files_of_killed_writes_are_cleaned_on_start(complete_run, tmp_path, capsys):
    from rich.console import Console

    config, out = complete_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    leftovers = [copy / "images" / "ab" / ".x.png.123.tmp", copy / "records" / ".y.json.9.tmp",
                 copy / ".results" / ".tmp-zzz" / "results.json"]
    for f in leftovers:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("partial")
    console = Console(stderr=True, width=200)
    Evaluator(load_config(config), copy, console).run()
    assert not any(f.exists() for f in leftovers)
    assert "removed 3 temporary file(s)" in capsys.readouterr().err
    assert not list(copy.rglob("*.tmp"))


def test_result_files_change_as_one_set(tmp_path, monkeypatch):
    import os

    from spqr_fast import store

    store.publish_outputs(tmp_path, {"results.json": b"old", "report.html": b"old"})
    real_replace = os.replace

    def killed_at_swap(src, dst):
        if str(dst).endswith("current"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", killed_at_swap)
    with pytest.raises(KeyboardInterrupt):
        store.publish_outputs(tmp_path, {"results.json": b"new", "report.html": b"new"})
    assert (tmp_path / "results.json").read_bytes() == b"old" and (tmp_path / "report.html").read_bytes() == b"old"
    monkeypatch.setattr(store.os, "replace", real_replace)
    assert store.remove_temp_files(tmp_path) >= 1
    store.publish_outputs(tmp_path, {"results.json": b"new", "report.html": b"new"})
    assert (tmp_path / "results.json").read_bytes() == b"new" and (tmp_path / "report.html").read_bytes() == b"new"
    assert len(list((tmp_path / ".results").iterdir())) == 2  # the current set and its pointer only


def test_a_full_disk_while_judging_is_named_as_the_disk_not_the_judge(complete_run, tmp_path):
    """A judge whose record write hits ENOSPC (or whose native writer says so in its own
    exception type) is not reported as 'fix the judge': the CLI names the disk."""
    import errno

    from rich.console import Console

    from spqr_fast.errors import JudgeError, as_disk_error
    from spqr_fast.judging import JudgeRunner
    from spqr_fast.keys import FileHasher
    from spqr_fast.store import ImageStore

    config, _ = complete_run
    out = tmp_path / "out"
    out.mkdir()
    runner = JudgeRunner(load_config(config), out, ImageStore(out), FileHasher(None), "cpu", Console(stderr=True))

    class Judge:
        batch_size = 2

    def disk_full(chunk):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "records" / "x.json"))

    def native_disk_full(chunk):
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    def broken(chunk):
        raise ValueError("the judge's own bug")

    from spqr_fast.judges.registry import BY_SECTION

    vqa = BY_SECTION["vqa"]
    with pytest.raises(OSError) as err:
        runner._batches(vqa, Judge(), ["a", "b"], disk_full, lambda n: None)
    assert err.value.errno == errno.ENOSPC
    with pytest.raises(RuntimeError) as err:
        runner._batches(vqa, Judge(), ["a", "b"], native_disk_full, lambda n: None)
    assert as_disk_error(err.value).errno == errno.ENOSPC
    with pytest.raises(JudgeError, match="judge 'vqa' failed"):
        runner._batches(vqa, Judge(), ["a", "b"], broken, lambda n: None)
