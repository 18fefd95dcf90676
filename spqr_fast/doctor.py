"""`spqr-fast doctor`: what this machine offers and which configured weights resolve."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
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


def _config_rows(config: Path) -> list[tuple[str, str, bool]]:
    import yaml

    from .config import parse_config

    base = config.resolve().parent
    cfg = parse_config(yaml.safe_load(config.read_text(encoding="utf-8")), str(config))
    paths: list[tuple[str, str | None]] = []
    for i, m in enumerate(cfg.models):
        for stage, src in (("model", m.model), ("after_bft", m.after_bft)):
            if src is not None:
                paths += [(f"{m.name}.{stage}.{a}", getattr(src, a)) for a in ("path", "base", "lora")]
    paths += [("prompts.harmful", cfg.prompts.harmful.path), ("prompts.utility", cfg.prompts.utility.path),
              ("prompts.reference_images", cfg.prompts.reference_images), ("judges.clip", cfg.judges.clip.path),
              ("judges.inception.weights", cfg.judges.inception.weights),
              ("judges.inception.onnx", cfg.judges.inception.onnx),
              ("judges.nudenet.model_path", cfg.judges.nudenet.model_path if cfg.judges.nudenet else None),
              ("judges.concept_detector.path", cfg.judges.concept_detector.path if cfg.judges.concept_detector else None)]
    if cfg.judges.q16:
        paths += [("judges.q16.clip_path", cfg.judges.q16.clip_path), ("judges.q16.prompts_path", cfg.judges.q16.prompts_path)]
    if cfg.judges.vlm_guard:
        paths.append(("judges.vlm_guard.path", cfg.judges.vlm_guard.path))
    rows = []
    for key, p in paths:
        if p is None:
            continue
        full = Path(p) if Path(p).is_absolute() else base / p
        rows.append((key, str(full), full.exists()))
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
    config_rows = _config_rows(config) if config is not None else []
    missing_config = [r for r in config_rows if not r[2]]
    if config is not None and not missing_config:  # every path resolves: check what each file holds
        from .config import load_config
        from .doctor_files import file_rows

        config_rows = file_rows(load_config(config), out, timing=timing)
    for name, value, ok in _hardware_rows() + config_rows:
        table.add_row(name, escape(value), "✓" if ok else "✗")  # "[gpu]" is text, not Rich markup
    console.print(table)
    if missing_config:
        console.print(f"[red]{len(missing_config)} configured path(s) do not resolve[/] — fix them before `eval`:")
        for key, path, _ in missing_config:
            console.print(f"  {key}: {escape(path)}", soft_wrap=True)
        return False
    failed = [r for r in config_rows if not r[2]]
    if failed:
        console.print(f"[red]{len(failed)} configured file(s) will not work[/] — fix them before `eval`:")
        for key, value, _ in failed:
            console.print(f"  {key}: {escape(value)}", soft_wrap=True)
    return not failed
