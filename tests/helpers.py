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


def diffusers_unet_to_ldm(state_dict: dict, config: dict, prefix: str = "model.diffusion_model.") -> dict:
    """A diffusers UNet state dict renamed to the original (LDM/CompVis) layout, as erasure
    methods built on the original code base save it — the inverse of spqr-fast's conversion,
    to make such checkpoints offline from a tiny pipeline."""
    from spqr_fast.model_formats import ldm_unet_prefixes

    resnet_back = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                   ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
    prefixes = sorted(ldm_unet_prefixes(config), key=lambda t: -len(t[1]))
    out = {}
    for key, value in state_dict.items():
        old, new, resnet = next(p for p in prefixes if key.startswith(p[1]))
        rest = key[len(new):]
        if resnet:
            rest = next((b + rest[len(a):] for a, b in resnet_back if rest.startswith(a + ".")), rest)
        out[prefix + old + rest] = value
    return out
