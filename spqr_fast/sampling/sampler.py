"""Text-to-image sampling that reads as the algorithm: encode prompts, prepare per-image
latents, denoise with classifier-free guidance, decode.

It reproduces diffusers' `StableDiffusionPipeline` given one generator per image (tested), and
each image depends only on its own seed. With `batch_invariant` (the default) the networks run
one image at a time (the UNet on its uncond+cond pair), because batched float kernels differ in
the last bits with batch size and that flips the odd pixel; then the same seeds give bit-identical
images whatever the batch size. Without it, whole batches run at once (faster on GPUs).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np

from ..errors import GenerationError


class DiffusionSampler:
    """Runs on any backend's components: `encode`, `unet`, `decode`, plus the scheduler."""

    def __init__(
        self, components, *, steps: int, height: int, width: int, negative_prompt: str = "",
        batch_invariant: bool = True,
    ):
        self.parts = components
        self.batch_invariant = batch_invariant
        self.steps = steps
        self.height = height
        self.width = width
        self.negative_prompt = negative_prompt
        self._step_takes_generator = "generator" in inspect.signature(components.scheduler.step).parameters

    @classmethod
    def from_pipe(cls, pipe, **kwargs) -> "DiffusionSampler":
        """The eager-PyTorch sampler for a diffusers pipeline."""
        from ..backends.torch_backend import TorchComponents

        return cls(TorchComponents(pipe), **kwargs)

    @property
    def device(self):
        return self.parts.device

    def _chunks(self, n: int) -> list[slice]:
        step = 1 if self.batch_invariant else n
        return [slice(i, i + step) for i in range(0, n, step)]

    def _encode(self, prompts: Sequence[str]):
        """(uncond, cond) text embeddings, each [N, tokens, dim]."""
        import torch

        parts = [self.parts.encode(list(prompts[c]), [self.negative_prompt] * len(prompts[c]))
                 for c in self._chunks(len(prompts))]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _guided_noise(self, latents, t, uncond, cond, g):
        import torch

        out = []
        for c in self._chunks(len(latents)):
            model_in = self.parts.scheduler.scale_model_input(torch.cat([latents[c], latents[c]]), t)
            emb = torch.cat([uncond[c], cond[c]])
            noise_u, noise_c = self.parts.unet(model_in, t, emb).chunk(2)
            out.append(noise_u + g[c] * (noise_c - noise_u))
        return torch.cat(out)

    def _decode(self, latents):
        import torch

        return torch.cat([self.parts.decode(latents[c]) for c in self._chunks(len(latents))])

    def _initial_latents(self, generators):
        """Drawn per image on the CPU, so latents do not depend on device or batch."""
        import torch

        scale = self.parts.vae_scale_factor
        shape = (1, self.parts.latent_channels, self.height // scale, self.width // scale)
        latents = torch.cat([torch.randn(shape, generator=g) for g in generators])
        return latents.to(self.device, self.parts.dtype) * self.parts.scheduler.init_noise_sigma

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], guidance: Sequence[float]) -> np.ndarray:
        """uint8 images [N, H, W, 3] for N prompts with their seeds and guidance scales."""
        import torch

        if not (len(prompts) == len(seeds) == len(guidance)):
            raise ValueError("prompts, seeds and guidance must have the same length")
        scheduler = self.parts.scheduler
        with torch.inference_mode():
            uncond, cond = self._encode(prompts)
            # One generator per image, continued by stochastic schedulers' steps (as diffusers does).
            generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
            latents = self._initial_latents(generators)
            g = torch.tensor(list(guidance), device=self.device, dtype=latents.dtype).view(-1, 1, 1, 1)
            scheduler.set_timesteps(self.steps, device=self.device)
            step_kwargs = {}
            if self._step_takes_generator:
                step_kwargs["generator"] = generators
            for t in scheduler.timesteps:
                noise = self._guided_noise(latents, t, uncond, cond, g)
                latents = scheduler.step(noise, t, latents, **step_kwargs).prev_sample
            decoded = self._decode(latents)
        if not torch.isfinite(decoded).all():
            raise GenerationError(
                "the model produced NaN/inf pixels — try generation.dtype: fp32, or check the model weights"
            )
        images = (decoded.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return (images * 255).round().astype(np.uint8)
