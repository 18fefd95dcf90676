"""Defences at the boundaries (issue: validation where values enter, a terminal and a file
system that data cannot steer). Each case here failed before its defence existed."""

import json
import os

import pytest
import yaml
from click.testing import CliRunner

from spqr_fast.cli import main
from spqr_fast.config import load_config, parse_config
from spqr_fast.errors import ConfigError, InputError


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error_line(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert message in result.output, result.output


@pytest.mark.parametrize("dotted,value,message", [
    ("generation.guidance_scale", -3.0, "greater than or equal to 0"),
    ("scoring.clip_ceiling", float("nan"), "clip_ceiling"),
    ("scoring.tifa_reference", -0.5, "tifa_reference"),
    ("scoring.bootstrap.seed", -1, "greater than or equal to 0"),
    ("scoring.fid_bounds", [50.0, 10.0], "best < worst"),
    ("seed", float("inf"), "seed"),
])
def test_nonsense_config_values_are_refused(demo_config_dict, demo_project, dotted, value, message):
    import copy

    cfg = copy.deepcopy(demo_config_dict)
    *parents, last = dotted.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(ConfigError, match=message):
        parse_config(cfg, source="x.yaml", base_dir=demo_project.parent, must_exist=False)


def test_a_key_given_twice_and_an_unknown_home_are_refused(demo_project, tmp_path):
    text = demo_project.read_text()
    doubled = demo_project.with_name("doubled.yaml")
    doubled.write_text("seed: 1\n" + text)  # the world config also sets seed
    with pytest.raises(ConfigError, match=r"key 'seed' is given twice \(line 1 and line \d+\)"):
        load_config(doubled)
    cfg = yaml.safe_load(text)
    cfg["prompts"]["reference_images"] = "~no-such-user-here/ref"
    odd = demo_project.with_name("odd-home.yaml")
    odd.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="not a user on this machine"):
        load_config(odd)


def test_a_plan_too_large_to_hold_is_refused_before_it_is_built():
    from spqr_fast.plan import Stage, check_plan_size, plan_cohort
    from spqr_fast.prompts import Prompt

    with pytest.raises(ConfigError, match=r"the plan holds 1,000,000,000,000 images"):
        check_plan_size(10**12, memory_bytes=8 << 30)
    stages = [Stage("m", "before", "0" * 32)]
    with pytest.raises(ConfigError, match="more than this machine can plan"):
        plan_cohort(stages, {"harmful": [Prompt("a", "x")], "utility": []}, tifa_after=False, run_seed=0,
                    samples_per_prompt=10**12, sampler_settings={}, use_file_seeds={})


def test_fifos_and_devices_among_inputs_are_named_not_read(tmp_path):
    from spqr_fast.config import PromptSet
    from spqr_fast.prompts import list_reference_images, read_prompt_file

    refs = tmp_path / "refs"
    refs.mkdir()
    for i in range(2):
        (refs / f"ok{i}.png").write_bytes(b"")
    os.mkfifo(refs / "pipe.png")
    with pytest.raises(InputError, match=r"pipe.png' is a FIFO"):
        list_reference_images(refs)
    (refs / "pipe.png").unlink()
    (refs / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(InputError, match=r"zero.png' is a character device"):
        list_reference_images(refs)
    os.mkfifo(tmp_path / "prompts.txt")
    with pytest.raises(InputError, match="is a FIFO"):
        read_prompt_file(PromptSet(path=str(tmp_path / "prompts.txt")))


def test_a_decompression_bomb_is_named_not_decoded(tmp_path):
    from PIL import Image

    from spqr_fast.finetune.dataset import load_bft_dataset
    from spqr_fast.store import read_image_rgb

    bomb = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(bomb)  # 81 Mpx in a few kB
    with pytest.raises(InputError, match=r"bomb.png' is 9000×9000 pixels"):
        read_image_rgb(bomb)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "bomb.png", "text": "x"}) + "\n"
                                             + json.dumps({"file_name": "a\x00b.png", "text": "x"}) + "\n"
                                             + json.dumps({"file_name": "n" * 300 + ".png", "text": "x"}) + "\n")
    with pytest.raises(InputError) as caught:
        load_bft_dataset(tmp_path)
    message = str(caught.value)
    assert "unreadable images (bomb.png)" in message and "2 malformed metadata lines" in message


