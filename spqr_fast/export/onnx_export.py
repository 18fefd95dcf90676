"""Export a text-to-image model through Optimum to ONNX, one component at a time.

The LoRA (or a BFT patch) is fused into the UNet in fp32 by `load_pipeline`; Optimum's diffusion
export configs (`get_diffusion_models_for_export`) and `export_models` then write text encoder,
UNet and VAE decoder — the calls `main_export` makes, minus the VAE encoder that generation never
uses (external data when a graph passes 2 GB). In the artefact cache each component is its own
artefact keyed by the hash of its own weights: erasure releases and BFT change only the UNet, so
the text encoder and VAE are exported once per base and every later stage exports its UNet
alone. A pipeline folder (tokenizer, scheduler, model_index.json and links to its components)
loads in `optimum.onnxruntime.ORTStableDiffusionPipeline.from_pretrained(DIR)` and in spqr-fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from importlib import metadata
from pathlib import Path

from ..config import ModelSource
from ..errors import ModelLoadError, SpqrError
from ..models import load_pipeline
from ..keys import FileHasher, component_hashes
from .cache import ArtefactCache

COMPONENTS = ("text_encoder", "unet", "vae_decoder")
EXPORT_RECIPE = 3  # bump when what we hand the exporter changes (3: one artefact per component)


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


def part_key_inputs(component: str, weights_hash: str, precision: str, opset: int | None,
                    attention: str = "plain") -> dict:
    """Everything that determines one exported component's graph."""
    return {"weights": weights_hash, "component": component, "precision": precision, "opset": opset,
            "attention": attention, "recipe": EXPORT_RECIPE,
            "exporter": "optimum.export_models", "optimum": _version("optimum-onnx") or _version("optimum"),
            "onnx": _version("onnx"), "torch": _version("torch"), "onnxruntime": _version("onnxruntime")
            or _version("onnxruntime-gpu")}


def onnx_key_inputs(weights_hash: str, precision: str, opset: int | None, attention: str = "plain") -> dict:
    """Everything that determines a whole exported folder (`spqr-fast export`)."""
    return part_key_inputs("sd-pipeline", weights_hash, precision, opset, attention)


def pipeline_key_inputs(parts: dict[str, str], source: str) -> dict:
    """A cached pipeline folder: the keys of its component artefacts, and the source's hash for
    the tokenizer and scheduler it carries."""
    return {"parts": dict(sorted(parts.items())), "source": source, "recipe": EXPORT_RECIPE}


def count_parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def export_components(pipe, out: Path, components: tuple[str, ...] = COMPONENTS, *, precision: str = "fp32",
                      opset: int | None = None, device: str = "cpu", attention: str = "plain") -> None:
    """Write `out/<component>/model.onnx` (+ config) for each named component of a loaded pipeline."""
    import torch
    from optimum.exporters.onnx import export_models
    from optimum.exporters.utils import get_diffusion_models_for_export

    if precision == "fp16" and device != "cuda":
        raise SpqrError("fp16 export runs on a CUDA device (Optimum's requirement) — use --precision fp32 here")
    if precision == "fp16" or device != "cpu":
        pipe = pipe.to(device, torch.float16 if precision == "fp16" else torch.float32)
    found = get_diffusion_models_for_export(pipe, float_dtype=precision)
    chosen = {name: found[name] for name in components}
    for name, (module, _) in chosen.items():
        (module.save_config if hasattr(module, "save_config") else module.config.save_pretrained)(out / name)
    patch = fused_attention() if attention == "fused" else contextlib.nullcontext()
    try:
        with patch:
            export_models(chosen, output_dir=out, output_names=[f"{name}/model.onnx" for name in chosen],
                          opset=opset, device=device, dtype=precision if precision == "fp16" else None)
    except Exception as err:  # the exporter's errors are long; keep the first line
        raise ModelLoadError(f"ONNX export of {', '.join(chosen)} failed: {str(err).splitlines()[0]}") from err


