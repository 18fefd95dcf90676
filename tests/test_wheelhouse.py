"""The wheelhouse helper that carries pinned wheels to an offline GPU machine in bounded batches."""

import hashlib

import pytest

from spqr_fast.devtools.wheelhouse import download_command, join, pinned_requirements, split


def test_the_pinned_set_for_the_gpu_machine():
    reqs = pinned_requirements()
    assert "onnxruntime-gpu==1.31.1" in reqs and not any(r.startswith("onnxruntime==") for r in reqs)
    assert not any(r.startswith(("torch==", "ray==")) for r in reqs)  # the GPU machine has its CUDA torch
    assert "diffusers==0.39.0" in reqs and "safetensors==0.8.0" in reqs  # the whole tree, not only direct pins
    assert all("==" in r for r in reqs)  # pinned: an unpinned set makes pip backtrack for minutes
    assert any(r.startswith("onnxruntime==") for r in pinned_requirements(gpu=False))
    cmd = download_command("/tmp/w", "3.12", reqs)
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and {"--only-binary=:all:", "--no-deps"} <= set(cmd)


def test_split_and_join_round_trip_with_a_wheel_larger_than_a_batch(tmp_path):
    big = bytes(range(256)) * 1000  # 256,000 bytes
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(big)
    (tmp_path / "small-1.0-py3-none-any.whl").write_bytes(b"s" * 1000)
    batches = split(tmp_path, batch_bytes=100_000)
    assert len(batches) == 3
    for b in batches:
        assert sum(f.stat().st_size for f in b.iterdir() if f.suffix != ".json") <= 100_000
    for w in tmp_path.glob("*.whl"):
        w.unlink()  # the far side has only the batches
    joined = {p.name: p.read_bytes() for p in join(tmp_path)}
    assert hashlib.sha256(joined["big-1.0-py3-none-any.whl"]).digest() == hashlib.sha256(big).digest()
    assert joined["small-1.0-py3-none-any.whl"] == b"s" * 1000


def test_join_refuses_a_missing_part(tmp_path):
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(b"x" * 300)
    batches = split(tmp_path, batch_bytes=100)
    (tmp_path / "big-1.0-py3-none-any.whl").unlink()
    next(batches[1].glob("*.part*")).unlink()
    with pytest.raises(SystemExit, match="carry every batch"):
        join(tmp_path)
