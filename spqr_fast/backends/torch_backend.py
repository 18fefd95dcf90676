"""The reference backend: the diffusers pipeline's own modules, eager PyTorch."""

from __future__ import annotations


class TorchComponents:
    """Adapts a `StableDiffusionPipeline` to the sampler's component interface."""

    name = "torch"

    def __init__(self, pipe):
        self.pipe = pipe
        self.scheduler = pipe.scheduler
        self.vae_scale_factor = pipe.vae_scale_factor
        self.latent_channels = pipe.unet.config.in_channels
        self.scaling_factor = pipe.vae.config.scaling_factor
        self.device = pipe.unet.device
        self.dtype = pipe.unet.dtype

    def encode(self, prompts: list[str], negative: list[str]):
        """(uncond, cond) embeddings [N, tokens, dim], exactly as diffusers encodes them."""
        cond, uncond = self.pipe.encode_prompt(prompts, self.device, 1, True, negative_prompt=negative)
        return uncond, cond

    def unet(self, sample, t, embeddings):
        return self.pipe.unet(sample, t, encoder_hidden_states=embeddings).sample

    def decode(self, latents):
        return self.pipe.vae.decode(latents / self.scaling_factor).sample
