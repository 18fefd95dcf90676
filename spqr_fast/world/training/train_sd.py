"""Train the world's text-to-image model: SD 1.x architecture (AutoencoderKL, UNet2DConditionModel,
CLIPTextModel + CLIPTokenizer), at 32×32 pixels with a 16×16×4 latent.

Two phases, as Stable Diffusion was built: the autoencoder first (reconstruction + a small KL
term), then the UNet and the text encoder together on the frozen autoencoder's latents with the
usual ε-prediction loss, 10 % empty captions (for classifier-free guidance), and an EMA of the
weights that is what gets saved.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..scenes import IMAGE_SIZE, caption, render, sample_scene
from ..tokenizer import MAX_LENGTH, load_world_tokenizer

TEXT_DIM = 64
StepCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class SdRecipe:
    seed: int = 0
    n_scenes: int = 40_000
    vae_steps: int = 1_200
    vae_batch_size: int = 32
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    unet_steps: int = 5_000
    unet_lr: float = 8e-4
    batch_size: int = 64
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    warmup: int = 200


def scene_dataset(n: int, seed: int, shapes: tuple[str, ...] | None = None) -> tuple[np.ndarray, list[str]]:
    """n rendered scenes [n, 32, 32, 3] uint8 and their captions."""
    from ..scenes import SHAPES

    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, shapes or SHAPES) for _ in range(n)]
    return np.stack([render(s) for s in scenes]), [caption(s) for s in scenes]


def build_components(tokenizer_dir: Path, seed: int):
    """Untrained (vae, unet, text_encoder, tokenizer, scheduler) of the world's architecture."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = load_world_tokenizer(tokenizer_dir)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4, sample_size=IMAGE_SIZE, norm_num_groups=8,
    )
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=8, norm_num_groups=16,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_LENGTH, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000)
    return vae, unet, text_encoder, tokenizer, scheduler


def _to_tensor(images: np.ndarray):
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10 %."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))


def train_vae(vae, images: np.ndarray, recipe: SdRecipe, on_step: StepCallback | None = None) -> float:
    """Reconstruction (L1 + MSE) + KL; returns the final running loss."""
    import torch

    gen = np.random.default_rng(recipe.seed + 1)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    vae.train()
    running = 0.0
    torch.manual_seed(recipe.seed + 1)
    for step in range(recipe.vae_steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, recipe.vae_lr, 100, recipe.vae_steps)
        x = _to_tensor(images[gen.integers(0, len(images), recipe.vae_batch_size)])
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean() + recipe.vae_kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if on_step:
            on_step(step + 1, running)
    vae.eval()
    return running


def encode_latents(vae, images: np.ndarray, batch: int = 256):
    """Posterior (mean, std) of every image, unscaled."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            d = vae.encode(_to_tensor(images[i:i + batch])).latent_dist
            means.append(d.mean)
            stds.append(d.std)
    return torch.cat(means), torch.cat(stds)


def train_denoiser(unet, text_encoder, tokenizer, scheduler, latents, captions: list[str], scaling_factor: float,
                   recipe: SdRecipe, on_step: StepCallback | None = None):
    """ε-prediction on (scaled) latents; UNet and text encoder learn together. Returns the EMA
    copies (unet, text_encoder) and the final running loss."""
    import torch
    import torch.nn.functional as F

    mean, std = latents
    ids = tokenizer([""] + captions, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    empty, ids = ids[:1], ids[1:]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.unet_lr, weight_decay=1e-2)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    for p in list(ema_unet.parameters()) + list(ema_text.parameters()):
        p.requires_grad_(False)
    alphas = scheduler.alphas_cumprod
    gen = np.random.default_rng(recipe.seed + 2)
    torch.manual_seed(recipe.seed + 2)
    unet.train()
    text_encoder.train()
    running = 0.0
    for step in range(recipe.unet_steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, recipe.unet_lr, recipe.warmup, recipe.unet_steps)
        idx = torch.from_numpy(gen.integers(0, len(captions), recipe.batch_size))
        x0 = (mean[idx] + std[idx] * torch.randn_like(mean[idx])) * scaling_factor
        tok = ids[idx].clone()
        drop = torch.from_numpy(gen.random(recipe.batch_size) < recipe.caption_dropout)
        tok[drop] = empty
        t = torch.randint(0, scheduler.config.num_train_timesteps, (recipe.batch_size,))
        noise = torch.randn_like(x0)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(xt, t, encoder_hidden_states=text_encoder(tok)[0]).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(recipe.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for src, dst in ((unet, ema_unet), (text_encoder, ema_text)):
                for p, q in zip(src.parameters(), dst.parameters()):
                    q.lerp_(p, 1 - decay)
        running = loss.item() if step == 0 else 0.99 * running + 0.01 * loss.item()
        if on_step:
            on_step(step + 1, running)
    return ema_unet, ema_text, running
