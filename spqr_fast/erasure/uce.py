"""Unified Concept Editing (Gandikota et al., 2024), the closed-form cross-attention edit.

For every cross-attention key/value projection W, find W' minimising

    Σ_erase ‖W' c_e − W c_t‖² + s_p Σ_preserve ‖W' c_p − W c_p‖² + λ ‖W' − W‖²_F

(c_e: embeddings of an erased concept, c_t: of its target, c_p: of concepts to keep), i.e.

    W' = (λW + Σ W c_t c_eᵀ + s_p Σ W c_p c_pᵀ)(λI + Σ c_e c_eᵀ + s_p Σ c_p c_pᵀ)⁻¹.

As in the reference implementation, each concept contributes the token embeddings from its last
word to the end of the padded sequence, aligned with its target's (so "cross" → "" maps the
concept's token and the end-of-text tokens after it onto the target's).
"""

from __future__ import annotations

from dataclasses import dataclass

from .text import prompt_embeddings


@dataclass(frozen=True)
class UceSettings:
    erase_scale: float = 1.0
    preserve_scale: float = 1.0
    lamb: float = 0.1
    # "tail": preserved prompts contribute their last word on (the reference code); "all": every
    # token — stronger preservation when whole prompts, not single words, are to be kept.
    preserve_tokens: str = "tail"


def cross_attention_projections(unet) -> dict[str, object]:
    """name → nn.Linear for every cross-attention key and value projection (attn2.to_k/to_v)."""
    return {name: m for name, m in unet.named_modules()
            if name.endswith(("attn2.to_k", "attn2.to_v")) and hasattr(m, "weight")}


def _aligned_pairs(pipe, sources: list[str], targets: list[str]):
    """[M, D] source and target token embeddings, aligned from each prompt's last word on."""
    import torch

    emb, mask = prompt_embeddings(pipe, sources + targets)
    n, length = len(sources), emb.shape[1]
    src, tgt = [], []
    for i in range(n):
        a, b = int(mask[i].sum()) - 2, int(mask[n + i].sum()) - 2  # index of the last word token
        far = max(a, b)
        src.append(emb[i, a:length - (far - a)])
        tgt.append(emb[n + i, b:length - (far - b)])
    return torch.cat(src), torch.cat(tgt)


def uce_edit(pipe, erase: list[str], targets: list[str] | None = None, preserve: list[str] | None = None,
             settings: UceSettings = UceSettings()) -> dict:
    """Edit `pipe.unet` in place; returns the changed tensors {state-dict key: tensor}."""
    import torch

    if not erase:
        raise ValueError("UCE needs at least one concept to erase")
    targets = targets or [""] * len(erase)
    if len(targets) != len(erase):
        raise ValueError("UCE: give one target per erased concept (or none: erase to the empty prompt)")
    c_e, c_t = _aligned_pairs(pipe, erase, targets)
    c_p = None
    if preserve and settings.preserve_tokens == "all":
        emb, mask = prompt_embeddings(pipe, preserve)
        c_p = emb[mask.bool()]
    elif preserve:
        c_p = _aligned_pairs(pipe, preserve, preserve)[0]
    changed = {}
    with torch.no_grad():
        for name, layer in cross_attention_projections(pipe.unet).items():
            w = layer.weight.detach().double().cpu()
            d = w.shape[1]
            lhs = settings.lamb * w + settings.erase_scale * (w @ c_t.double().T) @ c_e.double()
            rhs = settings.lamb * torch.eye(d, dtype=torch.float64) + settings.erase_scale * c_e.double().T @ c_e.double()
            if c_p is not None:
                p = c_p.double()
                lhs += settings.preserve_scale * (w @ p.T) @ p
                rhs += settings.preserve_scale * p.T @ p
            new = torch.linalg.solve(rhs, lhs, left=False)  # lhs @ rhs⁻¹
            layer.weight.copy_(new.to(layer.weight.dtype))
            changed[f"{name}.weight"] = layer.weight.detach().cpu().clone().contiguous()
    return changed
