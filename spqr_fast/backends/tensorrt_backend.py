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


# TensorRT's DataType names → torch dtypes. An engine says what each of its tensors holds
# (fp32 or fp16 builds, int32 or int64 token ids); nothing here assumes it.
TRT_TO_TORCH = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64",
                "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


ENGINE_COMPONENTS = ("text_encoder", "unet", "vae_decoder")


def pipeline_recipe(info, height: int, width: int) -> dict:
    """The recipe (shape profiles per component) for an exported folder's PipelineInfo."""
    unet = info.unet_config
    return recipe_for(unet, unet["cross_attention_dim"], height, width, info.vae_scale_factor)


def build_component_engine(folder: Path, component: str, recipe: dict, precision: str, engine_path: Path) -> None:
    """One component's engine from the exported folder's graph, with the recipe's profile."""
    build_engine(folder / component / "model.onnx", engine_path, recipe["profiles"][component],
                 fp16=precision == "fp16", workspace_gib=recipe.get("workspace_gib", 4))


def torch_dtype(trt_dtype):
    """The torch dtype of a TensorRT `DataType` (read by name, so test doubles can name one)."""
    import torch

    name = str(trt_dtype).rsplit(".", 1)[-1]
    if name not in TRT_TO_TORCH:
        raise ModelLoadError(f"TensorRT tensor type {name} has no torch equivalent here")
    return getattr(torch, TRT_TO_TORCH[name])


class TrtEngine:
    """One engine and its execution context. Each input is cast to the type the engine declares
    for it and each output is allocated with the engine's own type and the shape the context
    infers from the inputs, as TensorRT's diffusion demo binds them."""

    def __init__(self, engine, device: str = "cuda"):
        self.engine = engine
        self.device = device
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if _is_input(engine.get_tensor_mode(n))]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: torch_dtype(engine.get_tensor_dtype(n)) for n in names}

    @classmethod
    def load(cls, path: Path) -> "TrtEngine":
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise ModelLoadError(f"TensorRT cannot load engine '{path}' (built for another GPU or version?)")
        return cls(engine)

    def infer(self, feeds: dict) -> dict:
        """Outputs by name for inputs by name (any dtype: cast to the engine's)."""
        import torch

        missing = sorted(set(self.inputs) - set(feeds))
        if missing:
            raise ValueError(f"TensorRT engine needs inputs {missing}")
        keep = []  # the bound tensors must outlive the asynchronous run
        for name in self.inputs:
            t = feeds[name].to(device=self.device, dtype=self.dtypes[name]).contiguous()
            keep.append(t)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        out = {}
        for name in self.outputs:
            out[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name],
                                    device=self.device)
            self.context.set_tensor_address(name, out[name].data_ptr())
        stream = torch.cuda.current_stream().cuda_stream if self.device == "cuda" else 0
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execution failed")
        return out

    def first_output(self, feeds: dict):
        return self.infer(feeds)[self.outputs[0]]


def _is_input(mode) -> bool:
    return str(mode).rsplit(".", 1)[-1] == "INPUT"


class TrtComponents:
    """The sampler's component interface over three engines; tokenizer, scheduler and shapes come
    from the exported folder (a PipelineInfo). Works in the UNet engine's own
    precision: latents and embeddings are handed over in whatever type each engine declares."""

    name = "tensorrt"

    def __init__(self, info, engines: dict[str, Path], loader=TrtEngine.load, device: str = "cuda"):
        import torch

        self.tokenizer, self.scheduler = info.tokenizer, info.scheduler
        self.vae_scale_factor, self.scaling_factor = info.vae_scale_factor, info.scaling_factor
        self.latent_channels = info.latent_channels
        self.device = torch.device(device)
        self.engines = {name: loader(path) for name, path in engines.items()}
        unet = self.engines["unet"]
        self.dtype = unet.dtypes[unet.outputs[0]]  # the sampler keeps latents in the UNet's type

    def _embed(self, texts):
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.engines["text_encoder"].first_output({"input_ids": ids})

    def encode(self, prompts, negative):
        return self._embed(negative), self._embed(prompts)

    def unet(self, sample, t, embeddings):
        import torch

        feeds = {"sample": sample, "timestep": torch.tensor(float(t)), "encoder_hidden_states": embeddings}
        return self.engines["unet"].first_output(feeds)

    def decode(self, latents):
        return self.engines["vae_decoder"].first_output({"latent_sample": latents / self.scaling_factor})
