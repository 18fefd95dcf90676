"""Export a text-to-image model through Optimum to ONNX.

The LoRA (or a BFT patch) is fused into the UNet in fp32 by `load_pipeline`, the fused pipeline
is saved as a plain diffusers folder, and `optimum.exporters.onnx.main_export` exports text
encoder, UNet and VAE decoder (external data when a graph passes 2 GB). The result loads in
`optimum.onnxruntime.ORTStableDiffusionPipeline.from_pretrained(DIR)` as well as in spqr-fast.
"""

from __future__ import annotations

import contextlib
import tempfile
from importlib import metadata
from pathlib import Path

from ..config import ModelSource
from ..errors import ModelLoadError, SpqrError
from ..models import FileHasher, load_pipeline, source_hash
from .cache import ArtefactCache

COMPONENTS = ("text_encoder", "unet", "vae_decoder")
EXPORT_RECIPE = 2  # bump when what we hand the exporter changes (e.g. the fused-attention symbolic)


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def fused_attention(opset: int = 14):
    """Export unmasked `scaled_dot_product_attention` as ONNX Runtime's fused `MultiHeadAttention`
    contrib op instead of MatMul → Softmax → MatMul, which materialises every score matrix: at
    SD 1.5 size that attention is ~70 % of an ORT CPU step (docs/benchmarks.md).

    Heads are folded into the batch ([B, H, S, D] → [B·H, S, D], one head), so the op needs no
    head count and serves the UNet and the VAE alike; masked or causal attention (the CLIP text
    encoder) keeps the standard export. Only ONNX Runtime runs the result; TensorRT builds use
    the plain graphs."""
    import torch
    from torch.onnx import register_custom_op_symbolic, symbolic_helper, unregister_custom_op_symbolic
    from torch.onnx.symbolic_opset14 import scaled_dot_product_attention as standard

    def sdpa(g, query, key, value, attn_mask=None, dropout_p=None, is_causal=None, scale=None, enable_gqa=None):
        masked = attn_mask is not None and not symbolic_helper._is_none(attn_mask)
        if masked or symbolic_helper._maybe_get_const(is_causal, "b"):
            return standard(g, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)

        def const(values):
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

        def fold(x):  # [B, H, S, D] → [B·H, S, D]
            tail = g.op("Slice", g.op("Shape", x), const([2]), const([4]))
            return g.op("Reshape", x, g.op("Concat", const([-1]), tail, axis_i=0))

        attrs = {"num_heads_i": 1}
        if scale is not None and not symbolic_helper._is_none(scale):
            attrs["scale_f"] = symbolic_helper._maybe_get_const(scale, "f")
        out = g.op("com.microsoft::MultiHeadAttention", fold(query), fold(key), fold(value), **attrs)
        shape = g.op("Concat", g.op("Slice", g.op("Shape", query), const([0]), const([3])),
                     g.op("Slice", g.op("Shape", value), const([3]), const([4])), axis_i=0)
        return g.op("Reshape", out, shape)

    register_custom_op_symbolic("aten::scaled_dot_product_attention", sdpa, opset)
    try:
        yield
    finally:
        unregister_custom_op_symbolic("aten::scaled_dot_product_attention", opset)


def onnx_key_inputs(weights_hash: str, precision: str, opset: int | None, attention: str = "plain") -> dict:
    """Everything that determines the exported graphs."""
    return {"weights": weights_hash, "component": "sd-pipeline", "precision": precision, "opset": opset,
            "attention": attention, "recipe": EXPORT_RECIPE,
            "exporter": "optimum.main_export", "optimum": _version("optimum-onnx") or _version("optimum"),
            "onnx": _version("onnx"), "torch": _version("torch"), "onnxruntime": _version("onnxruntime")
            or _version("onnxruntime-gpu")}


def export_onnx(src: ModelSource, out: Path, *, precision: str = "fp32", opset: int | None = None,
                device: str = "cpu", attention: str = "plain") -> str:
    """Write an ORTStableDiffusionPipeline folder for `src` to `out`; `attention="fused"` asks for
    ONNX Runtime's MultiHeadAttention (see `fused_attention`). Returns the attention exported."""
    from optimum.exporters.onnx import main_export

    if precision == "fp16" and device != "cuda":
        raise SpqrError("fp16 export runs on a CUDA device (Optimum's requirement) — use --precision fp32 here")
    pipe, _ = load_pipeline(src, device="cpu", dtype="fp32")  # fuse in fp32, export casts if asked
    with tempfile.TemporaryDirectory(prefix="spqr-fused-") as tmp:
        pipe.save_pretrained(tmp)
        del pipe
        patch = fused_attention() if attention == "fused" else contextlib.nullcontext()
        try:
            with patch:
                main_export(tmp, output=str(out), task="text-to-image", opset=opset, device=device,
                            dtype="fp16" if precision == "fp16" else None, do_validation=False)
        except Exception as err:  # the exporter's errors are long; keep the first line
            raise ModelLoadError(f"ONNX export of '{src.path}' failed: {str(err).splitlines()[0]}") from err
    return attention


def cached_onnx_export(src: ModelSource, cache: ArtefactCache, hasher: FileHasher, *, precision: str = "fp32",
                       opset: int | None = None, device: str = "cpu", attention: str = "plain", log=print) -> Path:
    """The exported folder from the cache, exporting (again) when it is missing or invalid."""
    inputs = onnx_key_inputs(source_hash(src, hasher), precision, opset, attention)

    def build(folder: Path) -> dict:
        exported = export_onnx(src, folder, precision=precision, opset=opset, device=device, attention=attention)
        return {"source": src.model_dump(), "attention_exported": exported}

    return cache.get_or_build("onnx", inputs, build, label="ONNX artefact", log=log)
