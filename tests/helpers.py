"""Test helpers that build artefacts the world project does not ship."""

from __future__ import annotations

from pathlib import Path


def write_random_lora(base: Path, folder: Path, seed: int, rank: int = 4) -> Path:
    """A LoRA adapter with seeded non-zero weights for `base`, saved in diffusers' format — a
    ready-made after-BFT model, as a user would bring one."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    unet = StableDiffusionPipeline.from_pretrained(str(base), local_files_only=True).unet
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=layers, safe_serialization=True)
    return folder
