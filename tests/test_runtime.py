"""Threads are set deliberately (config, --threads, default: the cores available) and reach both
PyTorch and every ONNX Runtime session; memory snapshots for the per-stage record."""

from __future__ import annotations

import os

import torch

from spqr_fast.runtime import THREADS_ENV, apply_threads, available_cores, memory_snapshot


def test_threads_reach_torch_and_onnx_runtime(monkeypatch):
    from spqr_fast.backends.ort_backend import session_options

    monkeypatch.delenv(THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    try:
        record = apply_threads(1)
        assert record == {"requested": 1, "used": 1, "available_cores": available_cores()}
        assert torch.get_num_threads() == 1 and session_options().intra_op_num_threads == 1
        assert session_options(3).intra_op_num_threads == 3  # an explicit count wins
        default = apply_threads(None)
        assert default["used"] == available_cores() <= (os.cpu_count() or 1)
        assert torch.get_num_threads() == available_cores()
    finally:
        torch.set_num_threads(before)


def test_memory_snapshot_reports_resident_and_peak():
    snap = memory_snapshot()
    assert 0 < snap["rss_gib"] <= snap["peak_rss_gib"]
