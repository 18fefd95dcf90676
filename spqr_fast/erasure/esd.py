"""Erased Stable Diffusion (Gandikota et al., 2023): fine-tune the UNet so that, conditioned on
the concept, it predicts the noise of *negative* guidance away from it:

    target = ε*(x_t, ∅) − η (ε*(x_t, c) − ε*(x_t, ∅))      (ε*: the frozen original)

x_t comes, as in the paper, from sampling with the model being trained on the concept prompt
for a random number of DDIM steps. `ESD-x` trains the cross-attention layers (attn2) only, the
variant for concepts named in prompts; `ESD-u` trains everything except cross-attention.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .text import prompt_embeddings


@dataclass(frozen=True)
class EsdSettings:
    """Defaults are the paper's for SD 1.4 (1000 iterations, lr 1e-5, η = 1, 50 DDIM steps)."""

    train: str = "xattn"  # "xattn" (ESD-x) | "noxattn" (ESD-u)
    iterations: int = 1_000
    lr: float = 1e-5
    negative_guidance: float = 1.0
    start_guidance: float = 3.0
    ddim_steps: int = 50
    batch_size: int = 1
    seed: int = 0


def trainable(unet, train: str) -> dict[str, object]:
    params = {}
    for name, p in unet.named_parameters():
        xattn = ".attn2." in name
        if (train == "xattn" and xattn) or (train == "noxattn" and not xattn and "time_embed" not in name):
            params[name] = p
    if not params:
        raise ValueError(f"ESD: no parameters selected by train='{train}'")
    return params


def esd_finetune(pipe, concepts: list[str], settings: EsdSettings = EsdSettings(), *, height: int | None = None,
                 width: int | None = None, on_step: Callable[[int, float], None] | None = None) -> dict:
    """Fine-tune `pipe.unet` in place; returns the changed tensors {state-dict key: tensor}."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDIMScheduler

    unet = pipe.unet
    device = unet.device
    frozen = copy.deepcopy(unet).eval().requires_grad_(False)
    params = trainable(unet, settings.train)
    unet.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(list(params.values()), lr=settings.lr)
    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(settings.ddim_steps)
    n_train = sched.config.num_train_timesteps
    emb, _ = prompt_embeddings(pipe, list(concepts) + [""])
    emb = emb.to(device)
    cond_all, uncond = emb[:-1], emb[-1:]
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = (unet.config.in_channels, (height or unet.config.sample_size * scale) // scale,
            (width or unet.config.sample_size * scale) // scale)
    rng = np.random.default_rng(settings.seed)
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    running = 0.0
    unet.train()
    for it in range(settings.iterations):
        pick = torch.from_numpy(rng.integers(0, len(concepts), settings.batch_size))
        cond, un = cond_all[pick], uncond.expand(settings.batch_size, -1, -1)
        t_enc = int(rng.integers(0, settings.ddim_steps))
        z = torch.randn((settings.batch_size, *size), generator=gen).to(device)
        with torch.no_grad():  # x_t by sampling with the model being trained, guided towards the concept
            for t in sched.timesteps[:t_enc]:
                e_u, e_c = unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([un, cond])).sample.chunk(2)
                z = sched.step(e_u + settings.start_guidance * (e_c - e_u), t, z).prev_sample
            lo, hi = round(t_enc / settings.ddim_steps * n_train), round((t_enc + 1) / settings.ddim_steps * n_train)
            t_ddpm = torch.tensor(n_train - 1 - int(rng.integers(lo, max(lo + 1, hi))), device=device).clamp(0, n_train - 1)
            e0, ep = frozen(torch.cat([z, z]), t_ddpm, encoder_hidden_states=torch.cat([un, cond])).sample.chunk(2)
            target = e0 - settings.negative_guidance * (ep - e0)
        loss = F.mse_loss(unet(z, t_ddpm, encoder_hidden_states=cond).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = loss.item() if it == 0 else 0.95 * running + 0.05 * loss.item()
        if on_step:
            on_step(it + 1, running)
    unet.eval().requires_grad_(False)
    return {name: p.detach().cpu().clone().contiguous() for name, p in params.items()}
