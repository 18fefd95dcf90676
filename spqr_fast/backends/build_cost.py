"""Whether building an accelerated backend pays for itself on the images a stage still needs.

`backend: auto` must never be slower end to end than eager torch. An ONNX export of an SD 1.5
UNet takes minutes on a small CPU; a stage that only needs a few images at a few steps loses
that time. So before exporting, `auto` weighs the export against what it would save:

    saved  = images × steps × t_step × (1 − 1 / speedup)
    cost   = export seconds of the components not yet in the cache + the parity check

Under a wall-clock limit (an audit's time budget), `images` is at most what eager torch makes
in that time: past it, the export pays only if the limit minus the export, at the faster rate,
makes more images than the whole limit at the eager rate — the same inequality.

`t_step` is one timed eager UNet call (the classifier-free-guidance pair) on the planned shape;
the export seconds come from earlier exports recorded in the artefact cache on this machine
(seconds per parameter), else from the figure measured on the 2-core reference box
(docs/benchmarks.md); `speedup` is the measured ORT CPU ratio and, for GPU backends where nothing
was measured yet, a deliberately modest guess. Explicit requests (`ort`, `tensorrt`) always build.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

EXPORT_OVERHEAD_S = 1.5  # tracing and saving a graph, whatever its size (world: 0.5–3 s per component)
EXPORT_S_PER_PARAM = 1.0e-7  # SD 1.5 (~1.0 B parameters exported) in ~105 s on the 2-core box
ASSUMED_SPEEDUP = {  # over eager torch on the same device, per UNet step
    "ort-cpu": 1.6,  # measured 1.67 (SD 1.5, fused attention) and 2.2 (tiny): docs/benchmarks.md
    "ort-cuda": 1.2,  # GPU: not yet measured (issue 13) — modest on purpose
    "ort-tensorrt": 1.5,
    "tensorrt": 1.5,
}


@dataclass
class BuildDecision:
    build: bool
    candidate: str
    images: int
    step_seconds: float
    build_seconds: float  # exporting what is missing, plus the parity check
    saved_seconds: float
    speedup: float
    components: dict[str, int]  # component → parameters still to export
    within_seconds: float | None = None  # the wall-clock limit the images were capped by, if it bound

    def reason(self) -> str:
        what = ", ".join(self.components) or "nothing"
        verb = "saves" if self.build else "would save only"
        within = f", all that {self.within_seconds:,.0f} s allows" if self.within_seconds is not None else ""
        return (f"exporting {what} (≈ {self.build_seconds:,.0f} s) {verb} ≈ {self.saved_seconds:,.0f} s on "
                f"{self.images} images{within} (UNet step {self.step_seconds:.3g} s, assumed ×{self.speedup:g})")

    def as_dict(self) -> dict:
        return {**asdict(self), "reason": self.reason()}


def export_rate(cache_root: Path) -> tuple[float, str]:
    """(seconds per parameter, where it came from): the median over this cache's earlier exports
    of at least 50 M parameters, where the overhead no longer dominates."""
    rates = []
    for manifest in Path(cache_root).glob("onnx-part/*/manifest.json"):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        params, seconds = data.get("parameters") or 0, data.get("build_seconds") or 0
        if params >= 50e6 and seconds > EXPORT_OVERHEAD_S:
            rates.append((seconds - EXPORT_OVERHEAD_S) / params)
    if rates:
        return statistics.median(rates), f"{len(rates)} earlier export(s) in this cache"
    return EXPORT_S_PER_PARAM, "reference figure (docs/benchmarks.md)"


def export_seconds(components: dict[str, int], cache_root: Path) -> float:
    rate, _ = export_rate(cache_root)
    return sum(EXPORT_OVERHEAD_S + params * rate for params in components.values())


def time_unet_step(pipe, height: int, width: int, repeats: int = 2) -> float:
    """Seconds for one eager UNet call on a guidance pair at the planned size: the fastest of
    `repeats` calls after a warm-up (first calls pay for allocation and kernel selection)."""
    import torch

    unet = pipe.unet
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    sample = torch.zeros(2, unet.config.in_channels, height // factor, width // factor,
                         device=unet.device, dtype=unet.dtype)
    hidden = torch.zeros(2, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim,
                         device=unet.device, dtype=unet.dtype)
    t = torch.tensor(500, device=unet.device)
    times = []
    with torch.inference_mode():
        unet(sample, t, hidden)
        for _ in range(repeats):
            if unet.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            unet(sample, t, hidden)
            if unet.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    return min(times)


def decide(candidate: str, *, images: int, steps: int, parity_steps: int, step_seconds: float,
           components: dict[str, int], cache_root: Path, within_seconds: float | None = None) -> BuildDecision:
    """Build when the time saved on the planned images — no more than eager torch makes in
    `within_seconds`, when given — exceeds the export and parity check."""
    speedup = ASSUMED_SPEEDUP.get(candidate, 1.2)
    cost = export_seconds(components, cache_root) + 2 * parity_steps * step_seconds
    bound = None
    if within_seconds is not None:
        eager_images = int(max(within_seconds, 0.0) / (steps * step_seconds))
        if eager_images < images:
            images, bound = eager_images, round(within_seconds, 1)
    saved = images * steps * step_seconds * (1 - 1 / speedup)
    return BuildDecision(build=saved > cost, candidate=candidate, images=images, step_seconds=step_seconds,
                         build_seconds=round(cost, 1), saved_seconds=round(saved, 1), speedup=speedup,
                         components=components, within_seconds=bound)
