"""Loading text-to-image models from local paths, and hashing what was loaded.

Formats: a diffusers folder; a single-file checkpoint (original SD layout, with a local diffusers
folder as `base` for the component configs); a UNet state dict applied on a `base` folder (how
erasure methods release weights). Missing or unexpected keys are reported, never ignored.
Nothing is downloaded: every call passes `local_files_only=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import ModelSource
from .errors import ModelLoadError
from .model_formats import (PickleRefused, WeightFile, base_unet_config, base_unet_shapes, compare_unet_keys, layout,
                            ldm_unet_to_diffusers, load_raw, read_weight_file, unet_tensors)

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".ckpt", ".pt", ".pth"}


@dataclass
class LoadReport:
    format: str
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    lora: str | None = None
    layout: str | None = None  # a UNet state dict's key layout: "diffusers" or "ldm_unet" (converted)

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "layout": self.layout,
            "missing_keys": len(self.missing_keys),
            "unexpected_keys": len(self.unexpected_keys),
            "missing_examples": self.missing_keys[:5],
            "lora": self.lora,
        }


def read_tensor_file(path: Path) -> object:
    """The contents of a .safetensors file or of a torch file holding only tensors (a judge's
    weights, Q16's prompt embeddings); a pickle holding other objects is refused, never
    unpickled. Raises ValueError with one line for the caller to wrap."""
    try:
        return load_raw(path)
    except PickleRefused:
        raise ValueError("it is a pickle holding more than tensors, which spqr-fast never unpickles (that can run "
                         "code) — load it once where you trust it and save its state dict as .safetensors") from None


def _read_release(path: Path) -> WeightFile:
    """A released weights file's tensors, out of their wrapper; pickles holding more than tensors
    are refused with the command that converts them."""
    try:
        return read_weight_file(path)
    except PickleRefused as err:
        raise ModelLoadError(f"cannot read weights file '{path}': {err} — convert it once, where you trust it: "
                             "`spqr-fast convert FILE --out NEW.safetensors --trust-pickle [--base DIR]`") from None
    except ValueError as err:
        raise ModelLoadError(f"cannot read weights file '{path}': {err}") from None


def _file_keys(path: Path) -> list[str]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return list(fh.keys())
        except Exception as err:
            raise ModelLoadError(f"cannot read weights file '{path}' ({err}) — is it a complete .safetensors file?") from None
    return list(_read_release(path).tensors)


def detect_format(src: ModelSource, release: WeightFile | None = None) -> str:
    """'diffusers' (a pipeline folder), 'single_file' (a whole model in the original layout) or
    'unet_state_dict' (UNet weights for a base, in diffusers' or the original layout). `release`:
    the file's contents when they were already read (its keys tell the layout)."""
    path = Path(src.path)  # type: ignore[arg-type]
    if src.format != "auto":
        return src.format
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return "diffusers"
        raise ModelLoadError(f"'{path}' is a folder without model_index.json — give a diffusers pipeline folder")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ModelLoadError(f"'{path}' is not a model: expected a diffusers folder or a {'/'.join(sorted(WEIGHT_SUFFIXES))} file")
    keys = list(release.tensors) if release is not None else _file_keys(path)
    return "single_file" if layout(keys) == "ldm_full" else "unet_state_dict"


def _torch_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def _from_diffusers_folder(path: str, torch_dtype):
    from diffusers import StableDiffusionPipeline

    try:
        return StableDiffusionPipeline.from_pretrained(
            path, torch_dtype=torch_dtype, safety_checker=None, requires_safety_checker=False, local_files_only=True
        )
    except (OSError, ValueError, EnvironmentError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load diffusers folder '{path}': {first}") from None


def _require_base(src: ModelSource) -> str:
    """A weights file needs a base folder; checked before anything is read."""
    if src.base is None:
        raise ModelLoadError(
            f"'{src.path}' is a weights file, not a pipeline folder; give its base — a local diffusers folder of the "
            "same architecture (`base:` under the model in the config, `--base` on the command line)"
        )
    if not (Path(src.base) / "model_index.json").is_file():
        raise ModelLoadError(f"base '{src.base}' is not a diffusers pipeline folder (no model_index.json) — fix the path")
    return src.base


def unet_release(path: Path, base: str, found: WeightFile | None = None) -> tuple[dict, str]:
    """A UNet release's tensors under diffusers' names ('unet.' prefix dropped, original layout
    renamed through the base's UNet config), and the layout it came in. `found`: the file's
    contents when they were already read."""
    found = found if found is not None else _read_release(path)
    keys_layout = layout(found.tensors)
    if keys_layout == "ldm_full":
        raise ModelLoadError(f"'{path}' is a whole model in the original layout, not a UNet state dict — "
                             "set `format: single_file` (CLI: --format single_file)")
    if keys_layout == "ldm_unet":
        tensors, _ = ldm_unet_to_diffusers(unet_tensors(found.tensors, keys_layout), base_unet_config(Path(base)))
        return tensors, keys_layout
    return {k.removeprefix("unet."): v for k, v in found.tensors.items()}, keys_layout


def check_unet_keys(state_dict: dict, shapes: dict[str, tuple[int, ...]], *, allow_missing: bool,
                    source: str) -> tuple[list[str], list[str]]:
    """Refuse unexpected or wrongly shaped keys, and missing ones unless the release is declared
    partial; returns (missing, unexpected)."""
    found = compare_unet_keys(state_dict, shapes)
    missing, unexpected = found["missing"], found["unexpected"]
    if unexpected:
        raise ModelLoadError(
            f"'{source}': {len(unexpected)} keys do not belong to the base UNet (e.g. {unexpected[0]}) — wrong base model or file"
        )
    if missing and not allow_missing:
        raise ModelLoadError(
            f"'{source}': {len(missing)} UNet keys missing (e.g. {missing[0]}) — if the release holds only some layers, "
            "set allow_missing_keys: true (CLI: --allow-missing-keys)"
        )
    if found["shape_mismatch"]:
        raise ModelLoadError(f"'{source}': shape mismatch for {found['shape_mismatch'][0]} — wrong base model")
    return missing, unexpected


def apply_unet_state_dict(unet, state_dict: dict, *, allow_missing: bool, source: str) -> tuple[list[str], list[str]]:
    """Load a diffusers-layout UNet state dict (possibly 'unet.'-prefixed) after `check_unet_keys`."""
    sd = {k.removeprefix("unet."): v for k, v in state_dict.items()}
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    missing, unexpected = check_unet_keys(sd, shapes, allow_missing=allow_missing, source=source)
    unet.load_state_dict(sd, strict=False)
    return missing, unexpected


def load_pipeline(src: ModelSource, *, device: str = "cpu", dtype: str = "auto"):
    """A StableDiffusionPipeline on `device` and a LoadReport of what was loaded."""
    import torch

    from .runtime import quiet_library_progress

    quiet_library_progress()
    torch_dtype = _torch_dtype(dtype, device)
    path = Path(src.path)  # type: ignore[arg-type]
    release = None
    if path.is_file():
        _require_base(src)  # before reading a possibly multi-GB file
        if path.suffix != ".safetensors" and src.format in ("auto", "unet_state_dict"):
            release = _read_release(path)  # a torch file is read once: its keys tell the format, its tensors load
    fmt = detect_format(src, release)
    report = LoadReport(format=fmt)
    if fmt == "diffusers":
        pipe = _from_diffusers_folder(src.path, torch.float32)  # type: ignore[arg-type]
    elif fmt == "single_file":
        from diffusers import StableDiffusionPipeline

        base = _require_base(src)
        try:
            pipe = StableDiffusionPipeline.from_single_file(
                src.path, config=base, local_files_only=True, torch_dtype=torch.float32,
                safety_checker=None, requires_safety_checker=False,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise ModelLoadError(f"cannot load single-file checkpoint '{src.path}': {str(err).splitlines()[0]}") from None
    else:
        base = _require_base(src)
        tensors, report.layout = unet_release(path, base, release)
        # the keys are checked against the base's UNet config before the base pipeline loads
        check_unet_keys(tensors, base_unet_shapes(Path(base)), allow_missing=src.allow_missing_keys, source=str(src.path))
        pipe = _from_diffusers_folder(base, torch.float32)
        report.missing_keys, report.unexpected_keys = apply_unet_state_dict(
            pipe.unet, tensors, allow_missing=src.allow_missing_keys, source=str(src.path))
    if src.unet_patch is not None:
        patch, _ = unet_release(Path(src.unet_patch), src.base or str(src.path))
        apply_unet_state_dict(pipe.unet, patch, allow_missing=True, source=str(src.unet_patch))
    if src.lora is not None:
        apply_lora(pipe, src.lora, src.lora_scale)
        report.lora = src.lora
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device, torch_dtype)  # LoRA fused in fp32 first, then cast
    return pipe, report


def apply_lora(pipe, lora_dir: str, scale: float = 1.0) -> None:
    """Load a diffusers-format LoRA folder and fuse it into the weights (in their current dtype)."""
    folder = Path(lora_dir)
    files = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        raise ModelLoadError(f"LoRA folder '{folder}' holds no .safetensors file — expected pytorch_lora_weights.safetensors")
    weight_name = "pytorch_lora_weights.safetensors" if "pytorch_lora_weights.safetensors" in files else files[0]
    try:
        pipe.load_lora_weights(str(folder), weight_name=weight_name, adapter_name="bft", local_files_only=True)
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        raise ModelLoadError(f"cannot load LoRA '{folder}': {str(err).splitlines()[0]}") from None
    pipe.fuse_lora(lora_scale=scale, adapter_names=["bft"])
    pipe.unload_lora_weights()


def pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
