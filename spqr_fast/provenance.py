"""What a result file needs to be reproduced: software versions and the machine."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib import metadata

from . import __version__
from .schema import BackendReport, StageLoad

PACKAGES = ("torch", "diffusers", "transformers", "peft", "optimum", "optimum-onnx", "onnxruntime", "onnxruntime-gpu",
            "onnx", "nudenet", "opencv-python-headless", "numpy", "scipy", "safetensors", "pillow", "pydantic",
            "click", "rich", "threadpoolctl", "tensorrt", "ray")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict:
    return {
        "spqr_fast": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def backend_fallbacks(stage_loads: dict[tuple[str, str], StageLoad], judge_backends: dict[str, BackendReport]) -> list[str]:
    """One line per component that ran on a slower backend than it would have because its
    accelerated build or parity check failed this run (machine-wide absences, like no GPU, are
    expected and left out). Results say so rather than differing silently in the last digits."""
    reports = [(f"{model} [{stage} BFT]", load.backend) for (model, stage), load in sorted(stage_loads.items())]
    reports += [(f"judge {name}", report) for name, report in sorted(judge_backends.items())]
    lines = []
    for label, backend in reports:  # generation and judges share one report type (schema.BackendReport)
        for skip in backend.skipped:
            if skip.reason.startswith(("build failed", "parity")):
                lines.append(f"{label}: {skip.backend} skipped ({skip.reason}); ran on {backend.chosen}")
    return lines
