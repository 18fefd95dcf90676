"""UNets to measure, built from configs with random weights (no download)."""

from __future__ import annotations

# Stable Diffusion 1.5's UNet config (860 M parameters).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
TEXT_TOKENS = 77


def build_unet(preset: str, seed: int = 0):
    """(unet, latent size, text dim) for 'tiny' (the demo's UNet) or 'sd15'."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    if preset == "sd15":
        return UNet2DConditionModel(**SD15_UNET), 64, 768
    if preset == "tiny":
        from ..demo.tiny import TEXT_DIM

        unet = UNet2DConditionModel(
            sample_size=32, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=TEXT_DIM, attention_head_dim=8, norm_num_groups=32,
        )
        return unet, 32, TEXT_DIM
    raise ValueError(f"unknown preset {preset!r} (tiny, sd15)")
