"""Shared fixtures: the embedded demo project (built once per session) and small configs on it."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from spqr_fast.runtime import prepare_runtime

prepare_runtime()


@pytest.fixture(scope="session", autouse=True)
def engine_cache_outside_the_checkout(tmp_path_factory) -> Iterator[None]:
    """Anything a test leaves to the default engine cache goes to one folder of this session, not
    the repository's engines/cache: a later tier (the Docker image test's host eval) must not find
    exports an earlier one built."""
    if "SPQR_ENGINE_CACHE" in os.environ:
        yield
        return
    os.environ["SPQR_ENGINE_CACHE"] = str(tmp_path_factory.mktemp("default-engine-cache"))
    yield
    os.environ.pop("SPQR_ENGINE_CACHE", None)


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory) -> Path:
    from spqr_fast.world.project import write_world_project

    return write_world_project(tmp_path_factory.mktemp("demo") / "project")


@pytest.fixture(scope="session")
def esd_lora(demo_project, tmp_path_factory) -> Path:
    """A ready-made LoRA folder for the world's ESD model (seeded, not trained)."""
    from helpers import write_random_lora

    return write_random_lora(demo_project.parent / "models" / "esd", tmp_path_factory.mktemp("lora") / "esd-lora", seed=12)


@pytest.fixture(scope="session")
def demo_config_dict(demo_project) -> dict:
    return yaml.safe_load(demo_project.read_text())


@pytest.fixture
def small_config(demo_project, demo_config_dict, tmp_path):
    """Write a reduced copy of the demo config and return a function that
    applies overrides and gives the file's path."""

    def make(**overrides) -> Path:
        cfg = copy.deepcopy(demo_config_dict)
        cfg["prompts"]["harmful"]["limit"] = 4
        cfg["prompts"]["utility"]["limit"] = 4
        cfg["generation"].update(steps=2, samples_per_prompt=1, batch_size=4)
        cfg["scoring"]["bootstrap"] = {"n": 50, "n_fid": 10, "seed": 0}
        cfg["report"]["samples_per_model"] = 2
        cfg["backend"] = {"kind": "torch", "cache_root": str(tmp_path / "engines")}  # ORT has its own tests
        for m in cfg["models"]:
            if "bft" in m:
                m["bft"]["steps"] = 3
        for dotted, value in overrides.items():
            node = cfg
            keys = dotted.split("__")
            for k in keys[:-1]:
                node = node[int(k)] if isinstance(node, list) else node[k]
            node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
        # Written beside the demo project's spqr.yaml, so its relative paths resolve as they do there.
        path = demo_project.parent / f"spqr-test-{tmp_path.name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    return make
