"""`bench --suite gpu`: the GPU proof. On a CUDA machine, one command builds an SD 1.5-architecture
pipeline with random weights (no download) and measures side by side in one run, at the paper's
protocol (512², 50 steps, guidance 7.5, fp16): seconds per image at batch 1 and images/s at
batch 8 per generation backend, each backend's parity against eager torch, what batching costs
in exactness, benign fine-tuning speed and memory, the judges' throughput, and a projection of
one full SPQR evaluation at the paper's scale. The `tiny` preset runs the same code anywhere
(tests use it on the CPU); the CLI refuses without CUDA.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from ..errors import SpqrError

PROMPTS = ["a photo of a red bus on a city street", "a cat sleeping on a sofa", "a bowl of fruit on a table",
           "a mountain lake at sunrise", "two dogs playing in the snow", "an astronaut riding a horse",
           "a lighthouse on a cliff at night", "a plate of pasta with basil"]
TARGETS = {"best_s_per_image_batch1": 0.45, "speedup_vs_eager_fp16": 2.0, "paper_scale_minutes": 15.0}


@dataclass(frozen=True)
class PaperScale:
    """One method's SPQR evaluation as the paper runs it (spec: protocol defaults)."""

    harmful_prompts: int = 500
    utility_prompts: int = 424
    bft_images: int = 1000  # a `lite` BFT: 1 epoch of a COCO-style set this size, batch 16
    bft_epochs: int = 1
    bft_batch: int = 16
    questions_per_caption: float = 5.0  # TIFA-style questions per utility caption
    with_vqa: bool = True


@dataclass(frozen=True)
class GpuBenchPlan:
    preset: str = "sd15"  # sd15 | tiny
    device: str = "cuda"
    dtype: str = "fp16"
    steps: int = 50
    guidance: float = 7.5
    batch: int = 8
    reps: int = 2
    parity_steps: int = 4
    backends: tuple[str, ...] = ("torch", "torch-compile", "ort-cuda", "tensorrt")
    bft: bool = True
    bft_steps: int = 10
    judges: bool = True
    scale: PaperScale = field(default_factory=PaperScale)

    @property
    def size(self) -> int:
        return 512 if self.preset == "sd15" else 64


def require_cuda() -> None:
    """One line when there is no GPU to measure."""
    import torch

    if not torch.cuda.is_available():
        raise SpqrError("bench --suite gpu needs a CUDA GPU (torch sees none) — run it on a GPU machine; "
                        "`bench --suite backends` measures this one")


def gpu_machine(device: str) -> dict:
    """GPU name, memory, compute capability, driver and CUDA, beside the library versions."""
    import torch

    from ..provenance import environment

    out = {**environment(), "device": device, "torch_cuda": torch.version.cuda}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   compute_capability=f"{p.major}.{p.minor}", driver=_driver_version())
    return out


