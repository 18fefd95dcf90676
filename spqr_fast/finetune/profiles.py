"""What each SPQR BFT profile trains (docs/spec.md, benign fine-tuning)."""

from __future__ import annotations

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
MODERATE_PARAMS = ("attn2.to_k", "attn2.to_v", "attn2.to_out")


def prepare_trainable(unet, profile: str, *, rank: int, alpha: float) -> list:
    """Freeze what the profile keeps fixed; return the parameters it trains.

    lite: a peft LoRA (r, α) on to_q/to_k/to_v/to_out.0 of every attention block, base frozen;
    moderate: only parameters whose names contain attn2.to_k / attn2.to_v / attn2.to_out;
    standard: the whole UNet."""
    if profile == "lite":
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=LORA_TARGETS))
        params = [p for n, p in unet.named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        return params
    if profile == "moderate":
        unet.requires_grad_(False)
        params = [p for n, p in unet.named_parameters() if any(key in n for key in MODERATE_PARAMS)]
        for p in params:
            p.requires_grad_(True)
        return params
    if profile == "standard":
        unet.requires_grad_(True)
        return list(unet.parameters())
    raise ValueError(f"unknown profile {profile!r}")


def trainable_state(unet) -> dict:
    """The trained tensors by name (what a checkpoint and the output must hold)."""
    return {n: p.detach().clone().contiguous() for n, p in unet.named_parameters() if p.requires_grad}