def write_pipeline_files(pipe, out: Path) -> None:
    """What a pipeline folder holds besides the graphs: tokenizer, scheduler, model_index.json."""
    pipe.tokenizer.save_pretrained(out / "tokenizer")
    pipe.scheduler.save_pretrained(out / "scheduler")
    index = {"_class_name": "ORTStableDiffusionPipeline", "_diffusers_version": _version("diffusers"),
             "requires_safety_checker": False}
    for name, obj in (("tokenizer", pipe.tokenizer), ("scheduler", pipe.scheduler)):
        index[name] = [obj.__class__.__module__.split(".")[0], obj.__class__.__name__]
    for name in COMPONENTS:
        index[name] = ["optimum", "ORTModel"]
    (out / "model_index.json").write_text(json.dumps(index, indent=2))


def export_onnx(src: ModelSource, out: Path, *, precision: str = "fp32", opset: int | None = None,
                device: str = "cpu", attention: str = "plain") -> str:
    """Write a complete ORTStableDiffusionPipeline folder for `src` to `out` (no links);
    `attention="fused"` asks for ONNX Runtime's MultiHeadAttention (see `fused_attention`).
    Returns the attention exported."""
    pipe, _ = load_pipeline(src, device="cpu", dtype="fp32")  # fuse in fp32, export casts if asked
    out.mkdir(parents=True, exist_ok=True)
    write_pipeline_files(pipe, out)
    export_components(pipe, out, precision=precision, opset=opset, device=device, attention=attention)
    return attention


class _LazyPipeline:
    """The fused fp32 pipeline, loaded the first time a component or pipeline file needs it."""

    def __init__(self, src: ModelSource, loaded=None):
        self.src, self._pipe = src, loaded

    def get(self):
        if self._pipe is None:
            self._pipe, _ = load_pipeline(self.src, device="cpu", dtype="fp32")
        return self._pipe


def _module(pipe, component: str):
    return getattr(pipe, "vae" if component == "vae_decoder" else component)


def missing_components(src: ModelSource, cache: ArtefactCache, hasher: FileHasher, pipe, *, precision: str = "fp32",
                       opset: int | None = None, attention: str = "plain") -> dict[str, int]:
    """The components `cached_onnx_export` would have to export, with their parameter counts
    (read from `pipe`, the loaded model)."""
    hashes = component_hashes(src, hasher)
    return {c: count_parameters(_module(pipe, c)) for c in COMPONENTS
            if not cache.valid(cache.folder("onnx-part", part_key_inputs(c, hashes[c], precision, opset, attention)))[0]}


def cached_onnx_export(src: ModelSource, cache: ArtefactCache, hasher: FileHasher, *, precision: str = "fp32",
                       opset: int | None = None, device: str = "cpu", attention: str = "plain", log=print,
                       loaded=None) -> Path:
    """The pipeline folder for `src` from the cache, exporting only the components whose weights
    were never exported (after BFT: the UNet alone). `loaded` may lend `src`'s pipeline already
    loaded in fp32 on the CPU, saving a second copy in memory."""
    hashes = component_hashes(src, hasher)
    pipe = _LazyPipeline(src, loaded)
    parts = {}
    for component in COMPONENTS:
        inputs = part_key_inputs(component, hashes[component], precision, opset, attention)

        def build(folder: Path, component: str = component) -> dict:
            started = time.perf_counter()
            module = _module(pipe.get(), component)
            log(f"exporting {component} ({count_parameters(module) / 1e6:,.1f} M parameters) to ONNX")
            export_components(pipe.get(), folder, (component,), precision=precision, opset=opset, device=device,
                              attention=attention)
            return {"source": src.model_dump(), "attention_exported": attention,
                    "parameters": count_parameters(module), "build_seconds": round(time.perf_counter() - started, 2)}

        parts[component] = cache.get_or_build("onnx-part", inputs, build, label=f"ONNX {component}", log=log)

    def assemble(folder: Path) -> dict:
        write_pipeline_files(pipe.get(), folder)
        for component, part in parts.items():  # relative links: the cache root may move
            os.symlink(os.path.relpath(part / component, cache.root / "onnx" / "x"), folder / component)
        return {"source": src.model_dump(), "attention_exported": attention}

    return cache.get_or_build("onnx", pipeline_key_inputs({c: p.name for c, p in parts.items()}, hashes["source"]), assemble,
                              label="ONNX pipeline", log=log)
