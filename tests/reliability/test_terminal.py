"""What a default `eval` prints: no third-party warnings between the progress bars (they go to a
log in the output folder, counted in one line), unless --verbose."""

from conftest import run_cli


def test_library_warnings_go_to_a_log_not_the_terminal(write_config, tmp_path):
    def on_ort(cfg):  # ONNX exports are where PyTorch's tracer warns the most
        cfg["backend"]["kind"] = "ort"
        cfg["backend"]["cache_root"] = str(tmp_path / "engines")

    config = write_config("terminal-ort", on_ort)
    out = tmp_path / "out"
    proc = run_cli("eval", config, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr and "warnings.warn" not in proc.stderr, proc.stderr[-3000:]
    log = (out / "logs" / "library-warnings.log").read_text()
    assert "TracerWarning" in log and "library warning(s) logged to" in proc.stderr
