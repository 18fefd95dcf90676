"""Killed, crowded and starved runs: `kill -9` of the whole process group at points spread over
fine-tuning, generation, judging and writing, then resume; two runs into one folder, two runs
sharing one empty engine cache; a disk that fills up. Each ends exactly where an uninterrupted
run ends."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLI, run_cli, snapshot


def _start(*args) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(CLI + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def _count(folder: Path, pattern: str) -> int:
    return sum(1 for _ in folder.rglob(pattern)) if folder.is_dir() else 0


def _kill_when(proc: subprocess.Popen, condition, timeout: float = 600) -> bool:
    """SIGKILL the process group once `condition()` holds; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the run neither ended nor reached the kill point in time")


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _outcome(out: Path) -> dict:
    """What must not depend on interruptions: scores, per-image records, images, stored judge
    records and the BFT weights (run-time facts like seconds are left out)."""
    keep = ("images/", "records/")
    files = {k: v for k, v in snapshot(out).items() if k.startswith(keep) or k.endswith(".safetensors")
             and "/checkpoints/" not in k}
    return {"models": _results(out)["models"], "per_image": (out / "per_image.jsonl").read_text(), "files": files}


@pytest.fixture(scope="module")
def kill_config(write_config):
    """Longer BFT with a checkpoint every 2 steps, so a kill can land between checkpoints."""
    def edit(cfg):
        for m in cfg["models"]:
            m["bft"].update(steps=6, checkpoint_every=2)
    return write_config("kill", edit)


@pytest.fixture(scope="module")
def uninterrupted(kill_config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    proc = run_cli("eval", kill_config, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_killed_runs_resume_to_the_uninterrupted_result(kill_config, uninterrupted, tmp_path):
    out = tmp_path / "out"
    rng = random.Random(1234)
    points = [
        ("fine-tuning", lambda: _count(out / "bft", "step-*") >= 1),
        ("generation", lambda: _count(out / "images", "*.png") >= 5),
        ("judging", lambda: _count(out / "records", "*.json") >= 4),
        ("judging, features", lambda: _count(out / "records", "*.npy") >= 2),
        ("writing", lambda: (out / ".results").exists()),
    ]
    hit = []
    for phase, condition in points:
        if _kill_when(_start("eval", kill_config, "--out", out), condition):
            hit.append(phase)
    for _ in range(2):  # and at seeded moments, wherever they fall
        proc = _start("eval", kill_config, "--out", out)
        delay = rng.uniform(0.5, 6.0)
        if _kill_when(proc, lambda t=time.monotonic() + delay: time.monotonic() > t):
            hit.append(f"at {delay:.1f} s")
    print(f"kills landed at: {hit}")
    final = run_cli("eval", kill_config, "--out", out)
    assert final.returncode == 0, final.stderr[-3000:]
    assert len(hit) >= 4, f"kills landed only at {hit}"
    assert _outcome(out) == _outcome(uninterrupted), f"kills at {hit}"
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".building-*"))
    assert not list((out / "bft").rglob("checkpoints"))  # finished fine-tunes drop their checkpoints


def test_two_runs_into_one_folder_at_once(complete_run, tmp_path):
    config, reference = complete_run
    out = tmp_path / "out"
    a, b = _start("eval", config, "--out", out), _start("eval", config, "--out", out)
    (_, err_a), (_, err_b) = a.communicate(timeout=900), b.communicate(timeout=900)
    assert a.returncode == 0 and b.returncode == 0, (err_a[-2000:], err_b[-2000:])
    assert "waiting for another spqr-fast run" in err_a + err_b
    assert _results(out)["models"] == _results(reference)["models"]
    assert (out / "per_image.jsonl").read_text() == (reference / "per_image.jsonl").read_text()


def test_two_configs_sharing_one_empty_engine_cache(write_config, tmp_path):
    cache = tmp_path / "engines"

    def on_ort(seed):
        def edit(cfg):
            cfg["seed"] = seed
            cfg["backend"] = {"kind": "ort", "cache_root": str(cache)}
        return write_config(f"ort-{seed}", edit)

    configs = [on_ort(1), on_ort(2)]
    together = [_start("eval", c, "--out", tmp_path / f"together-{i}") for i, c in enumerate(configs)]
    errs = [p.communicate(timeout=900)[1] for p in together]
    assert all(p.returncode == 0 for p in together), [e[-2000:] for e in errs]
    for i in range(len(configs)):  # no export was lost to the other run: nobody fell back to torch
        assert _results(tmp_path / f"together-{i}")["backend_fallbacks"] == []
    for i, c in enumerate(configs):
        alone = run_cli("eval", c, "--out", tmp_path / f"alone-{i}")
        assert alone.returncode == 0, alone.stderr[-2000:]
        assert _outcome(tmp_path / f"together-{i}") == _outcome(tmp_path / f"alone-{i}")
    assert not list(cache.rglob(".building-*"))


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip(reason="mounting a small tmpfs needs root on Linux")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip(reason="this machine does not allow mounting a tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_stops_with_one_line_and_the_run_resumes(complete_run, small_disk):
    config, reference = complete_run
    out = small_disk / "out"
    full = run_cli("eval", config, "--out", out)
    errors = [ln for ln in full.stderr.splitlines() if ln.startswith("error:")]
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-3000:]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "free space" in errors[0]
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    resumed = run_cli("eval", config, "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _results(out)["models"] == _results(reference)["models"]
    assert not list(out.rglob("*.tmp"))


def _read_only(folder: Path) -> None:
    """Make `folder` read-only even for root: a read-only bind mount of itself."""
    if os.geteuid() != 0 or sys.platform != "linux":
        pytest.skip(reason="a read-only bind mount needs root on Linux (and root ignores chmod)")
    for cmd in (["mount", "--bind", str(folder), str(folder)], ["mount", "-o", "remount,ro,bind", str(folder)]):
        if subprocess.run(cmd, capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
            pytest.skip(reason="this machine does not allow bind mounts")


@pytest.mark.parametrize("holding", ["nothing", "a complete run"])
def test_a_read_only_output_folder_is_named(complete_run, tmp_path, holding):
    import shutil

    config, reference = complete_run
    out = tmp_path / "out"
    if holding == "nothing":
        out.mkdir()
    else:
        shutil.copytree(reference, out, symlinks=True)
    before = snapshot(out)
    _read_only(out)
    try:
        proc = run_cli("eval", config, "--out", out)
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and "is not writable" in errors[0]
    assert snapshot(out) == before
