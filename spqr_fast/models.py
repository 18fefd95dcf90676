"""Loading text-to-image models from local paths, and hashing what was loaded.

Formats: a diffusers folder; a single-file checkpoint (original SD layout, with a local diffusers
folder as `base` for the component configs); a UNet state dict applied on a `base` folder (how
erasure methods release weights). Missing or unexpected keys are reported, never ignored.
Nothing is downloaded: every call passes `local_files_only=True`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import ModelSource
from .errors import ModelLoadError

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".ckpt", ".pt", ".pth"}
LDM_UNET_PREFIX = "model.diffusion_model."


class FileHasher:
    """sha256 of files, cached on disk by (path, size, mtime) so multi-GB checkpoints hash once."""

    def __init__(self, cache_file: Path | None = None):
        self.cache_file = cache_file
        self._cache: dict[str, str] = {}
        if cache_file is not None and cache_file.is_file():
            try:
                self._cache = json.loads(cache_file.read_text())
            except json.JSONDecodeError:
                self._cache = {}

    def file(self, path: Path) -> str:
        st = path.stat()
        tag = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if tag not in self._cache:
            from .store import atomic_write_json, file_sha256

            self._cache[tag] = file_sha256(path)
            if self.cache_file is not None:
                atomic_write_json(self.cache_file, self._cache)
        return self._cache[tag]

    def tree(self, path: Path, suffixes: tuple[str, ...] | None = None) -> str:
        """Hash of a file, or of a folder's files (relative names + contents), optionally only
        those with the given suffixes."""
        path = Path(path)
        if path.is_file():
            return self.file(path)
        h = hashlib.sha256()
        files = (p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        for f in sorted(p for p in files if suffixes is None or p.suffix in suffixes):
            h.update(str(f.relative_to(path)).encode())
            h.update(self.file(f).encode())
        return h.hexdigest()


def source_hash(src: ModelSource, hasher: FileHasher) -> str:
    """A hash of everything that determines the loaded weights."""
    parts = {"format": src.format, "lora_scale": src.lora_scale}
    for attr in ("path", "base", "lora", "unet_patch"):
        val = getattr(src, attr)
        if val is not None:
            # a LoRA folder also holds cards and logs; only its weights determine the model
            parts[attr] = hasher.tree(Path(val), tuple(WEIGHT_SUFFIXES) if attr == "lora" else None)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class LoadReport:
    format: str
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    lora: str | None = None

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "missing_keys": len(self.missing_keys),
            "unexpected_keys": len(self.unexpected_keys),
            "missing_examples": self.missing_keys[:5],
            "lora": self.lora,
        }


def read_tensor_file(path: Path) -> object:
    """The contents of a .safetensors file or of a torch file holding only tensors. A torch file
    holding other objects (training arguments, say) is refused, not unpickled: unpickling can run
    code. Raises ValueError with one line for the caller to wrap."""
    import pickle

    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError("it is a pickle holding more than tensors, which spqr-fast never unpickles (that can run "
                         "code) — load it once where you trust it and save its state dict as .safetensors") from None
    except Exception as err:  # noqa: BLE001 - corrupt, truncated or foreign file: name it
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"{type(err).__name__}: {first[:160]} — is it a complete checkpoint?") from None


def _read_state_dict(path: Path) -> dict:
    try:
        sd = read_tensor_file(path)
    except ValueError as err:
        raise ModelLoadError(f"cannot read weights file '{path}': {err}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ModelLoadError(f"weights file '{path}' does not hold a state dict")
    return sd


def _file_keys(path: Path) -> list[str]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return list(fh.keys())
        except Exception as err:
            raise ModelLoadError(f"cannot read weights file '{path}' ({err}) — is it a complete .safetensors file?") from None
    return list(_read_state_dict(path).keys())


def detect_format(src: ModelSource) -> str:
    path = Path(src.path)  # type: ignore[arg-type]
    if src.format != "auto":
        return src.format
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return "diffusers"
        raise ModelLoadError(f"'{path}' is a folder without model_index.json — give a diffusers pipeline folder")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ModelLoadError(f"'{path}' is not a model: expected a diffusers folder or a {'/'.join(sorted(WEIGHT_SUFFIXES))} file")
    keys = _file_keys(path)
    return "single_file" if any(k.startswith(LDM_UNET_PREFIX) for k in keys) else "unet_state_dict"


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


def _require_base(src: ModelSource, fmt: str) -> str:
    if src.base is None:
        raise ModelLoadError(
            f"'{src.path}' is a {fmt.replace('_', ' ')}; set 'base:' to a local diffusers folder of the same architecture"
        )
    return src.base


def apply_unet_state_dict(unet, state_dict: dict, *, allow_missing: bool, source: str) -> tuple[list[str], list[str]]:
    """Load a (possibly 'unet.'-prefixed) UNet state dict; refuse unexpected keys, and missing ones
    unless the release is declared partial."""
    if any(k.startswith(LDM_UNET_PREFIX) for k in state_dict):
        raise ModelLoadError(f"'{source}' is in the original SD (LDM) layout — set format: single_file")
    sd = {k.removeprefix("unet."): v for k, v in state_dict.items()}
    own = unet.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if unexpected:
        raise ModelLoadError(
            f"'{source}': {len(unexpected)} keys do not belong to the base UNet (e.g. {unexpected[0]}) — wrong base model or file"
        )
    if missing and not allow_missing:
        raise ModelLoadError(
            f"'{source}': {len(missing)} UNet keys missing (e.g. {missing[0]}) — if the release holds only some layers, "
            "set allow_missing_keys: true"
        )
    shape_bad = [k for k, v in sd.items() if tuple(v.shape) != tuple(own[k].shape)]
    if shape_bad:
        raise ModelLoadError(f"'{source}': shape mismatch for {shape_bad[0]} — wrong base model")
    unet.load_state_dict(sd, strict=False)
    return missing, unexpected


def load_pipeline(src: ModelSource, *, device: str = "cpu", dtype: str = "auto"):
    """A StableDiffusionPipeline on `device` and a LoadReport of what was loaded."""
    import torch

    from .runtime import quiet_library_progress

    quiet_library_progress()
    torch_dtype = _torch_dtype(dtype, device)
    fmt = detect_format(src)
    report = LoadReport(format=fmt)
    if fmt == "diffusers":
        pipe = _from_diffusers_folder(src.path, torch.float32)  # type: ignore[arg-type]
    elif fmt == "single_file":
        from diffusers import StableDiffusionPipeline

        base = _require_base(src, fmt)
        try:
            pipe = StableDiffusionPipeline.from_single_file(
                src.path, config=base, local_files_only=True, torch_dtype=torch.float32,
                safety_checker=None, requires_safety_checker=False,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise ModelLoadError(f"cannot load single-file checkpoint '{src.path}': {str(err).splitlines()[0]}") from None
    else:
        pipe = _from_diffusers_folder(_require_base(src, fmt), torch.float32)
        report.missing_keys, report.unexpected_keys = apply_unet_state_dict(
            pipe.unet, _read_state_dict(Path(src.path)), allow_missing=src.allow_missing_keys, source=str(src.path)
        )
    if src.unet_patch is not None:
        apply_unet_state_dict(pipe.unet, _read_state_dict(Path(src.unet_patch)), allow_missing=True,
                              source=str(src.unet_patch))
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
