import subprocess
import sys

import pytest
import yaml

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
    assert lines == [f"error: {path}: unknown key 'generation.sampler' — remove it or check its spelling against "
                     "the README's config reference"]
    assert not (tmp_path / "o" / "images").exists()
