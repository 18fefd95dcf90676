"""Steps/s and peak memory of each BFT profile, one fresh process per profile so that peak
memory belongs to that profile alone. The step is the trainer's own `optimizer_step`."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

PROFILES = ("lite", "moderate", "standard")


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_profile(preset: str, profile: str, steps: int, batch: int, latent: int | None, device: str) -> dict:
    """Runs in the worker process."""
    import torch

    from ..config import BftConfig
    from ..finetune.profiles import prepare_trainable
    from ..finetune.trainer import _autocast_dtype, make_optimizer, optimizer_step
    from .presets import TEXT_TOKENS, build_unet

    unet, default_latent, text_dim = build_unet(preset)
    latent = latent or default_latent
    unet.to(device)
    cfg = BftConfig(profile=profile, dataset=".", batch_size=batch)
    torch.manual_seed(1)
    params = prepare_trainable(unet, profile, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
    unet.train()
    optimizer = make_optimizer(params, cfg)
    amp_dtype = _autocast_dtype(cfg, device)  # as BFT runs: fp16 autocast with a grad scaler on CUDA
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    gen = torch.Generator().manual_seed(0)
    batch_data = [(torch.randn(batch, 4, latent, latent, generator=gen).to(device),
                   torch.randint(0, 1000, (batch,), generator=gen).to(device),
                   torch.randn(batch, TEXT_TOKENS, text_dim, generator=gen).to(device),
                   torch.randn(batch, 4, latent, latent, generator=gen).to(device))]
    rss_loaded = _rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    optimizer_step(unet, params, optimizer, scaler, batch_data, cfg.max_grad_norm, amp_dtype)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        optimizer_step(unet, params, optimizer, scaler, batch_data, cfg.max_grad_norm, amp_dtype)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    out = {
        "preset": preset, "profile": profile, "device": device, "batch": batch, "latent": latent, "steps": steps,
        "mixed_precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "seconds_per_step": elapsed / steps, "steps_per_s": steps / elapsed,
        "trainable_params": int(sum(p.numel() for p in params)),
        "unet_params": int(sum(p.numel() for p in unet.parameters())),
        "rss_after_load_mib": round(rss_loaded, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if device == "cuda":
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def run_finetune_bench(preset: str, profiles: list[str], steps: int, batch: int, latent: int | None,
                       device: str, timeout: int = 3600) -> list[dict]:
    """One subprocess per profile; returns their measurements in order."""
    rows = []
    for profile in profiles:
        cmd = [sys.executable, "-m", "spqr_fast.bench.finetune_bench", preset, profile, str(steps), str(batch),
               str(latent or 0), device]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
            rows.append({"preset": preset, "profile": profile, "error": tail[0]})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


if __name__ == "__main__":
    from ..runtime import prepare_runtime

    prepare_runtime()
    p, prof, n, b, lat, dev = sys.argv[1:7]
    print(json.dumps(measure_profile(p, prof, int(n), int(b), int(lat) or None, dev)))
