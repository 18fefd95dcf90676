"""TensorRT engines built from the exported ONNX graphs with the `tensorrt` Python API.

One small class owns an engine's life (build, load, bind, infer) and knows nothing of prompts or
schedulers, as in TensorRT's own diffusion demo. Imported lazily: without `tensorrt` or a GPU,
nothing here runs and `auto` skips it with the reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ModelLoadError

RECIPE_DIRS = [Path(os.environ.get("SPQR_RECIPES", "")), Path(__file__).resolve().parents[2] / "engines" / "recipes"]


def load_recipes() -> list[dict]:
    out = []
    for d in RECIPE_DIRS:
        if str(d) and d.is_dir():
            out += [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))]
    return out


def recipe_for(unet_config: dict, text_dim: int, height: int, width: int, vae_scale: int,
               recipes: list[dict] | None = None) -> dict:
    """The family recipe whose `match` fits the UNet config, else a static profile for this run."""
    for r in recipes if recipes is not None else load_recipes():
        if all(unet_config.get(k.split(".", 1)[1]) == v for k, v in r["match"].items()):
            return r
    h, w = height // vae_scale, width // vae_scale
    c = unet_config.get("in_channels", 4)

    def fixed(shape):
        return {"min": shape, "opt": shape, "max": shape}

    return {"family": "generic", "precision": "fp16", "workspace_gib": 4, "profiles": {
        "text_encoder": {"input_ids": fixed([1, 77])},
        "unet": {"sample": fixed([2, c, h, w]), "timestep": fixed([]), "encoder_hidden_states": fixed([2, 77, text_dim])},
        "vae_decoder": {"latent_sample": fixed([1, c, h, w])},
    }}


def engine_key_inputs(onnx_key: str, component: str, recipe: dict, precision: str) -> dict:
    import tensorrt as trt
    import torch

    return {"onnx": onnx_key, "component": component, "precision": precision,
            "profile": recipe["profiles"][component], "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(0), "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}


def build_engine(onnx_path: Path, engine_path: Path, profile: dict, *, fp16: bool, workspace_gib: float) -> None:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"TensorRT cannot parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        opt_profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(f"TensorRT engine build failed for '{onnx_path}' (see the TensorRT log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))


class TrtEngine:
    """A deserialised engine with one execution context; inputs and outputs are torch CUDA tensors."""

    def __init__(self, path: Path):
        import tensorrt as trt

        self._trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"TensorRT cannot load engine '{path}' (built for another GPU or version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def infer(self, feeds: dict, dtype):
        import torch

        keep = []
        for name, tensor in feeds.items():
            t = tensor.contiguous().cuda()
            keep.append(t)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        out_name = self.outputs[0]
        out = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=dtype, device="cuda")
        self.context.set_tensor_address(out_name, out.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return out


class TrtComponents:
    """The sampler's component interface over three engines; tokenizer and scheduler come from
    the exported folder (the ORT components provide them)."""

    name = "tensorrt"

    def __init__(self, onnx_components, engines: dict[str, Path]):
        import torch

        self.base = onnx_components
        self.tokenizer = onnx_components.tokenizer
        self.scheduler = onnx_components.scheduler
        self.vae_scale_factor = onnx_components.vae_scale_factor
        self.scaling_factor = onnx_components.scaling_factor
        self.latent_channels = onnx_components.latent_channels
        self.device = torch.device("cuda")
        self.dtype = torch.float16
        self.engines = {name: TrtEngine(path) for name, path in engines.items()}

    def _embed(self, texts):
        import torch

        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        # Optimum exports CLIP's text encoder with int64 ids; TensorRT may narrow them to int32.
        out = self.engines["text_encoder"].infer({"input_ids": ids.to(torch.int64 if self._ids64 else torch.int32)},
                                                 self.dtype)
        return out

    @property
    def _ids64(self) -> bool:
        eng = self.engines["text_encoder"].engine
        return str(eng.get_tensor_dtype("input_ids")).endswith("INT64")

    def encode(self, prompts, negative):
        return self._embed(negative), self._embed(prompts)

    def unet(self, sample, t, embeddings):
        import torch

        feeds = {"sample": sample.half(), "timestep": torch.tensor(float(t), dtype=torch.float16),
                 "encoder_hidden_states": embeddings.half()}
        return self.engines["unet"].infer(feeds, self.dtype)

    def decode(self, latents):
        return self.engines["vae_decoder"].infer({"latent_sample": (latents / self.scaling_factor).half()}, self.dtype)
