"""The parity gate: before a run trusts an exported graph or engine, it runs a few denoising
steps against torch from the same latents and embeddings and refuses it beyond a tolerance."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

PROMPT = "a photograph of an astronaut riding a horse"


@dataclass
class ParityResult:
    measure: ClassVar[str] = "relative error"  # what `worst` is, in the chosen-backend line
    passed: bool
    tolerance: float
    text_error: float
    unet_error: float
    decode_error: float
    steps: int

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def worst(self) -> float:
        return max(self.text_error, self.unet_error, self.decode_error)

    def reason(self) -> str:
        return f"parity failed: relative error {self.worst:.2e} > tolerance {self.tolerance:.0e}"


@dataclass
class ScalarParity:
    """A judge's parity: its largest error against torch on probe inputs, and the tolerance."""

    measure: ClassVar[str] = "error"
    error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance

    @property
    def worst(self) -> float:
        return self.error

    def as_dict(self) -> dict:
        return {"passed": self.passed, "error": self.error, "tolerance": self.tolerance}

    def reason(self) -> str:
        return f"parity failed: error {self.error:.2e} > tolerance {self.tolerance:.0e}"


def _rel_error(candidate, reference) -> float:
    c, r = candidate.float().cpu(), reference.float().cpu()
    return float((c - r).abs().max() / max(1.0, float(r.abs().max())))


def check_parity(reference, candidate, *, height: int, width: int, steps: int, tolerance: float,
                 seed: int = 0) -> ParityResult:
    """Compare candidate components to the torch reference on text, `steps` UNet calls along
    the scheduler's trajectory, and the VAE decode."""
    import torch

    with torch.inference_mode():
        ref_u, ref_c = reference.encode([PROMPT], [""])
        cand_u, cand_c = candidate.encode([PROMPT], [""])
        text_err = max(_rel_error(cand_u, ref_u), _rel_error(cand_c, ref_c))
        emb = torch.cat([ref_u, ref_c])
        scale = reference.vae_scale_factor
        gen = torch.Generator("cpu").manual_seed(seed)
        latents = torch.randn((1, reference.latent_channels, height // scale, width // scale), generator=gen)
        reference.scheduler.set_timesteps(steps)
        unet_err = 0.0
        for t in reference.scheduler.timesteps[:steps]:
            x = torch.cat([latents, latents])
            ref = reference.unet(x.to(reference.device, reference.dtype), t, emb.to(reference.device, reference.dtype))
            cand = candidate.unet(x.to(candidate.device, candidate.dtype), t, emb.to(candidate.device, candidate.dtype))
            unet_err = max(unet_err, _rel_error(cand, ref))
            latents = latents - 0.1 * ref.float().cpu()[:1]  # walk along a plausible trajectory
        decode_err = _rel_error(candidate.decode(latents.to(candidate.device, candidate.dtype)),
                                reference.decode(latents.to(reference.device, reference.dtype)))
    worst = max(text_err, unet_err, decode_err)
    return ParityResult(worst <= tolerance, tolerance, text_err, unet_err, decode_err, steps)