def _driver_version() -> str | None:
    import subprocess

    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _generation_components(plan: GpuBenchPlan, src, pipe, cache_root, console) -> tuple[dict, dict]:
    """(components by backend, skip reasons): every backend asked for that works here."""
    import torch

    from ..backends.torch_backend import TorchComponents

    components, skipped = {"torch": TorchComponents(pipe)}, {}
    for name in plan.backends[1:]:
        try:
            if name == "torch-compile":
                from ..models import load_pipeline

                if plan.device != "cuda":
                    raise RuntimeError("compiled graphs are measured on CUDA only")
                compiled, _ = load_pipeline(src, device=plan.device, dtype=plan.dtype)
                # CUDA graphs ("reduce-overhead") remove the per-step launch cost of the small kernels.
                compiled.unet = torch.compile(compiled.unet, mode="reduce-overhead", fullgraph=False)
                components[name] = TorchComponents(compiled)
            elif name == "ort-cuda":
                import onnxruntime as ort

                from ..backends.ort_backend import OrtComponents
                from ..backends.selection import ORT_PROVIDERS
                from ..export.cache import ArtefactCache
                from ..export.onnx_export import cached_onnx_export
                from ..keys import FileHasher

                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise RuntimeError("ONNX Runtime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
                folder = cached_onnx_export(src, ArtefactCache(cache_root), FileHasher(None), precision=plan.dtype,
                                            device=plan.device, attention="fused", log=console.print)
                components[name] = OrtComponents(folder, ORT_PROVIDERS["ort-cuda"])
            elif name == "tensorrt":
                from ..backends.resolve import BackendResolver
                from ..backends.selection import detect_offer
                from ..config import BackendConfig
                from ..keys import FileHasher

                resolver = BackendResolver(BackendConfig(kind="tensorrt", cache_root=cache_root), FileHasher(None),
                                           log=console.print, offer=detect_offer())
                comp, report = resolver.resolve(src, pipe, height=plan.size, width=plan.size)
                if report.chosen != "tensorrt":
                    raise RuntimeError("; ".join(s.reason for s in report.skipped) or "unavailable")
                components[name] = comp
            else:
                raise RuntimeError(f"unknown backend '{name}'")
        except Exception as err:  # noqa: BLE001 - a backend that cannot run here is reported, not fatal
            skipped[name] = str(err).splitlines()[0] if str(err) else type(err).__name__
            console.print(f"{name}: skipped ({skipped[name]})")
    return components, skipped


def _sampler(components, plan: GpuBenchPlan, steps: int | None = None):
    from ..sampling.sampler import DiffusionSampler

    return DiffusionSampler(components, steps=steps or plan.steps, height=plan.size, width=plan.size,
                            batch_invariant=False)


def _generate(components, plan: GpuBenchPlan, n: int, steps: int | None = None) -> np.ndarray:
    prompts = (PROMPTS * (n // len(PROMPTS) + 1))[:n]
    return _sampler(components, plan, steps).generate(prompts, list(range(n)), [plan.guidance] * n)


def measure_generation(components: dict, plan: GpuBenchPlan, console) -> list[dict]:
    """Seconds per image at batch 1 (mean of `reps`) and images/s at batch `plan.batch`, after a
    warm-up at each batch size (compilation, engine and session start-up excluded)."""
    rows = []
    for name, comp in components.items():
        console.print(f"generation: {name}")
        for n in (1, plan.batch):
            _generate(comp, plan, n, steps=2)  # warm-up at this batch shape
        b1 = np.mean([_timed(lambda: _generate(comp, plan, 1), plan.device) for _ in range(plan.reps)])
        bn = _timed(lambda: _generate(comp, plan, plan.batch), plan.device)
        rows.append({"backend": name, "s_per_image_batch1": float(b1), "images_per_s_batch": plan.batch / bn,
                     "batch": plan.batch})
    for r in rows:
        r["speedup_batch1_vs_torch"] = rows[0]["s_per_image_batch1"] / r["s_per_image_batch1"]
        r["speedup_batch_vs_torch"] = r["images_per_s_batch"] / rows[0]["images_per_s_batch"]
    return rows


def measure_parity(components: dict, plan: GpuBenchPlan) -> dict:
    """Per backend against eager torch: the components' parity gate (text, UNet along a
    trajectory, VAE) and the largest pixel difference of one image after `parity_steps` steps."""
    from ..backends.parity import check_parity

    ref = components["torch"]
    ref_img = _generate(ref, plan, 1, steps=plan.parity_steps)
    out = {}
    for name, comp in components.items():
        if name == "torch":
            continue
        gate = check_parity(ref, comp, height=plan.size, width=plan.size, steps=plan.parity_steps, tolerance=5e-2)
        img = _generate(comp, plan, 1, steps=plan.parity_steps)
        out[name] = {**gate.as_dict(), "max_pixel_diff": int(np.abs(img.astype(int) - ref_img).max())}
    return out


def measure_batch_effect(components, plan: GpuBenchPlan) -> dict:
    """The same (prompt, seed) generated alone and inside a batch: what batching costs in exactness."""
    n = plan.batch
    batched = _generate(components, plan, n, steps=plan.parity_steps)
    alone = np.concatenate([_sampler(components, plan, plan.parity_steps).generate(
        [(PROMPTS * (n // len(PROMPTS) + 1))[i]], [i], [plan.guidance]) for i in range(n)])
    diff = np.abs(batched.astype(int) - alone)
    return {"batch": n, "steps": plan.parity_steps, "max_pixel_diff": int(diff.max()),
            "share_of_pixels_differing": float((diff > 0).mean())}


def measure_bft(plan: GpuBenchPlan) -> list[dict]:
    from .finetune_bench import run_finetune_bench

    latent = plan.size // 8
    lite = run_finetune_bench(plan.preset, ["lite"], plan.bft_steps, plan.scale.bft_batch, latent, plan.device)
    standard = run_finetune_bench(plan.preset, ["standard"], 2, plan.scale.bft_batch, latent, plan.device)
    return lite + standard


def measure_judges(plan: GpuBenchPlan, cache_root, console) -> dict:
    """Images/s of NudeNet (ONNX Runtime, CUDA EP where offered), the VQA judge's two graphs
    (BLIP-base on sd15), and a CLIP ViT-B/32-size image tower (torch, also a stand-in for the FID
    feature network, of similar cost)."""
    import onnxruntime as ort
    import torch

    from ..config import DEFAULT_EXPOSED_CLASSES
    from ..judges.nudenet import NudeNetJudge
    from .vqa_bench import run_vqa_bench

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (plan.size, plan.size, 3), dtype=np.uint8) for _ in range(32)]
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    nude = NudeNetJudge(None, list(DEFAULT_EXPOSED_CLASSES), 0.6, providers, batch_size=16)
    nude.judge(images[:4])
    nudenet_s = _timed(lambda: [nude.judge(images[i:i + 16]) for i in range(0, 32, 16)], "cpu")
    vqa = run_vqa_bench("blip-base" if plan.preset == "sd15" else "tiny", images=8, questions=16, reps=3,
                        cache_root=cache_root, console=console, device=plan.device)
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(image_size=224, patch_size=32) if plan.preset == "sd15" else \
        CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2)
    dtype = torch.float16 if plan.dtype == "fp16" and plan.device == "cuda" else torch.float32
    tower = CLIPVisionModelWithProjection(cfg).eval().to(plan.device, dtype)
    pixels = torch.randn(32, 3, cfg.image_size, cfg.image_size, device=plan.device, dtype=dtype)
    with torch.inference_mode():
        tower(pixel_values=pixels)
        clip_s = _timed(lambda: tower(pixel_values=pixels), plan.device)
    best_vqa = max((r for r in vqa["rows"] if "error" not in r), key=lambda r: r["vision_images_per_s"])
    return {"nudenet": {"images_per_s": 32 / nudenet_s, "providers": nude.providers},
            "vqa": {**vqa, "best": best_vqa["backend"]},
            "clip_image_tower": {"images_per_s": 32 / clip_s, "batch": 32, "dtype": str(dtype).replace("torch.", ""),
                                 "image_size": cfg.image_size}}


def project_paper_scale(scale: PaperScale, *, s_per_image: float, bft_s_per_step: float,
                        judge_rates: dict[str, float]) -> dict:
    """Minutes for one method's full SPQR evaluation from measured rates. Images: harmful and
    utility before BFT; harmful (and, with a VQA judge, utility) after. Judges: NudeNet on every
    harmful image, CLIP and FID features on utility images before BFT (and the same number of
    reference images), the VQA vision graph on every utility image and its answer graph on each
    of their questions."""
    before = scale.harmful_prompts + scale.utility_prompts
    after = scale.harmful_prompts + (scale.utility_prompts if scale.with_vqa else 0)
    bft_steps = -(-scale.bft_images * scale.bft_epochs // scale.bft_batch)
    vqa_images = 2 * scale.utility_prompts if scale.with_vqa else 0
    seconds = {
        "generation": (before + after) * s_per_image,
        "bft": bft_steps * bft_s_per_step,
        "nudenet": 2 * scale.harmful_prompts / judge_rates["nudenet"],
        "clip": scale.utility_prompts / judge_rates["clip"],
        "fid_features": 2 * scale.utility_prompts / judge_rates["fid_features"],
        "vqa": vqa_images / judge_rates["vqa_vision"]
        + vqa_images * scale.questions_per_caption / judge_rates["vqa_answer"],
    }
    return {"scale": asdict(scale), "images": before + after, "bft_steps": bft_steps,
            "seconds": seconds, "minutes": sum(seconds.values()) / 60}


def run_gpu_bench(plan: GpuBenchPlan, console: Console, cache_root: str | None = None) -> dict:
    """Everything above, side by side in one run; returns one JSON-able dict."""
    from ..config import ModelSource
    from ..demo.tiny import build_tiny_sd_pipeline
    from ..models import load_pipeline
    from .backends_bench import build_sd15_pipeline

    result: dict = {"suite": "gpu", "machine": gpu_machine(plan.device), "settings": asdict(plan),
                    "image_size": plan.size, "targets": TARGETS}
    with tempfile.TemporaryDirectory(prefix="spqr-gpu-bench-") as tmp:
        work = Path(tmp)
        console.print(f"building the {plan.preset} pipeline from its config (random weights)")
        pipe = build_sd15_pipeline(work) if plan.preset == "sd15" else build_tiny_sd_pipeline(0, work, plan.size)
        pipe.save_pretrained(work / "model")
        del pipe
        src = ModelSource(path=str(work / "model"))
        ref_pipe, _ = load_pipeline(src, device=plan.device, dtype=plan.dtype)
        components, skipped = _generation_components(plan, src, ref_pipe, cache_root, console)
        result["skipped"] = skipped
        result["generation"] = measure_generation(components, plan, console)
        result["parity"] = measure_parity(components, plan)
        result["batch_effect"] = measure_batch_effect(components["torch"], plan)
        del components, ref_pipe
    if plan.device == "cuda":
        import torch

        torch.cuda.empty_cache()
    result["bft"] = measure_bft(plan) if plan.bft else []
    result["judges"] = measure_judges(plan, cache_root, console) if plan.judges else {}
    result["projection"] = _projection(result, plan)
    result["verdict"] = _verdict(result)
    return result


def _projection(result: dict, plan: GpuBenchPlan) -> dict | None:
    lite = next((r for r in result["bft"] if r.get("profile") == "lite" and "error" not in r), None)
    j = result["judges"]
    if lite is None or not j:
        return None
    best = min(result["generation"], key=lambda r: 1 / r["images_per_s_batch"])
    vqa = next(r for r in j["vqa"]["rows"] if r["backend"] == j["vqa"]["best"])
    rates = {"nudenet": j["nudenet"]["images_per_s"], "clip": j["clip_image_tower"]["images_per_s"],
             "fid_features": j["clip_image_tower"]["images_per_s"], "vqa_vision": vqa["vision_images_per_s"],
             "vqa_answer": vqa["answer_questions_per_s"]}
    return {**project_paper_scale(plan.scale, s_per_image=1 / best["images_per_s_batch"],
                                  bft_s_per_step=lite["seconds_per_step"], judge_rates=rates),
            "generation_backend": best["backend"], "rates": rates,
            "assumptions": "FID features at the CLIP ViT-B/32 tower's rate; generation at batch "
                           f"{plan.batch} on the fastest backend"}


def _verdict(result: dict) -> dict:
    rows = result["generation"]
    best = min(rows, key=lambda r: r["s_per_image_batch1"])
    proj = result.get("projection")
    return {"best_backend_batch1": best["backend"], "best_s_per_image_batch1": best["s_per_image_batch1"],
            "speedup_vs_eager_fp16": best["speedup_batch1_vs_torch"],
            "paper_scale_minutes": None if proj is None else proj["minutes"],
            "meets": {"best_s_per_image_batch1": best["s_per_image_batch1"] <= TARGETS["best_s_per_image_batch1"],
                      "speedup_vs_eager_fp16": best["speedup_batch1_vs_torch"] >= TARGETS["speedup_vs_eager_fp16"],
                      "paper_scale_minutes": None if proj is None else proj["minutes"] < TARGETS["paper_scale_minutes"]}}


def to_markdown(result: dict) -> str:
    """The tables for docs/benchmarks.md."""
    m = result["machine"]
    s = result["settings"]
    lines = [f"Machine: {m.get('gpu', m['device'])} ({m.get('gpu_memory_gib', '?')} GiB, CC "
             f"{m.get('compute_capability', '?')}), driver {m.get('driver')}, CUDA {m.get('torch_cuda')}, torch "
             f"{m['packages'].get('torch')}, onnxruntime-gpu {m['packages'].get('onnxruntime-gpu')}, tensorrt "
             f"{m['packages'].get('tensorrt')}; {s['preset']} at {result['image_size']}², {s['steps']} steps, "
             f"guidance {s['guidance']}, {s['dtype']}.", "",
             f"| backend | s/image (batch 1) | × eager | images/s (batch {s['batch']}) | × eager | parity (max rel.) "
             "| max pixel diff |", "|---|---|---|---|---|---|---|"]
    for r in result["generation"]:
        p = result["parity"].get(r["backend"], {})
        worst = max((p.get(k, 0) for k in ("text_error", "unet_error", "decode_error")), default=None) if p else None
        lines.append(f"| {r['backend']} | {r['s_per_image_batch1']:.3f} | {r['speedup_batch1_vs_torch']:.2f} | "
                     f"{r['images_per_s_batch']:.2f} | {r['speedup_batch_vs_torch']:.2f} | "
                     f"{'reference' if r['backend'] == 'torch' else f'{worst:.1e}' if worst is not None else '—'} | "
                     f"{p.get('max_pixel_diff', '—')} |")
    for name, why in result.get("skipped", {}).items():
        lines.append(f"| {name} | not measured: {why} | | | | | |")
    be = result["batch_effect"]
    lines += ["", f"Batch effect (same prompt and seed, batch {be['batch']} vs alone, {be['steps']} steps): max pixel "
                  f"difference {be['max_pixel_diff']}, {be['share_of_pixels_differing']:.1%} of pixels differ."]
    for r in result["bft"]:
        if "error" in r:
            lines.append(f"BFT {r['profile']}: failed ({r['error']})")
        else:
            lines.append(f"BFT {r['profile']} (batch {r['batch']}, latent {r['latent']}, {r.get('mixed_precision')}): "
                         f"{r['steps_per_s']:.2f} steps/s, peak GPU memory {r.get('peak_cuda_mib', '—')} MiB")
    if result["judges"]:
        j = result["judges"]
        lines.append(f"Judges: NudeNet {j['nudenet']['images_per_s']:.1f} images/s ({j['nudenet']['providers'][0]}); "
                     f"CLIP image tower {j['clip_image_tower']['images_per_s']:.1f} images/s; VQA "
                     + ", ".join(f"{r['backend']} vision {r['vision_images_per_s']:.1f} images/s, answer "
                                 f"{r['answer_questions_per_s']:.1f} questions/s" for r in j["vqa"]["rows"]
                                 if "error" not in r) + ".")
    if result.get("projection"):
        p = result["projection"]
        parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in p["seconds"].items())
        lines.append(f"Projection, one method at the paper's scale ({p['images']} images, {p['bft_steps']} lite BFT "
                     f"steps): **{p['minutes']:.1f} minutes** ({parts}).")
    v = result["verdict"]
    lines.append(f"Targets: best batch-1 {v['best_s_per_image_batch1']:.3f} s/image ({v['best_backend_batch1']}) vs "
                 f"≤ {TARGETS['best_s_per_image_batch1']}; ×{v['speedup_vs_eager_fp16']:.2f} eager vs ≥ "
                 f"{TARGETS['speedup_vs_eager_fp16']}; projection vs < {TARGETS['paper_scale_minutes']} min — "
                 + ", ".join(f"{k}: {'met' if ok else 'missed' if ok is not None else 'n/a'}"
                             for k, ok in v["meets"].items()) + ".")
    return "\n".join(lines) + "\n"
