"""What can be checked of the images without a Docker engine: the Dockerfiles parse, install
exactly the project's pins and extras (no second list), run as non-root, declare entrypoint and
volumes; the entrypoint behaves as documented when run directly."""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cpu"]
INSTRUCTIONS = {"FROM", "RUN", "ENV", "WORKDIR", "COPY", "USER", "VOLUME", "ENTRYPOINT", "CMD", "ARG", "LABEL", "EXPOSE"}


def parse(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined; unknown instructions fail."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " "
        if line.rstrip().endswith("\\"):
            continue
        word, _, rest = buf.strip().partition(" ")
        assert word.upper() in INSTRUCTIONS, f"{path.name}: unknown instruction {word!r}"
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{path.name}: dangling line continuation"
    return out


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_structure(path):
    steps = parse(path)
    kinds = [k for k, _ in steps]
    # a plain Debian base given as a build argument (a debootstrapped bookworm stands in for it)
    assert steps[0] == ("ARG", "BASE_IMAGE=debian:bookworm-slim") and steps[1][0] == "FROM"
    assert steps[1][1].split()[0] == "${BASE_IMAGE}"
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["/usr/local/bin/spqr-entrypoint"]
    assert json.loads(dict(steps)["CMD"]) == ["eval"]
    # no VOLUME: an anonymous volume at /out would vanish with `--rm`; the entrypoint warns instead
    assert "VOLUME" not in kinds
    assert "EXTRA_CA_CERTS" in " ".join(a for k, a in steps if k == "ARG")
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "SPQR_ENGINE_CACHE=/engines" in env and "HF_HUB_OFFLINE=1" in env


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_install_exactly_the_projects_pins(path):
    text = path.read_text()
    runs = " ".join(a for k, a in parse(path) if k == "RUN")
    assert not re.search(r"[A-Za-z0-9_-]==\d", runs), "a version is hard-coded; read it with docker/pinned.py"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.findall(r'pip install -c constraints.txt "\.\[([a-z,]+)\]"', runs)
    assert extras, "the project must be installed with the constraints file"
    assert all(set(e.split(",")) <= set(project["optional-dependencies"]) for e in extras)
    for pkg in re.findall(r"pinned\.py ([a-z0-9-]+)", runs):
        out = subprocess.run([sys.executable, str(ROOT / "docker" / "pinned.py"), pkg], capture_output=True, text=True)
        assert out.returncode == 0 and re.fullmatch(r"\d[\w.]*\n", out.stdout), pkg
    assert "COPY constraints.txt" in text.replace("pyproject.toml ", "").replace(" README.md", "") or \
        "constraints.txt" in text
    if path.name == "Dockerfile":
        # PyPI's Linux torch is the CUDA 13 build, which onnxruntime-gpu's CUDA provider needs
        assert "pinned.py onnxruntime-gpu" in runs and "tensorrt" in extras[1] and "nvidia/cuda" not in text
        assert 'ARG TORCH_INDEX_URL=""' in text and "deadsnakes" not in text
    else:
        assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text and "/tmp/wheels/torch-" in runs
    assert "libgl1" not in runs  # opencv-python-headless needs no Mesa


def test_constraints_pin_versions_inside_pyprojects_ranges():
    """pyproject.toml states ranges (a library must not replace an environment's torch);
    constraints.txt pins the verified set, each pin inside its range, every dependency pinned."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(d) for d in project["dependencies"]] + [
        Requirement(d) for deps in project["optional-dependencies"].values() for d in deps]
    norm = lambda n: n.lower().replace("_", "-")  # noqa: E731  (pip freeze writes huggingface_hub)
    pins = {norm(k): v for k, v in (line.split("==") for line in (ROOT / "constraints.txt").read_text().split()
                                     if "==" in line)}
    for req in requirements:
        assert not any(spec.operator == "==" for spec in req.specifier), f"{req}: a range, not a pin"
        assert norm(req.name) in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[norm(req.name)], prereleases=True), f"{req.name}=={pins[norm(req.name)]}"
    lowest = [Requirement(line) for line in (ROOT / "tests" / "constraints-lowest.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    ranges = {norm(r.name): r.specifier for r in requirements}
    for req in (r for r in lowest if norm(r.name) in ranges):  # `make test-lowest`'s versions are the ranges' own
        (spec,) = req.specifier
        assert spec.operator == "==" and f">={spec.version}" in str(ranges[norm(req.name)]), str(req)


def test_dockerignore_keeps_caches_and_outputs_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", "engines/cache", "spqr-out", "**/__pycache__"):
        assert entry in ignored
    # exported graphs stay out, but the world's ONNX judges are package data the image needs
    assert ignored.index("!spqr_fast/world/weights/**/*.onnx") > ignored.index("**/*.onnx")


@pytest.mark.parametrize("args,expected", [
    ([], "spqr-fast "),
    (["eval"], "spqr-fast eval --out /tmp/o"),
    (["eval", "/models/spqr.yaml"], "spqr-fast eval /models/spqr.yaml --out /tmp/o"),
    (["eval", "/models/spqr.yaml", "--out", "/elsewhere"], "spqr-fast eval /models/spqr.yaml --out /elsewhere"),
    (["generate", "--model", "/m", "--prompts", "/p"], "spqr-fast generate --model /m --prompts /p --out /tmp/o"),
    (["score", "m.csv", "--json"], "spqr-fast score m.csv --json"),
])
def test_entrypoint_adds_the_out_volume_only_where_documented(args, expected):
    env = {**os.environ, "SPQR_OUT": "/tmp/o", "SPQR_ENTRYPOINT_ECHO": "1"}
    out = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), *args], capture_output=True, text=True,
                         env=env, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == expected.strip()


def test_entrypoint_runs_the_cli(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("model,h_before,h_after,clip_score,fid\nA,1,2,0.3,10\nB,2,2,0.2,20\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), "score", str(f), "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and [r["model"] for r in json.loads(out.stdout)] == ["A", "B"]


def test_entrypoint_refuses_an_unwritable_out_and_warns_without_a_mount(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), "eval"], capture_output=True, text=True,
                         env={**env, "SPQR_OUT": str(blocker / "out")}, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "is not writable by uid" in out.stderr
    out = subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), "eval", str(tmp_path / "none.yaml")],
                         capture_output=True, text=True, env={**env, "SPQR_OUT": str(tmp_path / "o")}, timeout=120)
    assert out.returncode == 2 and "nothing is mounted at" in out.stderr and "none.yaml" in out.stderr
