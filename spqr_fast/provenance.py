"""What a result file needs to be reproduced: software versions and the machine."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib import metadata

from . import __version__

PACKAGES = ("torch", "diffusers", "transformers", "peft", "optimum", "optimum-onnx", "onnxruntime", "onnxruntime-gpu",
            "onnx", "nudenet", "opencv-python-headless", "numpy", "scipy", "safetensors", "pillow", "pydantic",
            "click", "rich", "tensorrt", "ray")


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
