"""`spqr-fast doctor CONFIG`: every configured file checked for what its role needs, before a
long run finds out — loadable, the right architecture (a CLIP folder that holds a BLIP is named
as such, not reported as a size mismatch), disk space for the planned images, and the run time
projected from a two-step timing on this machine.

Each check returns rows (item, value, ok); a check never raises: what it cannot read is its
finding.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .config import EvalConfig, ModelSource

Row = tuple[str, str, bool]
FAMILIES = {768: "SD 1.x", 1024: "SD 2.x"}  # UNet cross-attention width → family
PNG_BYTES_PER_PIXEL = 1.6  # generated 512² images average ~0.4 MB as PNG; features and records are small


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def _guard(key: str, check: Callable[[], Row | list[Row]]) -> list[Row]:
    try:
        found = check()
    except Exception as err:  # noqa: BLE001 - doctor reports, never crashes
        return [(key, _first_line(err), False)]
    return found if isinstance(found, list) else [found]


def native_size(folder: Path) -> int:
    """A diffusers pipeline's own image size in pixels (UNet sample size × VAE factor), from its configs."""
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def describe_pipeline_folder(folder: Path) -> tuple[str, bool]:
    """(architecture in words, usable) of a diffusers folder, from its config files alone."""
    index = json.loads((folder / "model_index.json").read_text())
    cls = index.get("_class_name", "?")
    if cls != "StableDiffusionPipeline":
        return f"a {cls}, not a StableDiffusionPipeline (SD 1.x/2.x) — spqr-fast evaluates SD 1.x/2.x pipelines", False
    width = json.loads((folder / "unet" / "config.json").read_text()).get("cross_attention_dim")
    native = native_size(folder)
    family = FAMILIES.get(width, f"custom ({width}-d text conditioning)")
    return f"diffusers folder, {family} architecture, native {native} px", True


def check_model(key: str, src: ModelSource) -> list[Row]:
    from .models import WEIGHT_SUFFIXES, detect_format

    path = Path(src.path)  # type: ignore[arg-type]
    rows: list[Row] = []
    if not path.exists():
        return [(key, f"{path}: missing", False)]
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            return [(key, f"{path}: a folder without model_index.json — give a diffusers pipeline folder", False)]
        words, ok = describe_pipeline_folder(path)
        rows.append((key, f"{path}: {words}", ok))
    else:
        if path.suffix not in WEIGHT_SUFFIXES:
            return [(key, f"{path}: not a weights file ({'/'.join(sorted(WEIGHT_SUFFIXES))})", False)]
        if src.base is None:
            return [(key, f"{path}: a weights file needs `base:` (a diffusers folder of the same architecture)", False)]
        fmt = detect_format(src)
        rows.append((key, f"{path}: {fmt}{_unet_fit(path, src) if fmt == 'unet_state_dict' else ''}", True))
        rows += _guard(f"{key}.base", lambda: check_model(f"{key}.base", ModelSource(path=src.base))[0])
    if src.lora is not None:
        lora = Path(src.lora)
        files = sorted(lora.glob("*.safetensors")) if lora.is_dir() else []
        rows.append((f"{key}.lora", f"{lora}: {', '.join(f.name for f in files) or 'no .safetensors file'}", bool(files)))
    return rows


def unet_release_fit(path: Path, base: Path) -> dict | None:
    """Missing, unexpected and wrongly shaped keys of a diffusers-layout safetensors UNet
    release against its base's UNet, from the file's header (no tensor is read); None for
    other files (torch files, the original layout: checked when loaded)."""
    from types import SimpleNamespace

    from safetensors import safe_open

    from .model_formats import base_unet_shapes, compare_unet_keys, layout

    if path.suffix != ".safetensors":
        return None
    with safe_open(str(path), framework="pt") as fh:
        shapes = {k.removeprefix("unet."): SimpleNamespace(shape=tuple(fh.get_slice(k).get_shape())) for k in fh.keys()}
    if layout(list(shapes)) != "diffusers":
        return None
    return {**compare_unet_keys(shapes, base_unet_shapes(base)), "tensors": len(shapes)}


