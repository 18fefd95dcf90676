"""Threads are set deliberately (config, --threads, default: the cores available) and passed to
PyTorch and every ONNX Runtime session (as an argument, not through the environment); memory
snapshots for the per-stage record read, and reset, nothing behind the caller's back."""

from __future__ import annotations

import os

import torch

from spqr_fast.runtime import apply_threads, available_cores, memory_snapshot


def test_threads_reach_torch_and_are_passed_to_onnx_runtime():
    from spqr_fast.backends.ort_backend import session_options

    before = torch.get_num_threads()
    environ = dict(os.environ)
    try:
        threads = apply_threads(1)
        assert threads.record() == {"requested": 1, "used": 1, "available_cores": available_cores(),
                                    "blas_while_scoring": 1}
        assert torch.get_num_threads() == 1
        assert dict(os.environ) == environ  # nothing travels through the process environment
        assert session_options(threads.used).intra_op_num_threads == 1
        assert session_options(3).intra_op_num_threads == 3
        assert session_options().intra_op_num_threads == 0  # none given: ONNX Runtime's own choice
        default = apply_threads(None)
        assert default.used == available_cores() <= (os.cpu_count() or 1)
        assert torch.get_num_threads() == available_cores()
    finally:
        torch.set_num_threads(before)


def test_memory_snapshot_reports_resident_and_peak():
    snap = memory_snapshot()
    assert 0 < snap["rss_gib"] <= snap["peak_rss_gib"]


def test_blas_threads_are_set_while_scoring_and_restored_after():
    import numpy as np  # noqa: F401  (loads the BLAS threadpoolctl reports on)
    from threadpoolctl import threadpool_info

    from spqr_fast.runtime import blas_threads

    def blas() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas()
    with blas_threads(1):
        assert blas() == {1}
    assert blas() == before
