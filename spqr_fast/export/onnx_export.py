"""Export a text-to-image model through Optimum to ONNX.

The LoRA (or a BFT patch) is fused into the UNet in fp32 by `load_pipeline`, the fused pipeline
is saved as a plain diffusers folder, and `optimum.exporters.onnx.main_export` exports text
encoder, UNet and VAE decoder (external data when a graph passes 2 GB). The result loads in
`optimum.onnxruntime.ORTStableDiffusionPipeline.from_pretrained(DIR)` as well as in spqr-fast.
"""

from __future__ import annotations

import tempfile
from importlib import metadata
from pathlib import Path

from ..config import ModelSource
from ..errors import ModelLoadError, SpqrError
from ..models import FileHasher, load_pipeline, source_hash
from .cache import ArtefactCache

COMPONENTS = ("text_encoder", "unet", "vae_decoder")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def onnx_key_inputs(weights_hash: str, precision: str, opset: int | None) -> dict:
    """Everything that determines the exported graphs."""
    return {"weights": weights_hash, "component": "sd-pipeline", "precision": precision, "opset": opset,
            "exporter": "optimum.main_export", "optimum": _version("optimum-onnx") or _version("optimum"),
            "onnx": _version("onnx"), "torch": _version("torch"), "onnxruntime": _version("onnxruntime")
            or _version("onnxruntime-gpu")}


def export_onnx(src: ModelSource, out: Path, *, precision: str = "fp32", opset: int | None = None,
                device: str = "cpu") -> None:
    """Write an ORTStableDiffusionPipeline folder for `src` to `out`."""
    from optimum.exporters.onnx import main_export

    if precision == "fp16" and device != "cuda":
        raise SpqrError("fp16 export runs on a CUDA device (Optimum's requirement) — use --precision fp32 here")
    pipe, _ = load_pipeline(src, device="cpu", dtype="fp32")  # fuse in fp32, export casts if asked
    with tempfile.TemporaryDirectory(prefix="spqr-fused-") as tmp:
        pipe.save_pretrained(tmp)
        del pipe
        try:
            main_export(tmp, output=str(out), task="text-to-image", opset=opset, device=device,
                        dtype="fp16" if precision == "fp16" else None, do_validation=False)
        except Exception as err:  # the exporter's errors are long; keep the first line
            raise ModelLoadError(f"ONNX export of '{src.path}' failed: {str(err).splitlines()[0]}") from err


def cached_onnx_export(src: ModelSource, cache: ArtefactCache, hasher: FileHasher, *, precision: str = "fp32",
                       opset: int | None = None, device: str = "cpu", log=print) -> Path:
    """The exported folder from the cache, exporting (again) when it is missing or invalid."""
    inputs = onnx_key_inputs(source_hash(src, hasher), precision, opset)
    folder = cache.folder("onnx", inputs)
    ok, why = cache.valid(folder)
    if ok:
        return folder
    if folder.exists():
        log(f"ONNX artefact {folder.name}: {why} — rebuilding")
        cache.discard(folder)
    export_onnx(src, folder, precision=precision, opset=opset, device=device)
    cache.seal(folder, inputs, {"source": src.model_dump()})
    return folder
