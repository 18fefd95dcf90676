"""Shared pieces of the reliability suite: one complete small run to protect, config variants
written beside the demo project, and the CLI run as a user runs it (a subprocess)."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spqr_fast.config import load_config
from spqr_fast.evaluate import Evaluator

CLI = [sys.executable, "-m", "spqr_fast.cli"]


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


def run_cli(*args: str, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env, **kw)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (through the result links), by relative path; lock
    files, the file-hash memo (`.cache/`) and logs hold no results and are left out."""
    out = {}
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if f.is_file() and not f.name.endswith(".lock") and rel.parts[0] not in (".cache", "logs"):
            out[f.relative_to(folder).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def small_dict(demo_config_dict: dict, cache_root: Path) -> dict:
    """The demo config cut to a run of a few seconds per stage."""
    cfg = copy.deepcopy(demo_config_dict)
    cfg["prompts"]["harmful"]["limit"] = 3
    cfg["prompts"]["utility"]["limit"] = 3
    cfg["generation"].update(steps=2, samples_per_prompt=1, batch_size=4)
    cfg["scoring"]["bootstrap"] = {"n": 20, "n_fid": 5, "seed": 0}
    cfg["report"]["samples_per_model"] = 2
    cfg["backend"] = {"kind": "torch", "cache_root": str(cache_root)}
    cfg["models"] = [copy.deepcopy(m) for m in cfg["models"]]
    for m in cfg["models"]:
        if "bft" in m:
            m["bft"]["steps"] = 2
    return cfg


@pytest.fixture(scope="session")
def write_config(demo_project, demo_config_dict, tmp_path_factory):
    """write_config(name, edit) → a config file beside the demo project (so its relative paths
    resolve there), made from the small config changed by `edit(cfg_dict)`."""
    cache_root = tmp_path_factory.mktemp("engines")

    def make(name: str, edit=None) -> Path:
        cfg = small_dict(demo_config_dict, cache_root)
        if edit is not None:
            edit(cfg)
        path = demo_project.parent / f"reliability-{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    return make


@pytest.fixture(scope="session")
def complete_run(write_config, tmp_path_factory) -> tuple[Path, Path]:
    """(config, output folder) of one finished small evaluation."""
    cfg = write_config("complete")
    out = tmp_path_factory.mktemp("complete") / "out"
    Evaluator(load_config(cfg), out).run()
    return cfg, out
