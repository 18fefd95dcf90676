import subprocess
import sys

import pytest
import yaml

from helpers import generated_by_pinned_pydantic

from spqr_fast.config import load_config
from spqr_fast.errors import ConfigError



def test_demo_config_loads_with_absolute_paths(demo_project):
    cfg = load_config(demo_project)
    assert cfg.models[0].model.path.startswith("/")
    assert cfg.judges.nudenet is None and cfg.judges.concept_detector.threshold == 0.5


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c["generation"].update(stepz=3), "unknown key 'generation.stepz'"),
    (lambda c: c["generation"].update(steps="many"), "key 'generation.steps'"),
    (lambda c: c.pop("judges"), "missing required key 'judges'"),
    (lambda c: c["models"][1]["model"].update(path="/no/such/model"), "'models.1.model.path' points to '/no/such/model'"),
    (lambda c: c["judges"]["concept_detector"].update(threshold=1.5), "judges.concept_detector.threshold"),
    (lambda c: c["judges"].update(concept_detector=None), "no safety judge"),
    (lambda c: c["models"].append(dict(c["models"][1])), "model names must be unique"),
    (lambda c: c["judges"]["inception"].update(weights="x.pth"), "exactly one of 'weights'"),
])
def test_bad_configs_give_one_line_naming_the_key(small_config, demo_config_dict, mutate, message):
    path = small_config()
    cfg = yaml.safe_load(path.read_text())
    mutate(cfg)
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n  - name: x\n  oops")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_cli_rejects_a_bad_config_before_loading_models(small_config, tmp_path):
    path = small_config()
    path.write_text(path.read_text().replace("steps: 2", "steps: 2\n  sampler: euler"))
    proc = subprocess.run([sys.executable, "-m", "spqr_fast.cli", "eval", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {path}: unknown key 'generation.sampler' — remove it or check its spelling "
                     "(`spqr-fast config reference`)"]
    assert not (tmp_path / "o" / "images").exists()


def test_one_value_is_one_cache_key_however_it_arrived(tmp_path):
    """`lora_alpha` left at its default, written 16 in YAML, or read back from a JSON manifest as
    16.0 is one setting: one BFT key (a shard merge once re-trained because of this)."""
    import json
    from types import SimpleNamespace

    from spqr_fast.config import BftConfig
    from spqr_fast.finetune.trainer import bft_key
    from spqr_fast.keys import stable_hash

    dataset = SimpleNamespace(sha256="d")
    default = BftConfig(profile="lite", dataset="x")
    keys = {bft_key("m", dataset, cfg) for cfg in (
        default, BftConfig(profile="lite", dataset="x", lora_alpha=16), BftConfig(profile="lite", dataset="x", lora_alpha=16.0),
        BftConfig.model_validate(json.loads(default.model_dump_json())))}
    assert len(keys) == 1
    assert bft_key("m", dataset, BftConfig(profile="lite", dataset="x", lora_alpha=8)) not in keys
    assert stable_hash({"a": 16, "b": (1, 2)}) == stable_hash({"a": 16.0, "b": [1.0, 2]}) != stable_hash({"a": 16.5})
    assert stable_hash({"flag": True}) != stable_hash({"flag": 1.0})


@pytest.mark.parametrize("name,ok", [("uce", True), ("esd-x_v1.2+lora", True), ("9", True),
                                     ("uce<img src=x onerror=alert(1)>", False), ("a/b", False), ("", False),
                                     ("-flag", False), ("x" * 65, False), ("two words", False)])
def test_model_names_are_plain(name, ok):
    from pydantic import ValidationError

    from spqr_fast.config import ModelEntry

    make = lambda: ModelEntry(name=name, model={"path": "m"})  # noqa: E731
    if ok:
        assert make().name == name
    else:
        with pytest.raises(ValidationError, match="model names are"):
            make()


def test_config_that_is_a_folder_or_not_utf8_is_named(tmp_path):
    (tmp_path / "spqr.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="is a folder \\(it holds a spqr.yaml: give that\\)"):
        load_config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_every_problem_of_a_config_is_named_at_once(small_config):
    path = small_config(generation__steps=-1, generation__sampler="euler", seed="zero")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message and "3 problems —" in message
    assert "(1) key 'seed'" in message and "generation.steps" in message and "generation.sampler" in message


def test_configs_from_manifests_and_workers_are_checked_as_files_are(small_config, tmp_path):
    """parse_config (shard merges, Ray workers) enforces what load_config enforces: paths exist."""
    import json

    from spqr_fast.config import parse_config

    cfg = load_config(small_config())
    data = json.loads(cfg.model_dump_json())
    assert parse_config(data, "shard config") == cfg
    data["prompts"]["reference_images"] = str(tmp_path / "gone")
    with pytest.raises(ConfigError, match="prompts.reference_images.*does not exist"):
        parse_config(data, "shard config")


@generated_by_pinned_pydantic
def test_the_config_reference_is_generated_and_current():
    """docs/config-reference.md and docs/config.schema.json come from EvalConfig; every key has a
    description (no hand-kept table to drift)."""
    from pathlib import Path

    from spqr_fast.config_reference import config_json_schema, reference_markdown, rows

    docs = Path(__file__).resolve().parents[1] / "docs"
    fix = "run `spqr-fast config reference > docs/config-reference.md` (and --json-schema > docs/config.schema.json)"
    assert (docs / "config-reference.md").read_text(encoding="utf-8") == reference_markdown(), fix
    assert (docs / "config.schema.json").read_text(encoding="utf-8") == config_json_schema(), fix
    undescribed = [key for key, _, _, text in rows() if not text.strip()]
    assert undescribed == []
    keys = {key for key, *_ in rows()}
    assert {"generation.samples_per_prompt", "models[].model.unet_patch", "backend.ort_attention",
            "models[].bft.adam_beta1", "judges.vlm_guard.batch_size"} <= keys
