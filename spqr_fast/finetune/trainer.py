"""The BFT training loop: ε-prediction MSE on DDPM-noised latents, AdamW, grad clipping,
constant LR, frozen text encoder and VAE, gradient accumulation, mixed precision on GPUs.

Randomness is derived from (seed, step, micro-batch) rather than carried in generator state,
and the data order from (seed, epoch); so a run resumed from a checkpoint takes exactly the
same steps as an uninterrupted one and ends with the same weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from .. import __version__
from ..config import BftConfig, ModelSource
from ..errors import InputError
from ..input_files import file_in_the_way
from ..models import load_pipeline, pick_device
from ..keys import FileHasher, source_hash
from ..store import atomic_write_json
from .checkpoints import Checkpoints
from .dataset import BftDataset, load_bft_dataset, load_training_image
from .profiles import LORA_TARGETS, prepare_trainable, trainable_state

LORA_FILE = "pytorch_lora_weights.safetensors"
PATCH_FILE = "unet_patch.safetensors"
CARD_FILE = "bft_card.json"


def _sub_seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big") & ((1 << 63) - 1)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng(_sub_seed(seed, epoch)).permutation(n)


def sample_order(n: int, seed: int, first: int, count: int) -> list[int]:
    """Dataset indices for global sample positions [first, first + count): one seeded
    permutation per epoch, so any position can be recomputed after a resume."""
    return [int(_epoch_permutation(n, seed, k // n)[k % n]) for k in range(first, first + count)]


CHECKPOINT_SECONDS = 300.0  # the default interval: a kill loses at most this much training


def checkpoint_due(every_steps: int | None, done: int, since_last_s: float) -> bool:
    """Whether to checkpoint after `done` steps: every N steps when set (0: never), else by time."""
    if every_steps is None:
        return since_last_s >= CHECKPOINT_SECONDS
    return every_steps > 0 and done % every_steps == 0


def total_steps(cfg: BftConfig, n_images: int) -> int:
    if cfg.steps is not None:
        return cfg.steps
    epochs = cfg.epochs if cfg.epochs is not None else cfg.default_epochs()
    return max(1, math.ceil(n_images * epochs / cfg.batch_size))


def bft_key(model_hash: str, dataset: BftDataset, cfg: BftConfig) -> str:
    """What determines a BFT result (not where it runs: device and checkpointing are excluded)."""
    from ..keys import stable_hash

    hp = cfg.model_dump(exclude={"dataset", "device", "checkpoint_every"})
    return stable_hash({"model": model_hash, "dataset": dataset.sha256, "bft": hp, "version": 1}, n=24)


@dataclass
class _Precomputed:
    latent_mean: "object"  # torch tensors [N, 4, h, w]
    latent_std: "object"
    text: "object"  # [N, tokens, dim]


def native_resolution(pipe) -> int:
    """The size the model was made for, as diffusers' pipeline computes its default."""
    return int(pipe.unet.config.sample_size) * (2 ** (len(pipe.vae.config.block_out_channels) - 1))


def training_resolution(cfg: BftConfig, pipe, console: Console) -> int:
    """`cfg.resolution`, or the model's own; a size far from the model's own gets one warning
    (it trains the model on something it never saw, and costs the square of the ratio)."""
    native = native_resolution(pipe)
    if cfg.resolution is None:
        return native
    if not native / 2 <= cfg.resolution <= native * 2:
        console.print(f"[yellow]warning[/]: BFT resolution {cfg.resolution} px is far from the model's own {native} px "
                      "— leave resolution unset to train at the model's size")
    return cfg.resolution


def _precompute(pipe, dataset: BftDataset, resolution: int, device: str, console: Console) -> _Precomputed:
    """The frozen parts run once: VAE moments per image, text embeddings per caption."""
    import torch

    from ..progress import make_progress

    means, stds, texts = [], [], []
    with torch.inference_mode(), make_progress(console) as progress:
        task = progress.add_task(f"encode BFT images ({resolution} px)", total=len(dataset), unit="img")
        for s in range(0, len(dataset), 8):
            files = dataset.files[s:s + 8]
            try:
                pixels = torch.from_numpy(np.stack([load_training_image(f, resolution) for f in files])).to(device)
            except OSError as err:
                raise InputError(f"BFT dataset: cannot read an image in {[f.name for f in files]} ({err})") from None
            dist = pipe.vae.encode(pixels).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
            tok = pipe.tokenizer(list(dataset.captions[s:s + 8]), padding="max_length", truncation=True,
                                 max_length=pipe.tokenizer.model_max_length, return_tensors="pt")
            texts.append(pipe.text_encoder(tok.input_ids.to(device))[0])
            progress.advance(task, len(files))
    return _Precomputed(torch.cat(means), torch.cat(stds), torch.cat(texts))