def _unet_fit(path: Path, src: ModelSource) -> str:
    found = unet_release_fit(path, Path(src.base))  # type: ignore[arg-type]
    if found is None:
        return " (keys checked when loaded)"
    if found["unexpected"] or found["shape_mismatch"]:
        bad = (found["unexpected"] or found["shape_mismatch"])[0]
        raise ValueError(f"{path}: does not fit the base's UNet (e.g. {bad}) — wrong base model or file")
    if found["missing"] and not src.allow_missing_keys:
        raise ValueError(f"{path}: {len(found['missing'])} UNet keys missing — set allow_missing_keys: true if the "
                         "release holds only some layers")
    partial = f", {len(found['missing'])} keys missing (partial release)" if found["missing"] else ""
    return f", {found['tensors']} UNet tensors fit the base{partial}"


def check_exists(key: str, path: str | None, what: str) -> Row:
    if path is None or not Path(path).exists():
        return key, f"{path}: missing — {what}", False
    return key, str(path), True


def check_transformers_folder(key: str, path: str, want: str, architecture: str | None = None) -> Row:
    """A transformers folder whose config names the model type `want` (e.g. clip, blip)."""
    if not Path(path).exists():
        return key, f"{path}: missing — a local transformers {want.upper()} folder", False
    config = Path(path) / "config.json"
    if not config.is_file():
        return key, f"{path}: no config.json — give a local transformers {want.upper()} folder", False
    data = json.loads(config.read_text())
    kind = data.get("model_type")
    if kind != want:
        return key, f"{path}: holds a '{kind}' model, not {want.upper()}", False
    arch = ", ".join(data.get("architectures") or []) or kind
    if architecture and architecture not in arch:
        return key, f"{path}: a {arch}, not a {architecture}", False
    return key, f"{path}: {arch}", True


def check_onnx_judge(key: str, path: str) -> Row:
    from .judges.ort_session import open_session

    if not Path(path).exists():
        return key, f"{path}: missing — an ONNX file", False
    session, _ = open_session(Path(path), ["CPUExecutionProvider"], key, "")
    shape = session.get_inputs()[0].shape
    return key, f"{path}: ONNX, input {shape}", True


def check_prompts(cfg: EvalConfig) -> list[Row]:
    from .prompts import list_reference_images, load_prompt_set

    rows: list[Row] = []
    for name in ("harmful", "utility"):
        spec = getattr(cfg.prompts, name)
        if not Path(spec.path).exists():
            rows.append((f"prompts.{name}", f"{spec.path}: missing — a prompt file", False))
            continue
        rows += _guard(f"prompts.{name}", lambda spec=spec: (
            f"prompts.{name}", f"{spec.path}: {len(load_prompt_set(spec, warn=lambda _m: None))} prompts", True))
    if not Path(cfg.prompts.reference_images).exists():
        rows.append(("prompts.reference_images", f"{cfg.prompts.reference_images}: missing — reference images for FID",
                     False))
    else:
        rows += _guard("prompts.reference_images", lambda: (
            "prompts.reference_images",
            f"{cfg.prompts.reference_images}: {len(list_reference_images(cfg.prompts.reference_images))} images", True))
    return rows


def planned_images(cfg: EvalConfig) -> int:
    """Images one eval generates: every prompt × samples, for each model before and after BFT."""
    from .prompts import load_prompt_set

    prompts = sum(len(load_prompt_set(getattr(cfg.prompts, n), warn=lambda _m: None)) for n in ("harmful", "utility"))
    stages = sum(1 + (m.after_bft is not None or m.bft is not None) for m in cfg.models)
    return prompts * cfg.generation.samples_per_prompt * stages


def check_disk(cfg: EvalConfig, out: Path) -> Row:
    images = planned_images(cfg)
    need = images * cfg.generation.height * cfg.generation.width * PNG_BYTES_PER_PIXEL
    probe = out
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    words = f"{images:,} images ≈ {_size(need)}; {_size(free)} free at {probe}"
    return "disk", words if free >= need else words + " — free space or choose another --out", free >= need


