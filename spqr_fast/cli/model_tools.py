"""Commands that load or change a model: finetune, convert, erase, generate, export."""

from __future__ import annotations

from pathlib import Path

import click
from ..safe_text import shown

from ..errors import SpqrError
from .common import (FiniteFloat, existing_path, friendly_errors, model_options, prompt_file_options, stderr_console,
                     threads_option)


@click.command("finetune")
@model_options()
@click.option("--dataset", required=True, type=existing_path("dir"), help="image folder with metadata.jsonl")
@click.option("--profile", required=True, type=click.Choice(["lite", "moderate", "standard"]))
@click.option("--epochs", type=int, default=None, help="default: lite 1, moderate 3, standard 10")
@click.option("--steps", type=int, default=None, help="optimizer steps (instead of --epochs)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--resume", is_flag=True, help="continue from the last checkpoint in --out")
@click.option("--lr", "learning_rate", type=FiniteFloat(0, 1, low_open=True), default=1e-4, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True, help="effective batch")
@click.option("--micro-batch-size", type=int, default=None, help="per forward pass (gradient accumulation)")
@click.option("--resolution", type=int, default=None, help="training size (default: the model's own, e.g. 512 for SD 1.5)")
@click.option("--mixed-precision", type=click.Choice(["auto", "no", "fp16", "bf16"]), default="auto", show_default=True)
@click.option("--checkpoint-every", type=int, default=None,
              help="steps between checkpoints (default: every 5 minutes of training; 0: never)")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@threads_option
@friendly_errors
def finetune_cmd(source, dataset: Path, out_dir: Path, resume: bool, threads: int | None, **hp) -> None:
    """Benign fine-tuning with an SPQR profile (lite = LoRA, moderate = cross-attn K/V/out, standard = full UNet)."""
    from pydantic import ValidationError

    from ..runtime import apply_threads

    apply_threads(threads)

    from ..config import BftConfig
    from ..errors import ConfigError
    from ..finetune.trainer import finetune

    try:
        cfg = BftConfig(dataset=str(dataset.resolve()), **hp)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"finetune: {'.'.join(map(str, first['loc'])) or 'options'}: {first['msg']}") from None
    card = finetune(source, cfg, out_dir, resume=resume, console=stderr_console())
    click.echo(f"wrote {out_dir / card['weights_file']} and bft_card.json "
               f"({card['steps']} steps, loss {card['first_loss']:.4f} → {card['final_loss']:.4f}, {card['seconds']} s)")


@click.command("convert")
@click.argument("checkpoint", type=existing_path("file"))
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path), help="OUT.safetensors")
@click.option("--base", type=existing_path("dir"), default=None,
              help="diffusers folder of the same architecture: needed for original-layout UNet keys; "
                   "checks missing, unexpected and wrongly shaped keys")
@click.option("--trust-pickle", is_flag=True,
              help="unpickle a .pt/.ckpt/.bin holding more than tensors — this runs any code the file names: "
                   "only for files from a source you trust")
@friendly_errors
def convert_cmd(checkpoint: Path, out_file: Path, base: Path | None, trust_pickle: bool) -> None:
    """Turn a released checkpoint (.pt/.ckpt/.bin/.safetensors; bare, Lightning- or otherwise-wrapped;
    diffusers or original LDM layout, whole or partial UNet) into safetensors that spqr-fast loads,
    with OUT.card.json naming the source by its SHA-256."""
    from ..convert import card_path, convert_checkpoint

    if trust_pickle:
        stderr_console().print("[yellow]--trust-pickle[/]: unpickling runs code named by the file; do this only for "
                         "checkpoints from a source you trust")
    card = convert_checkpoint(checkpoint, out_file, base=base, trust_pickle=trust_pickle)
    notes = []
    if card["unwrapped_from"]:
        notes.append(f"taken out of {' / '.join(card['unwrapped_from'])}")
    if card["ignored_entries"]:
        notes.append(f"{len(card['ignored_entries'])} non-tensor entries left out ({', '.join(card['ignored_entries'][:3])})")
    if card["source_layout"] == "ldm_unet":
        notes.append("original-layout UNet keys renamed to diffusers'")
    if card["left_out_keys"]["count"]:
        notes.append(f"{card['left_out_keys']['count']} keys that name no UNet block left out "
                     f"(e.g. {card['left_out_keys']['examples'][0]})")
    check = card["base_check"]
    if check is not None:
        notes.append(f"partial: {check['missing']} UNet tensors missing, taken from the base when loaded"
                     if check["partial"] else "complete against the base UNet")
    for note in notes:
        stderr_console().print(f"  {shown(note)}")
    load = ", ".join(f"{k}: {v}" for k, v in card["load_with"].items())
    click.echo(f"wrote {out_file} ({card['tensors']} tensors) and {card_path(out_file)} — evaluate it as "
               f"model: {{{load}}}")


