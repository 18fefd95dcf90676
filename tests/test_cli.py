import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "spqr_fast.cli"]


def _run(*args, **kw):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300, **kw)


def test_score_json_from_a_metrics_table(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("model,h_before,h_after,clip_score,fid\nA,6.2,2.31,0.2919,10.36\nB,1.2,1.6,0.178,30\n")
    proc = _run("score", str(f), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["model"] for r in rows] == ["A", "B"]
    assert set(rows[0]) == {"model", "S", "P", "Q", "R", "SPQR"}
    assert rows[0]["S"] == pytest.approx(0.938) and rows[0]["Q"] == pytest.approx(0.95)
    assert rows[1]["Q"] == pytest.approx(0.05)
    table = _run("score", str(f), "--clip-ceiling", "0.32", "--epsilon", "0.001")
    assert table.returncode == 0 and "SPQR" in table.stdout


def test_score_rejects_bad_tables_with_one_line(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("model,h_before,h_after,clip\nA,1,2,0.3\n")
    proc = _run("score", str(f))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: metrics file '{f}': missing column(s) clip_score, fid — need model,h_before,h_after,clip_score,fid"]
    f.write_text("model,h_before,h_after,clip_score,fid\nA,150,2,0.3,1\n")
    assert "must be a percentage" in _run("score", str(f)).stderr
    assert "not found" in _run("score", str(tmp_path / "nope.csv")).stderr


@pytest.mark.heavy
def test_doctor_reports_environment_and_unresolved_paths(small_config):
    ok = _run("doctor")
    assert ok.returncode == 0 and "onnxruntime providers" in ok.stdout and "NudeNet" in ok.stdout
    cfg = small_config()
    cfg.write_text(cfg.read_text().replace("judges/clip", "judges/no-such-clip"))
    bad = _run("doctor", str(cfg))
    assert bad.returncode == 1 and "no-such-clip: missing" in bad.stdout and "missing or unusable" in bad.stdout


def test_init_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.txt").write_text("mine")
    proc = _run("init", str(tmp_path))
    assert proc.returncode == 2 and "not empty" in proc.stderr


@pytest.mark.parametrize("args, said", [
    (("finetune", "--model", "/no/model", "--dataset", "/no/data", "--out", "o"),
     "error: Invalid value for '--model': Path '/no/model' does not exist — see 'spqr-fast finetune --help'"),
    (("convert", "/no/ckpt.pt", "--out", "o.safetensors"),
     "error: Invalid value for 'CHECKPOINT': File '/no/ckpt.pt' does not exist — see 'spqr-fast convert --help'"),
    (("eval", "--bogus"), "error: No such option"),  # click's own wording of the rest differs between versions
    (("generate", "--model", "."), "error: Missing option '--prompts'"),
])
def test_usage_mistakes_are_one_line_and_exit_2(args, said):
    proc = _run(*args)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(said)
    assert "--bogus" not in args or "--bogus" in proc.stderr  # the unknown option is named


def test_help_is_instant_and_lists_commands():
    proc = _run("--help")
    assert proc.returncode == 0
    for cmd in ("eval", "init", "score", "doctor"):
        assert cmd in proc.stdout


@pytest.mark.heavy
def test_generate_on_onnx_runtime_then_resume_from_the_store(demo_project, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red bus\na cat on a sofa\n")
    args = ["generate", "--model", str(demo_project.parent / "models" / "base"), "--prompts", str(prompts),
            "--out", str(tmp_path / "g"), "--steps", "2", "--size", "64", "--samples", "2", "--backend", "ort"]
    env = {**__import__("os").environ, "SPQR_ENGINE_CACHE": str(tmp_path / "engines")}
    first = _run(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert "4 images (4 new, backend ort-cpu)" in first.stderr
    index = [json.loads(x) for x in (tmp_path / "g" / "index.jsonl").read_text().splitlines()]
    assert len(index) == 4 and all((tmp_path / "g" / r["image"]).is_file() for r in index)
    again = _run(*args, env=env)
    assert "4 images (0 new, backend cached)" in again.stderr
    listed = _run("engines", "list", "--json", env=env)
    entries = json.loads(listed.stdout)
    assert listed.returncode == 0 and [e["valid"] for e in entries] == [True] * 4  # 3 components + pipeline
    assert {e["model"] for e in entries} == {"base"} and all(e["built_at"].startswith("20") for e in entries)
    table = _run("engines", "list", env={**env, "COLUMNS": "160"})
    assert "base" in table.stdout and "text_encoder" in table.stdout and "pipeline" in table.stdout
    cleared = _run("engines", "clear", env=env)
    assert "removed 4 artefact" in cleared.stdout


def test_doctor_names_the_extra_to_install_literally():
    """Rich markup once ate '[gpu]' and '[tensorrt]' out of the install hints."""
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "spqr_fast.cli", "doctor"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "250"})
    text = proc.stdout + proc.stderr
    assert "pip install 'spqr-fast' " not in text
    assert "'spqr-fast[gpu]'" in text or "CUDAExecutionProvider, " in text  # the hint, or the provider is there
