"""ONNX Runtime backend over an Optimum-exported Stable Diffusion folder.

Sessions are created once per folder and provider list and reused across batches and models of
the same artefact. On CUDA providers, tensors stay on the GPU through I/O binding; on the CPU
they cross as zero-copy numpy views.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

_TORCH_TO_NP = {"torch.float32": np.float32, "torch.float16": np.float16, "torch.int64": np.int64}


def session_options(intra_threads: int | None = None):
    """Full graph optimisation; intra-op threads as given (None: ONNX Runtime's own choice)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_threads:
        opts.intra_op_num_threads = intra_threads
    return opts


def provider_device(providers: list[str]) -> str:
    return "cuda" if providers and providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider") else "cpu"


class OrtSession:
    """One ONNX graph: run with torch tensors in, a torch tensor out."""

    def __init__(self, path: Path, providers: list[str], threads: int | None = None):
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=providers)
        except Exception as err:
            raise ModelLoadError(f"ONNX Runtime cannot load '{path}': {str(err).splitlines()[0]}") from err
        self.device = provider_device(self.session.get_providers())
        self.inputs = {i.name: i.type for i in self.session.get_inputs()}
        self.output = self.session.get_outputs()[0].name

    def run(self, feeds: dict, out_shape: tuple[int, ...], out_dtype):
        import torch

        if self.device == "cuda":
            return self._run_bound(feeds, out_shape, out_dtype)
        arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v) for k, v in feeds.items()}
        return torch.from_numpy(self.session.run([self.output], arrays)[0])

    def _run_bound(self, feeds: dict, out_shape, out_dtype):
        """I/O binding: inputs and the output live in CUDA memory owned by torch."""
        import torch

        binding = self.session.io_binding()
        keep = []
        for name, value in feeds.items():
            t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
            t = t.contiguous().to("cuda")
            keep.append(t)
            binding.bind_input(name, "cuda", 0, _TORCH_TO_NP[str(t.dtype)], tuple(t.shape), t.data_ptr())
        out = torch.empty(out_shape, dtype=out_dtype, device="cuda")
        binding.bind_output(self.output, "cuda", 0, _TORCH_TO_NP[str(out.dtype)], tuple(out.shape), out.data_ptr())
        self.session.run_with_iobinding(binding)
        return out


class PipelineInfo:
    """What an exported pipeline folder says besides its graphs: tokenizer, scheduler, and the
    shapes the sampler needs (shared by the ONNX Runtime and TensorRT components)."""

    def __init__(self, folder: Path):
        import diffusers
        from transformers import CLIPTokenizer

        self.folder = Path(folder)
        index = json.loads((self.folder / "model_index.json").read_text())
        self.tokenizer = CLIPTokenizer.from_pretrained(str(self.folder / "tokenizer"), local_files_only=True)
        self.scheduler = getattr(diffusers, index["scheduler"][1]).from_pretrained(str(self.folder / "scheduler"))
        vae_cfg = json.loads((self.folder / "vae_decoder" / "config.json").read_text())
        self.unet_config = json.loads((self.folder / "unet" / "config.json").read_text())
        self.vae_scale_factor = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        self.scaling_factor = vae_cfg.get("scaling_factor", 0.18215)
        self.latent_channels = self.unet_config["in_channels"]


class OrtComponents:
    """The sampler's component interface over an exported folder."""

    name = "ort"

    def __init__(self, folder: Path, providers: list[str], threads: int | None = None):
        import torch

        info = PipelineInfo(folder)
        self.folder, self.tokenizer, self.scheduler = info.folder, info.tokenizer, info.scheduler
        self.vae_scale_factor, self.scaling_factor = info.vae_scale_factor, info.scaling_factor
        self.latent_channels = info.latent_channels
        folder = info.folder
        self.text_encoder = OrtSession(folder / "text_encoder" / "model.onnx", providers, threads)
        self.unet_session = OrtSession(folder / "unet" / "model.onnx", providers, threads)
        self.vae_decoder = OrtSession(folder / "vae_decoder" / "model.onnx", providers, threads)
        self.providers = self.unet_session.session.get_providers()
        self.device = torch.device(self.unet_session.device)
        in_type = self.unet_session.inputs["sample"]
        self.dtype = torch.float16 if "float16" in in_type else torch.float32
        self._t_dtype = np.float16 if "float16" in self.unet_session.inputs["timestep"] else np.float32

    def _embed(self, texts: list[str]):
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="np").input_ids.astype(np.int64)
        hidden = self.text_encoder.session.get_outputs()[0].shape[-1]
        out = self.text_encoder.run({"input_ids": ids}, (len(texts), ids.shape[1], hidden), self.dtype)
        return out.to(self.device, self.dtype)

    def encode(self, prompts: list[str], negative: list[str]):
        return self._embed(negative), self._embed(prompts)

    def unet(self, sample, t, embeddings):
        timestep = np.array(float(t), dtype=self._t_dtype)
        feeds = {"sample": sample.to(self.dtype), "timestep": timestep, "encoder_hidden_states": embeddings.to(self.dtype)}
        return self.unet_session.run(feeds, tuple(sample.shape), self.dtype).to(self.device)

    def decode(self, latents):
        n, _, h, w = latents.shape
        shape = (n, 3, h * self.vae_scale_factor, w * self.vae_scale_factor)
        return self.vae_decoder.run({"latent_sample": (latents / self.scaling_factor).to(self.dtype)}, shape,
                                    self.dtype).to(self.device)