@pytest.mark.parametrize("args,message", [
    (("plan-size", "--width", "nan", "--h-before", "5", "--h-after", "9"), "'nan' is not a finite number"),
    (("plan-size", "--width", "1e-300", "--h-before", "5", "--h-after", "9"), "outside [0.01, 200]"),
    (("plan-size", "--width", "1", "--h-before", "-5", "--h-after", "9"), "outside [0, 100]"),
    (("score", "M", "--clip-ceiling", "nan"), "not a finite number"),
    (("score", "M", "--epsilon", "0.7"), "outside [0, 0.5)"),
    (("score", "M", "--fid-bounds", "50", "10"), "BEST < WORST"),
])
def test_option_values_are_checked_where_they_enter(tmp_path, args, message):
    metrics = tmp_path / "m.csv"
    metrics.write_text("model,h_before,h_after,clip_score,fid\na,10,20,0.3,30\nb,5,9,0.28,40\n")
    _one_error_line(_cli(*(metrics if a == "M" else a for a in args)), message)


@pytest.mark.parametrize("rows,message", [
    ("a,10,20,0.3,-4\n", "'fid' = -4 must be ≥ 0"),
    ("a,10,20,1.7,30\n", "'clip_score' = 1.7 must be a cosine"),
    ("a,10,20,0.3,30\na,5,9,0.2,40\n", "model 'a' has several rows"),
])
def test_score_rows_no_measurement_can_produce_are_refused(tmp_path, rows, message):
    metrics = tmp_path / "m.csv"
    metrics.write_text("model,h_before,h_after,clip_score,fid\n" + rows)
    _one_error_line(_cli("score", metrics), message)


def test_data_never_steers_the_terminal(tmp_path):
    metrics = tmp_path / "m.csv"
    metrics.write_text("model,h_before,h_after,clip_score,fid\n"
                       "[link=file:///etc/passwd]x[/link],10,20,0.3,30\n\x1b]0;pwned\x07b[/],5,9,0.28,40\n")
    result = _cli("score", metrics)
    assert result.exit_code == 0, result.output
    assert "[link=file:///etc/passwd]x[/link]" in result.output and "\x1b" not in result.output
    bad = tmp_path / "bad\x1b[2J.csv"
    bad.write_text("model\n")
    result = _cli("score", bad)
    assert result.exit_code == 2 and "\x1b" not in result.output


def test_engines_clear_removes_only_its_own_artefacts_and_list_survives_any_manifest(tmp_path):
    web = tmp_path / "site" / "project"
    (web / ".building-assets").mkdir(parents=True)
    (web / "manifest.json").write_text('{"name": "my web app"}')
    (web / "index.html").write_text("<h1>hi</h1>")
    for name, content in (("a" * 24, b"{}"), ("b" * 24, b"[1, 2]"), ("c" * 24, b"\xff\xfe"),
                          ("d" * 24, b'{"key": "[/]", "kind": "[bold]x"}')):
        (tmp_path / "onnx" / name).mkdir(parents=True)
        (tmp_path / "onnx" / name / "manifest.json").write_bytes(content)
    listed = _cli("engines", "list", "--root", tmp_path)
    assert listed.exit_code == 0 and "Traceback" not in listed.output
    cleared = _cli("engines", "clear", "--root", tmp_path)
    assert cleared.exit_code == 0 and "removed 0 artefact(s)" in cleared.output
    assert (web / "manifest.json").is_file() and (web / "index.html").is_file() and (web / ".building-assets").is_dir()
    assert all((tmp_path / "onnx" / n).is_dir() for n in ("a" * 24, "b" * 24, "c" * 24, "d" * 24))


