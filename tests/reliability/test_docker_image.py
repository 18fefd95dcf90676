"""The CPU image built and used as a user would (`make docker-test`), where a Docker engine runs
(`docker/ci-setup.sh` starts one on a Debian machine; CI runs it before this tier)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.mark.skipif(not _engine_answers(),
                    reason="needs a running Docker engine (docker/ci-setup.sh starts one on a Debian machine)")
def test_the_cpu_image_builds_and_agrees_with_the_host():
    proc = subprocess.run(["make", "--no-print-directory", "docker-test"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "results.json rows identical" in proc.stdout and "docker-test passed" in proc.stdout