@click.command("erase")
@model_options()
@click.option("--method", required=True, type=click.Choice(["uce", "esd"]))
@click.option("--concept", "concepts", multiple=True, required=True, help="text to erase (repeat for several)")
@click.option("--target", "targets", multiple=True, help="UCE: what each concept maps to (default: the empty prompt)")
@click.option("--preserve", multiple=True, help="UCE: concepts to keep unchanged (repeat)")
@click.option("--lamb", type=FiniteFloat(0), default=0.1, show_default=True, help="UCE: weight of staying close to W")
@click.option("--preserve-scale", type=FiniteFloat(0), default=1.0, show_default=True)
@click.option("--train", type=click.Choice(["xattn", "noxattn"]), default="xattn", show_default=True,
              help="ESD: ESD-x (cross-attention) or ESD-u (the rest)")
@click.option("--iterations", type=int, default=1000, show_default=True)
@click.option("--lr", type=FiniteFloat(0, 1, low_open=True), default=1e-5, show_default=True)
@click.option("--negative-guidance", type=FiniteFloat(0), default=1.0, show_default=True)
@click.option("--ddim-steps", type=int, default=50, show_default=True)
@click.option("--resolution", type=int, default=None, help="ESD sampling size (default: the UNet's native)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path), help="OUT.safetensors")
@friendly_errors
def erase_cmd(source, method: str, concepts, targets, preserve, lamb: float,
              preserve_scale: float, train: str, iterations: int, lr: float, negative_guidance: float, ddim_steps: int,
              resolution: int | None, seed: int, device: str, out_file: Path) -> None:
    """Erase a concept with UCE (closed-form cross-attention edit) or ESD (negative-guidance fine-tune);
    writes the changed UNet tensors, loadable as `model: {path: OUT, base: MODEL, allow_missing_keys: true}`."""
    from ..erasure.esd import EsdSettings
    from ..erasure.run import erase
    from ..erasure.uce import UceSettings
    from ..models import pick_device

    if targets and len(targets) != len(concepts):
        raise SpqrError("give one --target per --concept, or none (erase to the empty prompt)")
    card = erase(source, method, list(concepts), out_file, preserve=list(preserve) or None, targets=list(targets) or None,
                 uce=UceSettings(preserve_scale=preserve_scale, lamb=lamb),
                 esd=EsdSettings(train=train, iterations=iterations, lr=lr, negative_guidance=negative_guidance,
                                 ddim_steps=ddim_steps, seed=seed),
                 device=pick_device(device), resolution=resolution, console=stderr_console())
    click.echo(f"wrote {out_file} ({card['changed_tensors']} UNet tensors) and its card")


@click.command("generate")
@model_options(lora=True)
@click.option("--prompts", "prompts_path", required=True, type=existing_path("file"),
              help="prompt file (I2P/ViSU/CSV/JSONL/JSON/TXT)")
@prompt_file_options("--prompts-format")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["auto", "torch", "ort", "tensorrt"]), default="auto", show_default=True)
@click.option("--steps", type=int, default=50, show_default=True)
@click.option("--guidance", type=FiniteFloat(0, 100), default=7.5, show_default=True)
@click.option("--size", type=int, default=512, show_default=True)
@click.option("--samples", type=int, default=1, show_default=True, help="images per prompt")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@threads_option
@friendly_errors
def generate_cmd(source, prompts_path: Path, prompt_options: dict, out_dir: Path, backend: str, steps: int,
                 guidance: float, size: int, samples: int, batch_size: int, seed: int, device: str,
                 threads: int | None) -> None:
    """Generate images for a prompt file (per-image seeds, resumable, content-addressed)."""
    from pydantic import ValidationError

    from ..runtime import apply_threads

    apply_threads(threads)

    from ..config import BackendConfig, GenerationConfig, PromptSet
    from ..errors import ConfigError
    from ..generate import generate_images
    from ..prompts import load_prompt_set

    try:
        gen = GenerationConfig(steps=steps, guidance_scale=guidance, height=size, width=size,
                               samples_per_prompt=samples, batch_size=batch_size, device=device)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"generate: --{first['loc'][0]}: {first['msg']}") from None
    try:
        prompt_set = PromptSet(path=str(prompts_path), **prompt_options)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"generate: --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    from ..library_warnings import LOG, warnings_to_log
    from ..safe_text import shown
    from ..store import prepare_output_dir

    console = stderr_console()
    prompts = load_prompt_set(prompt_set, warn=lambda line: console.print(f"warning: {shown(line)}"))
    prepare_output_dir(out_dir)
    with warnings_to_log(out_dir) as library_warnings:
        generate_images(source, prompts, gen, BackendConfig(kind=backend), out_dir, seed=seed, console=console)
    if library_warnings:
        console.print(f"{len(library_warnings)} library warning(s) logged to {out_dir / LOG}")


