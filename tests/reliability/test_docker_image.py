"""The CPU image built and used as a user would (`make docker-test`), where a Docker engine runs
(`docker/ci-setup.sh` starts one on a Debian machine; CI runs it before this tier)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _engine() -> str | None:
    """Why the test cannot run here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no docker client on this machine"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return None if probe.returncode == 0 else "no Docker engine running (docker/ci-setup.sh starts one)"


def test_the_cpu_image_builds_and_agrees_with_the_host():
    why_not = _engine()
    if why_not:
        pytest.skip(f"the image test needs a Docker engine: {why_not}")
    proc = subprocess.run(["make", "--no-print-directory", "docker-test"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "results.json rows identical" in proc.stdout and "docker-test passed" in proc.stdout