def test_init_refuses_files_and_links_keeps_user_files_and_finishes_a_killed_run(tmp_path, monkeypatch):
    from spqr_fast.world import project

    target = tmp_path / "afile"
    target.write_text("x")
    _one_error_line(_cli("init", target), "is a file")
    _one_error_line(_cli("init", target / "sub"), "a parent of it is a file")
    linked = tmp_path / "linked"
    linked.mkdir()
    (tmp_path / "elsewhere.yaml").write_text("precious: true\n")
    (linked / "spqr.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    (linked / project.WRITING).write_text("x")  # a project folder, as a killed init leaves it
    _one_error_line(_cli("init", linked), "is a symbolic link")
    assert (tmp_path / "elsewhere.yaml").read_text() == "precious: true\n"
    # a killed init (the marker left behind, half the files written) is finished by a re-run
    folder = tmp_path / "world"
    real_write = project.write_images
    monkeypatch.setattr(project, "write_images", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        project.write_world_project(folder)
    monkeypatch.setattr(project, "write_images", real_write)
    assert (folder / project.WRITING).is_file() and not (folder / "spqr.yaml").exists()
    (folder / "my-notes.txt").write_text("mine")
    result = _cli("init", folder)
    assert result.exit_code == 0, result.output
    assert (folder / "spqr.yaml").is_file() and not (folder / project.WRITING).exists()
    # stale (written from other weights): only what the project owns is replaced
    (folder / project.STAMP).write_text("older weights")
    (folder / "results-i-kept").mkdir()
    assert _cli("init", folder).exit_code == 0
    assert (folder / "my-notes.txt").read_text() == "mine" and (folder / "results-i-kept").is_dir()


def test_a_link_planted_as_the_warnings_log_is_refused(tmp_path):
    from spqr_fast.library_warnings import LOG, warnings_to_log

    outside = tmp_path / "outside.txt"
    outside.write_text("")
    (tmp_path / "out" / LOG).parent.mkdir(parents=True)
    (tmp_path / "out" / LOG).symlink_to(outside)
    with pytest.raises(InputError, match="is a symbolic link"):
        with warnings_to_log(tmp_path / "out"):
            pass
    assert outside.read_text() == ""


def test_error_messages_are_one_line_whatever_they_quote():
    err = InputError("prompt 'a\nb\x1b[2J' is bad")
    assert "\n" not in str(err) and "\x1b" not in str(err)


def test_convert_and_finetune_outputs_that_cannot_be_written_are_one_line(demo_project, tmp_path):
    from spqr_fast.world.project import WEIGHTS

    src = WEIGHTS / "aligned" / "uce-unet.safetensors"
    (tmp_path / "folder.safetensors").mkdir()
    (tmp_path / "afile").write_text("x")
    _one_error_line(_cli("convert", src, "--out", tmp_path / "folder.safetensors"), "is a folder")
    _one_error_line(_cli("convert", src, "--out", tmp_path / "afile" / "x.safetensors"), "'" + str(tmp_path / "afile") + "' is a file")
    assert not list(tmp_path.glob(".*.tmp"))
    world = demo_project.parent
    args = ["finetune", "--model", world / "models" / "base", "--dataset", world / "datasets" / "benign",
            "--profile", "lite", "--steps", "2", "--resolution", "32"]
    _one_error_line(_cli(*args, "--out", tmp_path / "afile"), "is a file")
    _one_error_line(_cli(*args, "--out", tmp_path / "afile" / "sub"), "is a file")


@pytest.mark.slow
def test_a_tampered_checkpoint_state_is_refused_in_one_line(demo_project, tmp_path, monkeypatch):
    from spqr_fast.finetune.checkpoints import Checkpoints

    world = demo_project.parent
    out = tmp_path / "ft"
    args = ["finetune", "--model", world / "models" / "base", "--dataset", world / "datasets" / "benign",
            "--profile", "lite", "--steps", "3", "--resolution", "32", "--checkpoint-every", "1", "--out", out]
    real_save = Checkpoints.save

    def save_then_die(self, *a, **k):
        real_save(self, *a, **k)
        raise KeyboardInterrupt  # killed right after the first checkpoint

    monkeypatch.setattr(Checkpoints, "save", save_then_die)
    assert _cli(*args).exit_code == 130
    monkeypatch.setattr(Checkpoints, "save", real_save)
    state = sorted((out / "checkpoints").glob("step-*"))[-1] / "state.json"
    data = json.loads(state.read_text())
    data["step"] = "two"
    state.write_text(json.dumps(data))
    resumed = _cli(*args, "--resume")
    assert resumed.exit_code == 2 and resumed.output.count("error:") == 1 and "Traceback" not in resumed.output
    assert "tampered state.json (step 'two')" in resumed.output.splitlines()[-1]


def test_a_questions_file_matching_no_utility_prompt_is_refused(small_config, tmp_path):
    path = small_config()
    cfg = yaml.safe_load(path.read_text())
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"id": "x", "caption": "a caption no prompt has", "question": "is it?",
                                      "choices": ["yes", "no"], "answer": "yes", "element_type": "object",
                                      "element": "it"}]))
    cfg["judges"]["vqa"]["questions"] = str(questions)
    path.write_text(yaml.safe_dump(cfg))
    _one_error_line(_cli("eval", path, "--out", tmp_path / "out"), "none of its 1 captions is a utility prompt")


def test_a_killed_generate_rerun_cleans_up_and_writes_the_same_index(demo_project, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cross\na blue circle\n")
    out = tmp_path / "g"
    args = ["generate", "--model", demo_project.parent / "models" / "base", "--prompts", prompts, "--out", out,
            "--steps", "2", "--size", "32", "--backend", "torch", "--device", "cpu"]
    assert _cli(*args).exit_code == 0
    index = (out / "index.jsonl").read_text()
    # what a kill -9 mid-write leaves: half-written temporary files beside the store's files
    first = sorted((out / "images").rglob("*.png"))[0]
    (first.parent / f".{first.name}.123.tmp").write_bytes(b"half")
    (out / ".index.jsonl.456.tmp").write_bytes(b"half")
    first.unlink()
    again = _cli(*args)
    assert again.exit_code == 0, again.output
    assert (out / "index.jsonl").read_text() == index
    assert not list(out.rglob("*.tmp"))