@click.command("export")
@model_options(lora=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--opset", type=int, default=None)
@click.option("--engines", "build_engines", is_flag=True, help="also build TensorRT engines (GPU machine)")
@click.option("--attention", type=click.Choice(["fused", "plain"]), default="fused", show_default=True,
              help="fused: ONNX Runtime's MultiHeadAttention op (faster; ORT only). --engines exports plain")
@click.option("--height", type=int, default=512, show_default=True, help="image size the engines are built for")
@click.option("--width", type=int, default=512, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@friendly_errors
def export_cmd(source, precision: str, opset, build_engines: bool, attention: str, height: int,
               width: int, out_dir: Path) -> None:
    """Fuse a LoRA and export text encoder, UNet and VAE decoder through Optimum to ONNX."""
    from ..export.cache import ArtefactCache
    from ..export.onnx_export import export_onnx, onnx_key_inputs
    from ..keys import FileHasher, source_hash

    src = source
    device = "cuda" if precision == "fp16" or build_engines else "cpu"
    attention = "plain" if build_engines else attention  # TensorRT parses standard ONNX ops only
    from ..library_warnings import LOG, warnings_to_log

    with warnings_to_log(out_dir) as library_warnings:
        exported = export_onnx(src, out_dir, precision=precision, opset=opset, device=device, attention=attention)
    if library_warnings:
        click.echo(f"{len(library_warnings)} exporter warning(s) logged to {out_dir / LOG}")
    cache = ArtefactCache(out_dir.parent)
    cache.seal(out_dir, onnx_key_inputs(source_hash(src, FileHasher(None)), precision, opset, attention),
               {"source": src.model_dump(), "attention_exported": exported})
    click.echo(f"wrote {out_dir} (loads in optimum.onnxruntime.ORTStableDiffusionPipeline and spqr-fast)")
    if build_engines:
        from ..backends.ort_backend import PipelineInfo
        from ..backends.tensorrt_backend import ENGINE_COMPONENTS, build_component_engine, pipeline_recipe

        recipe = pipeline_recipe(PipelineInfo(out_dir), height, width)
        for component in ENGINE_COMPONENTS:
            target = out_dir / "engines" / f"{component}.engine"
            build_component_engine(out_dir, component, recipe, precision, target)
            click.echo(f"built {target} (recipe {recipe['family']})")
