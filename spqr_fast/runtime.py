"""Process-wide settings for the libraries we drive: never reach the hub, keep logs quiet."""

from __future__ import annotations

import os
from dataclasses import dataclass


def prepare_runtime() -> None:
    """Call once, before diffusers/transformers are imported (the CLI does)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def quiet_library_progress() -> None:
    """diffusers' own 'Loading pipeline components' bars would interleave with ours."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise, so a
    finished stage's ONNX sessions would still count in the next stage's resident memory)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): the collection alone
        pass
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def reset_cuda_peak() -> None:
    """Start a new CUDA peak-memory window (the caller that wants per-stage peaks says so)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def memory_snapshot() -> dict:
    """Resident memory now and the process's peak so far (GiB); on CUDA also the peak allocated
    since the last `reset_cuda_peak` (or the process start). Reading it resets nothing."""
    import resource
    import sys

    out: dict = {}
    try:
        with open("/proc/self/statm") as fh:
            out["rss_gib"] = round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30, 3)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out["peak_rss_gib"] = round(peak / (2**30 if sys.platform == "darwin" else 2**20), 3)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        out["cuda_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def _cgroup_cpu_limit() -> int | None:
    """Cores allowed by a cgroup CPU quota (containers, Slurm), if one is set."""
    import math

    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda t: t.split()[:2]),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", lambda t: [t.strip(), None])):
        try:
            with open(path) as fh:
                quota, period = parse(fh.read())
            if period is None:
                with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
                    period = fh.read().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    return None


def available_cores() -> int:
    """Cores this process may actually run on: its CPU affinity, capped by a cgroup quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = _cgroup_cpu_limit()
    return max(1, min(n, limit) if limit else n)


@dataclass(frozen=True)
class Threads:
    """The thread counts of a run: `used` (intra-op) is set for PyTorch and passed to every ONNX
    Runtime session the run opens; `blas` is what numpy/scipy's BLAS may use while scoring (see
    `blas_threads`); `record()` goes into results (CPU float kernels reduce in a
    thread-count-dependent order)."""

    requested: int | None
    used: int
    available_cores: int
    # The scoring bootstrap runs thousands of small BLAS calls (one Fréchet distance per model and
    # replicate); a multi-threaded BLAS spends more on waking its threads than on the work, and
    # more still on a busy machine (measured 25-50x slower, `bench --suite scale`).
    blas: int = 1

    def record(self) -> dict:
        return {"requested": self.requested, "used": self.used, "available_cores": self.available_cores,
                "blas_while_scoring": self.blas}


def blas_threads(n: int):
    """A context in which the BLAS under numpy/scipy uses `n` threads (threadpoolctl), restored on
    exit: the one setting of theirs that spqr-fast makes, made where it matters and undone after."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def apply_threads(requested: int | None) -> Threads:
    """Set PyTorch's intra-op threads (a process-wide setting of torch's own) to `requested`, or
    the cores available; ONNX Runtime sessions take `Threads.used` from their caller."""
    import torch

    cores = available_cores()
    used = requested or cores
    torch.set_num_threads(used)
    return Threads(requested, used, cores)
