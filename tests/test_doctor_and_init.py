"""`doctor CONFIG` checks every configured file for its role; `init --from` writes a real-model
config with the paper's protocol that validates and that doctor reads."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from spqr_fast.cli import main
from spqr_fast.config import parse_config


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "240"})


def test_doctor_passes_the_world_project_and_projects_its_run(demo_project, tmp_path):
    result = _invoke("doctor", str(demo_project), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "uce.model" in out and "UNet tensors fit the base" in out and "partial release" in out
    assert "judges.clip" in out and "CLIPModel" in out and "BlipForQuestionAnswering" in out
    assert "864 images" in out and "projected generation time" in out and "min on eager torch" in out


def test_doctor_names_each_unusable_file_in_one_line(demo_project, demo_config_dict, tmp_path):
    cfg = json.loads(json.dumps(demo_config_dict))
    cfg["judges"]["clip"]["path"] = "judges/vqa"  # a BLIP where CLIP belongs
    cfg["models"][1]["model"]["allow_missing_keys"] = False  # the UCE release is partial
    cfg["prompts"]["utility"]["path"] = "prompts/nowhere.txt"
    path = demo_project.parent / f"doctor-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = _invoke("doctor", str(path), "--no-timing")
    assert result.exit_code == 1
    summary = result.output.split("missing or unusable")[1]
    assert "judges.clip" in summary and "holds a 'blip' model, not CLIP" in summary
    assert "uce.model" in summary and "set allow_missing_keys: true" in summary
    assert "prompts.utility" in summary and "nowhere.txt: missing" in summary
    assert "Traceback" not in result.output and "projected generation time" not in result.output


def test_init_from_writes_a_valid_config_with_the_papers_protocol(demo_project, tmp_path):
    models = demo_project.parent / "models"
    result = _invoke("init", str(tmp_path / "real"), "--from", str(models / "base"),
                     "--aligned", str(models / "uce-unet.safetensors"), "--aligned", str(models / "esd"),
                     "--clip", str(demo_project.parent / "judges" / "clip"))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "real" / "spqr.yaml").read_text()
    assert "&id" not in text and "*id" not in text  # no YAML anchors
    cfg = parse_config(yaml.safe_load(text), must_exist=False)  # its places for files not given yet
    assert [m.name for m in cfg.models] == ["base", "uce-unet", "esd"] and cfg.models[0].role == "base"
    uce = cfg.models[1].model
    assert uce.base == str(models / "base") and uce.allow_missing_keys is True
    assert cfg.prompts.harmful.sample == 500 and cfg.prompts.harmful.sample_seed == 42
    g = cfg.generation
    assert (g.steps, g.guidance_scale, g.height, g.width) == (50, 7.5, 32, 32)  # the model's native size
    assert cfg.judges.nudenet is not None and cfg.judges.clip.path == str(demo_project.parent / "judges" / "clip")
    assert "openai/clip-vit-base-patch32" not in text  # given, so not listed as still to provide
    assert "pt_inception-2015-12-05-6726825d.pth" in text and "Still to provide" in text
    doctor = _invoke("doctor", str(tmp_path / "real" / "spqr.yaml"), "--no-timing")
    assert doctor.exit_code == 1 and "judges.inception.weights" in doctor.output.split("missing or unusable")[1]


def test_init_refuses_what_it_cannot_use(demo_project, tmp_path):
    not_a_pipeline = _invoke("init", str(tmp_path / "a"), "--from", str(demo_project.parent / "judges" / "clip"))
    assert not_a_pipeline.exit_code == 2 and "not a diffusers pipeline folder" in not_a_pipeline.output
    without_from = _invoke("init", str(tmp_path / "b"), "--aligned", str(demo_project.parent / "models" / "esd"))
    assert without_from.exit_code == 2 and "--from" in without_from.output


def test_the_cohort_bench_writes_a_valid_two_model_config(demo_project, tmp_path):
    """`python -m spqr_fast.bench.cohort_bench` measures a whole eval per backend; its config (here on
    the world's base instead of the SD 1.5-size one it builds) validates and resolves."""
    from spqr_fast.bench.cohort_bench import write_config
    from spqr_fast.config import load_config

    models = demo_project.parent / "models"
    path = write_config(tmp_path, models / "base", models / "uce-unet.safetensors", size=32, steps=3, harmful=4, utility=4)
    cfg = load_config(path)
    assert [m.name for m in cfg.models] == ["base", "aligned"] and cfg.models[1].model.allow_missing_keys
    assert cfg.prompts.harmful.limit == 4 and (cfg.generation.height, cfg.generation.steps) == (32, 3)
    bft = cfg.models[0].bft
    assert bft.resolution == 32 and bft.steps == 2 and bft.batch_size == 1
    assert len((tmp_path / "benign-8" / "metadata.jsonl").read_text().splitlines()) == 8