def _autocast_dtype(cfg: BftConfig, device: str):
    import torch

    mp = cfg.mixed_precision
    if device != "cuda" or mp == "no":
        return None
    if mp == "auto":
        return torch.float16
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[mp]


def _save_outputs(pipe, cfg: BftConfig, out: Path) -> str:
    from safetensors.torch import save_file

    unet = pipe.unet
    if cfg.profile == "lite":
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        StableDiffusionPipeline.save_lora_weights(str(out), unet_lora_layers=layers, weight_name=LORA_FILE,
                                                  safe_serialization=True)
        return LORA_FILE
    state = trainable_state(unet)
    save_file({k: v.float().cpu() for k, v in state.items()}, str(out / PATCH_FILE))
    return PATCH_FILE


def optimizer_step(unet, params, optimizer, scaler, micro_batches, max_grad_norm: float, amp_dtype) -> float:
    """One optimizer step over accumulated micro-batches of (noisy latents, t, text, noise):
    ε-prediction MSE, gradient clipping, AdamW. Returns the step's loss."""
    import torch

    device = str(unet.device.type)
    total = 0.0
    for noisy, t, text, noise in micro_batches:
        with torch.autocast(device_type=device, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred = unet(noisy, t, encoder_hidden_states=text).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float()) / len(micro_batches)
        (scaler.scale(loss) if scaler else loss).backward()
        total += loss.item()
    if scaler:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def make_optimizer(params, cfg: BftConfig):
    import torch

    return torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             weight_decay=cfg.weight_decay, eps=cfg.adam_epsilon)


@dataclass
class TrainResult:
    params: list
    losses: list[float]
    steps: int
    accumulation: int
    mixed_precision: str
    resumed_from_step: int | None
    resolution: int


