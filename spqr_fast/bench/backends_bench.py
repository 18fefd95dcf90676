"""UNet step latency and end-to-end images/s per backend, side by side in one run on the same
inputs, with the ratio to eager torch. The models are built from configs with random weights and
exported through the same cached Optimum path `eval` uses."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from rich.console import Console

from ..config import ModelSource
from ..export.cache import ArtefactCache
from ..export.onnx_export import cached_onnx_export
from ..models import load_pipeline
from ..keys import FileHasher


def build_sd15_pipeline(work: Path):
    """Stable Diffusion 1.5's architecture (UNet, VAE, 12-layer CLIP text encoder) with random weights."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..demo.tiny import tiny_tokenizer
    from .presets import SD15_UNET

    tokenizer = tiny_tokenizer(work / "tokenizer-src")
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=UNet2DConditionModel(**SD15_UNET),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def ort_op_profile(onnx_path: Path, feeds: dict, top: int = 8, threads: int | None = None) -> list[dict]:
    """Where ONNX Runtime spends one UNet step: time per operator type (from its profiler)."""
    import json

    import onnxruntime as ort

    from ..backends.ort_backend import session_options

    opts = session_options(threads)
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="spqr-ort-profile-") as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "unet")
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + ev.get("dur", 0) / 1e6
    total = sum(per_op.values()) or 1.0
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])[:top]
    return [{"op": op, "seconds": round(sec, 3), "share": round(sec / total, 3)} for op, sec in ranked]


def run_backends_bench(preset: str, backends: list[str], *, reps: int, e2e_images: int, e2e_steps: int,
                       cache_root: str | None, console: Console, threads: int | None = None) -> dict:
    """`threads`: intra-op threads for ONNX Runtime, as torch has them (one count for both)."""
    import torch

    from ..backends.ort_backend import OrtComponents
    from ..backends.selection import ORT_PROVIDERS, detect_offer
    from ..backends.torch_backend import TorchComponents
    from ..demo.tiny import build_tiny_sd_pipeline
    from ..sampling.sampler import DiffusionSampler

    size = 512 if preset == "sd15" else 64
    with tempfile.TemporaryDirectory(prefix="spqr-bench-") as tmp:
        work = Path(tmp)
        console.print(f"building the {preset} pipeline from its config (random weights)")
        pipe = build_sd15_pipeline(work) if preset == "sd15" else build_tiny_sd_pipeline(0, work, size)
        pipe.save_pretrained(work / "model")
        del pipe
        src = ModelSource(path=str(work / "model"))
        torch_pipe, _ = load_pipeline(src, device="cpu", dtype="fp32")
        components = {"torch": TorchComponents(torch_pipe)}
        offer = detect_offer()
        export_seconds = {}
        for b in backends:
            if b in ("ort", "ort-plain"):
                attention = "fused" if b == "ort" else "plain"
                t0 = time.perf_counter()
                folder = cached_onnx_export(src, ArtefactCache(cache_root), FileHasher(None), attention=attention,
                                            log=console.print)
                export_seconds[b] = time.perf_counter() - t0
                prov = "ort-cuda" if "CUDAExecutionProvider" in offer.providers and offer.gpu else "ort-cpu"
                components[b] = OrtComponents(folder, ORT_PROVIDERS[prov], threads)
            elif b == "tensorrt":
                from ..backends.resolve import BackendResolver
                from ..config import BackendConfig

                resolver = BackendResolver(BackendConfig(kind="tensorrt", cache_root=cache_root), FileHasher(None),
                                           log=console.print, offer=offer)
                comp, report = resolver.resolve(src, torch_pipe, height=size, width=size)
                if report.chosen != "tensorrt":
                    console.print(f"tensorrt unavailable here: {'; '.join(s.reason for s in report.skipped)}")
                    continue
                components["tensorrt"] = comp
        ref = components["torch"]
        latent = size // ref.vae_scale_factor
        gen = torch.Generator().manual_seed(0)
        sample = torch.randn(2, ref.latent_channels, latent, latent, generator=gen)
        uncond, cond = ref.encode(["a benchmark prompt"], [""])
        emb = torch.cat([uncond, cond])
        rows = []
        with torch.inference_mode():
            for name, comp in components.items():
                x, e = sample.to(comp.device, comp.dtype), emb.to(comp.device, comp.dtype)
                step = _time(lambda: comp.unet(x, 500, e), reps)
                row = {"backend": name, "unet_step_s": step, "unet_batch": 2, "latent": latent}
                if e2e_images:
                    sampler = DiffusionSampler(comp, steps=e2e_steps, height=size, width=size)
                    t0 = time.perf_counter()
                    sampler.generate(["a benchmark prompt"] * e2e_images, list(range(e2e_images)), [7.5] * e2e_images)
                    row["e2e_images_per_s"] = e2e_images / (time.perf_counter() - t0)
                    row["e2e_steps"] = e2e_steps
                rows.append(row)
        profiles = {}
        for name in ("ort", "ort-plain"):
            if name in components and components[name].device.type == "cpu":
                feeds = {"sample": sample.detach().numpy(), "timestep": np.array(500.0, dtype=np.float32),
                         "encoder_hidden_states": emb.detach().numpy()}
                profiles[name] = ort_op_profile(components[name].folder / "unet" / "model.onnx", feeds, threads=threads)
        for r in rows:
            r["unet_speedup_vs_torch"] = rows[0]["unet_step_s"] / r["unet_step_s"]
            if "e2e_images_per_s" in r:
                r["e2e_speedup_vs_torch"] = r["e2e_images_per_s"] / rows[0]["e2e_images_per_s"]
        return {"preset": preset, "image_size": size, "reps": reps, "export_seconds": export_seconds, "rows": rows,
                "ort_cpu_unet_profile": profiles}
