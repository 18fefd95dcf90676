"""`spqr-fast doctor`: what this machine offers and, with a config, whether every configured file
will work (doctor_files)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from .safe_text import shown
from rich.table import Table

from .provenance import environment


def _hardware_rows() -> list[tuple[str, str, bool]]:
    rows = []
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        rows.append(("onnxruntime providers", ", ".join(providers), True))
        for p, why in (("CUDAExecutionProvider", "pip install 'spqr-fast[gpu]' (onnxruntime-gpu) on a CUDA machine"),
                       ("TensorrtExecutionProvider", "onnxruntime-gpu with TensorRT libraries")):
            if p not in providers:
                rows.append((p, f"missing — {why}", False))
    except ImportError:
        rows.append(("onnxruntime", "not installed", False))
    try:
        import torch

        if torch.cuda.is_available():
            cap = torch.cuda.get_device_capability(0)
            rows.append(("GPU", f"{torch.cuda.get_device_name(0)} (compute {cap[0]}.{cap[1]})", True))
        else:
            rows.append(("GPU", f"none visible to torch {torch.__version__} — generation runs on the CPU", False))
    except ImportError:
        rows.append(("torch", "not installed", False))
    try:
        import tensorrt  # noqa: F401

        rows.append(("tensorrt", tensorrt.__version__, True))
    except ImportError:
        rows.append(("tensorrt", "missing — pip install 'spqr-fast[tensorrt]' on a GPU machine", False))
    try:
        from .judges.nudenet import packaged_model_path

        p = packaged_model_path()
        rows.append(("NudeNet 320n.onnx", str(p), p.is_file()))
    except Exception as err:  # noqa: BLE001 - doctor reports, never crashes
        rows.append(("NudeNet 320n.onnx", str(err), False))
    return rows


def run_doctor(console: Console, config: Path | None, *, out: Path = Path("spqr-out"), timing: bool = True) -> bool:
    env = environment()
    table = Table(title="spqr-fast doctor")
    table.add_column("item")
    table.add_column("value", overflow="fold")
    table.add_column("ok")
    table.add_row("python", f"{env['python']} on {env['platform']}", "✓")
    for name, ver in env["packages"].items():
        table.add_row(name, ver or "not installed", "✓" if ver else "·")
    config_rows = []
    if config is not None:
        from .config import load_config
        from .doctor_files import file_rows

        config_rows = file_rows(load_config(config, must_exist=False), out, timing=timing)
    for name, value, ok in _hardware_rows() + config_rows:
        table.add_row(name, shown(value), "✓" if ok else "✗")  # "[gpu]" is text, not Rich markup
    console.print(table)
    failed = [r for r in config_rows if not r[2]]
    if failed:
        console.print(f"[red]{len(failed)} configured file(s) missing or unusable[/] — fix them before `eval`:")
        for key, value, _ in failed:
            console.print(f"  {key}: {shown(value)}", soft_wrap=True)
    return not failed