def _size(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def project_time(cfg: EvalConfig) -> Row:
    """Seconds per image from two timed UNet steps of the first model on this machine (eager
    torch), times the planned images; BFT and judging are not included."""
    from .backends.build_cost import ASSUMED_SPEEDUP, time_unet_step
    from .models import load_pipeline, pick_device

    g = cfg.generation
    device = pick_device(g.device)
    pipe, _ = load_pipeline(cfg.models[0].model, device=device, dtype=g.dtype)
    step = time_unet_step(pipe, g.height, g.width)
    per_image = step * g.steps
    total = per_image * planned_images(cfg)
    faster = ASSUMED_SPEEDUP["ort-cpu" if device == "cpu" else "ort-cuda"]
    return ("projected generation time",
            f"{total / 60:,.0f} min on eager torch ({per_image:.2f} s/image: {g.steps} steps × {step:.3f} s on "
            f"{device}); ≈ {total / faster / 60:,.0f} min if ONNX Runtime is chosen. BFT and judging not included", True)


def file_rows(cfg: EvalConfig, out: Path, *, timing: bool = True) -> list[Row]:
    rows: list[Row] = []
    for m in cfg.models:
        for stage, src in (("model", m.model), ("after_bft", m.after_bft)):
            if src is not None and src.path is not None:
                rows += _guard(f"{m.name}.{stage}", lambda m=m, stage=stage, src=src: check_model(f"{m.name}.{stage}", src))
            if src is not None and src.path is None and src.lora is not None:
                rows += _guard(f"{m.name}.{stage}.lora", lambda m=m, src=src: check_model(
                    f"{m.name}.{stage}", ModelSource(path=m.model.path, base=m.model.base, format=m.model.format,
                                                      allow_missing_keys=m.model.allow_missing_keys, lora=src.lora))[-1:])
        if m.bft is not None:
            rows.append(check_exists(f"{m.name}.bft.dataset", m.bft.dataset,
                                     "benign fine-tuning images with metadata.jsonl"))
    j = cfg.judges
    if j.q16 is not None:
        rows.append(check_exists("judges.q16.clip_path", j.q16.clip_path, "a CLIP ViT-L/14 folder"))
        rows.append(check_exists("judges.q16.prompts_path", j.q16.prompts_path, "Q16's learned prompt embeddings"))
    if j.vlm_guard is not None:
        rows.append(check_exists("judges.vlm_guard.path", j.vlm_guard.path, "a local LlavaGuard-class folder"))
    if j.clip is not None and j.clip.path:
        rows += _guard("judges.clip", lambda: check_transformers_folder("judges.clip", j.clip.path, "clip"))
    if j.vqa is not None:
        rows += _guard("judges.vqa", lambda: check_transformers_folder("judges.vqa", j.vqa.path, "blip",
                                                                       "BlipForQuestionAnswering"))
        rows.append(check_exists("judges.vqa.questions", j.vqa.questions, "a TIFA-style questions file"))
    if j.nudenet is not None:
        from .judges.nudenet import packaged_model_path

        rows += _guard("judges.nudenet", lambda: check_onnx_judge("judges.nudenet",
                                                                  str(j.nudenet.model_path or packaged_model_path())))
    if j.concept_detector is not None:
        rows += _guard("judges.concept_detector", lambda: check_onnx_judge("judges.concept_detector",
                                                                           j.concept_detector.path))
    if j.inception.onnx:
        rows += _guard("judges.inception.onnx", lambda: check_onnx_judge("judges.inception.onnx", j.inception.onnx))
    if j.inception.weights and not Path(j.inception.weights).exists():
        rows.append(("judges.inception.weights", f"{j.inception.weights}: missing — the FID Inception weights file",
                     False))
    elif j.inception.weights:
        def inception() -> Row:
            from .judges.inception import InceptionFeatures

            InceptionFeatures(j.inception.weights, None)
            return "judges.inception.weights", f"{j.inception.weights}: FID Inception weights", True

        rows += _guard("judges.inception.weights", inception)
    rows += check_prompts(cfg)
    if all(ok for _, _, ok in rows):
        rows += _guard("disk", lambda: check_disk(cfg, out))
        if timing:
            started = time.perf_counter()
            rows += _guard("projected generation time", lambda: project_time(cfg))
            rows[-1] = (rows[-1][0], rows[-1][1] + f" (timed in {time.perf_counter() - started:.0f} s)", rows[-1][2])
    return rows