def train(pipe, cfg: BftConfig, dataset: BftDataset, out: Path, *, resume: bool = False,
          console: Console | None = None) -> TrainResult:
    """Fine-tune `pipe.unet` in place as `cfg.profile` prescribes (checkpoints under `out`)."""
    import torch
    from diffusers import DDPMScheduler
    from rich.progress import TextColumn

    from ..progress import make_progress

    console = console or Console(stderr=True)
    device = str(pipe.unet.device.type)
    checkpoints = Checkpoints(out)
    if not resume and checkpoints.latest() is not None:
        raise InputError(f"'{out}' already holds checkpoints — pass --resume to continue, or choose a new --out")
    pipe.text_encoder.requires_grad_(False)
    pipe.vae.requires_grad_(False)
    resolution = training_resolution(cfg, pipe, console)
    pre = _precompute(pipe, dataset, resolution, device, console)
    torch.manual_seed(_sub_seed(cfg.seed, "lora-init"))  # LoRA A matrices are random at init
    unet = pipe.unet
    params = prepare_trainable(unet, cfg.profile, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
    unet.train()
    optimizer = make_optimizer(params, cfg)
    amp_dtype = _autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    n_train_t = noise_scheduler.config.num_train_timesteps
    micro = cfg.micro_batch_size or cfg.batch_size
    accum = cfg.batch_size // micro
    steps = total_steps(cfg, len(dataset))
    start, losses = 0, []
    last = checkpoints.latest() if resume else None
    if last is not None:
        start, losses = checkpoints.load(last, unet, optimizer, scaler)
        console.print(f"resuming from {last.name} (step {start} of {steps})")

    last_saved = time.monotonic()
    progress = make_progress(console)
    progress.columns = (*progress.columns[:-1], TextColumn("loss {task.fields[loss]}"), progress.columns[-1])
    with progress:
        task = progress.add_task(f"finetune {cfg.profile}", total=steps, completed=start, unit="step", loss="—")
        for step in range(start, steps):
            micro_batches = []
            for m in range(accum):
                idx = sample_order(len(dataset), cfg.seed, step * cfg.batch_size + m * micro, micro)
                gen = torch.Generator("cpu").manual_seed(_sub_seed(cfg.seed, step, m))
                mean, std = pre.latent_mean[idx], pre.latent_std[idx]
                eps_latent = torch.randn(mean.shape, generator=gen).to(device)
                latents = (mean + std * eps_latent) * pipe.vae.config.scaling_factor
                noise = torch.randn(latents.shape, generator=gen).to(device)
                t = torch.randint(0, n_train_t, (len(idx),), generator=gen).to(device)
                micro_batches.append((noise_scheduler.add_noise(latents, noise, t), t, pre.text[idx], noise))
            step_loss = optimizer_step(unet, params, optimizer, scaler, micro_batches, cfg.max_grad_norm, amp_dtype)
            if not math.isfinite(step_loss):
                raise InputError(f"BFT loss became {step_loss} at step {step} — lower learning_rate or use fp32")
            losses.append(step_loss)
            progress.update(task, advance=1, loss=f"{step_loss:.4f}")
            if step + 1 < steps and checkpoint_due(cfg.checkpoint_every, step + 1, time.monotonic() - last_saved):
                checkpoints.save(step + 1, unet, optimizer, scaler, losses)
                last_saved = time.monotonic()
    unet.eval()
    precision = str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32"
    return TrainResult(params, losses, steps, accum, precision, start if last is not None else None, resolution)


def finetune(model: ModelSource, cfg: BftConfig, out: Path, *, resume: bool = False,
             console: Console | None = None, hasher: FileHasher | None = None,
             dataset: BftDataset | None = None) -> dict:
    """Fine-tune `model` on `cfg.dataset` with `cfg.profile`; write weights and a card to `out`.
    `dataset` passes an already validated dataset (so it is not read and hashed twice)."""
    hasher = hasher or FileHasher(None)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file — give a folder for the fine-tune's weights and checkpoints")
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise InputError(f"--out '{out}' cannot be created: '{blocking}' is a file — choose another folder")
    dataset = dataset or load_bft_dataset(cfg.dataset)  # validated before any model loads
    if not resume and Checkpoints(out).latest() is not None:
        raise InputError(f"'{out}' already holds checkpoints — pass --resume to continue, or choose a new --out")
    started = time.time()
    device = pick_device(cfg.device)
    pipe, _ = load_pipeline(model, device=device, dtype="fp32")
    result = train(pipe, cfg, dataset, out, resume=resume, console=console)
    out.mkdir(parents=True, exist_ok=True)
    weights_file = _save_outputs(pipe, cfg, out)
    model_hash = source_hash(model, hasher)
    losses = result.losses
    card = {
        "spqr_fast": __version__,
        "profile": cfg.profile,
        "key": bft_key(model_hash, dataset, cfg),
        "base_model": json.loads(model.model_dump_json()),
        "base_model_hash": model_hash,
        "dataset": str(dataset.root),
        "dataset_sha256": dataset.sha256,
        "n_images": len(dataset),
        "steps": result.steps,
        "epochs": result.steps * cfg.batch_size / len(dataset),
        "seed": cfg.seed,
        "hyperparameters": cfg.model_dump(exclude={"dataset"}),
        "lora_targets": LORA_TARGETS if cfg.profile == "lite" else None,
        "trainable_parameters": int(sum(p.numel() for p in result.params)),
        "gradient_accumulation": result.accumulation,
        "mixed_precision": result.mixed_precision,
        "resolution": result.resolution,
        "device": device,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "losses": losses,
        "weights_file": weights_file,
        "seconds": round(time.time() - started, 2),
        "resumed_from_step": result.resumed_from_step,
    }
    atomic_write_json(out / CARD_FILE, card)
    shutil.rmtree(Checkpoints(out).root, ignore_errors=True)
    return card


def after_bft_source(model: ModelSource, bft_out: Path, card: dict) -> ModelSource:
    """The fine-tuned model as a ModelSource: the original plus the BFT output on top."""
    if model.lora is not None or model.unet_patch is not None:
        raise InputError("fine-tuning a model that itself carries 'lora' or 'unet_patch' is not supported — "
                         "merge it into a diffusers folder first")
    if card["weights_file"] == LORA_FILE:
        return model.model_copy(update={"lora": str(bft_out), "lora_scale": 1.0})
    return model.model_copy(update={"unet_patch": str(bft_out / card["weights_file"])})
