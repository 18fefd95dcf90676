"""The command line. It only parses arguments and calls the stage that does the work;
user-fixable errors (SpqrError) become one line on stderr and a non-zero exit."""

from __future__ import annotations

import errno
import functools
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from .errors import SpqrError, as_disk_error


def _console() -> Console:
    return Console(stderr=True)


def _print_table(title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    """A right-aligned Rich table of benchmark rows on stdout."""
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    _stdout_console().print(table)


def _stdout_console() -> Console:
    """Tables on stdout; when piped, wide enough not to truncate columns."""
    return Console() if sys.stdout.isatty() else Console(width=180)


def friendly_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpqrError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except Exception as exc:  # noqa: BLE001 - a full disk or a read-only folder is not a bug
            err = as_disk_error(exc)
            if err is None:
                raise
            where = f" writing '{err.filename}'" if err.filename else ""
            fix = ("free space (or choose another --out) and re-run: finished work is kept and the run resumes"
                   if err.errno in (errno.ENOSPC, errno.EDQUOT) else
                   "fix the permissions (in Docker: --user $(id -u)) or choose another --out, then re-run")
            click.echo(f"error: {err.strerror}{where} — {fix}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished images and records are saved; re-run the same command to resume", err=True)
            sys.exit(130)

    return wrapper


def threads_option(fn):
    """--threads: intra-op CPU threads for PyTorch and ONNX Runtime (recorded in results)."""
    return click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="CPU threads for PyTorch and ONNX Runtime (default: the cores this process may use)")(fn)


def _load_average() -> float | None:
    import os

    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def model_options(*, lora: bool = False, required: bool = True):
    """--model, --base, --format, --allow-missing-keys (and --lora) of every command that loads a
    model; the command receives one `source` argument, a checked ModelSource."""
    def decorate(fn):
        @functools.wraps(fn)
        @friendly_errors
        def wrapper(*args, model_path, base, model_format, allow_missing_keys, lora_path=None, **kwargs):
            kwargs["source"] = _model_source(model_path, base, model_format, allow_missing_keys, lora_path)
            return fn(*args, **kwargs)

        options = [
            click.option("--model", "model_path", required=required, type=click.Path(path_type=Path),
                         help="diffusers folder, single-file checkpoint, or UNet state dict (with --base)"),
            click.option("--base", type=click.Path(path_type=Path), default=None,
                         help="base diffusers folder for a weights file (state dict or single file)"),
            click.option("--format", "model_format", default="auto", show_default=True,
                         type=click.Choice(["auto", "diffusers", "single_file", "unet_state_dict"]),
                         help="how --model is stored (auto: told from its keys)"),
            click.option("--allow-missing-keys", is_flag=True,
                         help="accept a UNet state dict holding only some layers (e.g. cross-attention)"),
        ]
        if lora:
            options.append(click.option("--lora", "lora_path", type=click.Path(path_type=Path), default=None,
                                        help="LoRA folder fused into the UNet first"))
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def _model_source(model_path: Path | None, base: Path | None, model_format: str, allow_missing_keys: bool,
                  lora: Path | None):
    """The ModelSource the options describe, every path checked to exist (None without --model)."""
    from .config import ModelSource

    for p, what in ((model_path, "--model"), (base, "--base"), (lora, "--lora")):
        if p is not None and not p.exists():
            raise SpqrError(f"{what} '{p}' does not exist — fix the path")
    if model_path is None:
        return None
    return ModelSource(path=str(model_path.resolve()), base=str(base.resolve()) if base else None,
                       format=model_format, allow_missing_keys=allow_missing_keys,
                       lora=str(lora.resolve()) if lora else None)


@click.group()
@click.version_option(package_name="spqr-fast")
def main() -> None:
    """spqr-fast: the SPQR benchmark for safety-aligned text-to-image models, before and after
    benign fine-tuning."""
    from .runtime import prepare_runtime

    prepare_runtime()


@main.command("eval")
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("spqr-out"), show_default=True,
              help="output folder (images, records, results.json, leaderboard.csv, report.html)")
@click.option("--backend", type=click.Choice(["auto", "torch", "ort", "tensorrt"]), default=None,
              help="override the config's backend.kind")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: one actor per GPU (or CPU worker) on a Ray cluster")
@click.option("--ray-address", default=None, help="Ray cluster address (default: start a local one)")
@click.option("--shard", default=None, help="i/n: generate and judge only slice i of n (merge with `report --merge`)")
@click.option("--wide", is_flag=True, help="every metric in the terminal table (the CSV and the report have them all)")
@click.option("--verbose", is_flag=True, help="show third-party library warnings (default: OUT/logs/library-warnings.log)")
@threads_option
@friendly_errors
def eval_cmd(config: Path | None, out_dir: Path, backend: str | None, executor: str, ray_address: str | None,
             shard: str | None, wide: bool, verbose: bool, threads: int | None) -> None:
    """Evaluate the cohort in CONFIG (no CONFIG: the embedded demo default)."""
    from .config import load_config
    from .store import prepare_output_dir

    console = _console()
    if config is None:
        from .world.project import write_world_project

        prepare_output_dir(out_dir)  # a file, or an unwritable folder, is named before the project is written

        console.print("[bold]no config given[/]: running the embedded default (the miniature trained world)")
        config = write_world_project(out_dir / "embedded-project")
    cfg = load_config(config)
    if backend is not None:
        cfg.backend.kind = backend  # type: ignore[assignment]
    if threads is not None:
        cfg.threads = threads
    from .evaluate import Evaluator
    from .report.formatting import fid_label
    from .report.writers import DEMO_NOTICE, leaderboard_table

    shard_spec = None
    if shard is not None:
        from .distributed.shards import parse_shard

        shard_spec = parse_shard(shard)
    from .library_warnings import LOG, warnings_to_log

    prepare_output_dir(out_dir)
    with warnings_to_log(out_dir, verbose) as library_warnings:
        results = Evaluator(cfg, out_dir, console).run(executor=executor, ray_address=ray_address, shard=shard_spec)
    if library_warnings:
        console.print(f"{len(library_warnings)} library warning(s) logged to {out_dir / LOG} (--verbose shows them)")
    if shard_spec is not None:
        return
    _stdout_console().print(leaderboard_table(results["models"], title=f"SPQR leaderboard — {cfg.name}", wide=wide,
                                              fid=fid_label(results)))
    for line in results["backend_fallbacks"]:
        console.print(f"[yellow]backend fallback[/]: {escape(line)}")
    for line in results["resolution_warnings"]:
        console.print(f"[yellow]not resolved[/]: {escape(line)}")
    for check in results.get("known_answers", []):
        mark = "[green]holds[/]" if check["holds"] else "[red]does not hold[/]"
        console.print(f"known answer {mark}: {escape(check['claim'])} — {escape(check['evidence'])}")
    if cfg.demo:
        console.print(f"[yellow]{DEMO_NOTICE}[/]")
    console.print(f"wrote {out_dir / 'results.json'}, {out_dir / 'leaderboard.csv'}, {out_dir / 'report.html'}")


@main.command("report")
@click.option("--merge", "shard_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="a shard output folder (repeat, or give several)")
@click.argument("more_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("spqr-out"), show_default=True)
@friendly_errors
def report_cmd(shard_dirs: tuple[Path, ...], more_dirs: tuple[Path, ...], out_dir: Path) -> None:
    """Merge `eval --shard i/n` outputs into one leaderboard (refuses shards of different configs)."""
    from .config import parse_config
    from .distributed.shards import merge_shards
    from .evaluate import Evaluator
    from .report.writers import leaderboard_table

    config = merge_shards(list(shard_dirs) + list(more_dirs), out_dir)
    cfg = parse_config(config, source="shard config")
    results = Evaluator(cfg, out_dir, _console()).run(require_complete=True)
    from .report.formatting import fid_label

    _stdout_console().print(leaderboard_table(results["models"], title=f"SPQR leaderboard — {cfg.name} (merged)",
                                              fid=fid_label(results)))


@main.command("finetune")
@model_options()
@click.option("--dataset", required=True, type=click.Path(path_type=Path), help="image folder with metadata.jsonl")
@click.option("--profile", required=True, type=click.Choice(["lite", "moderate", "standard"]))
@click.option("--epochs", type=int, default=None, help="default: lite 1, moderate 3, standard 10")
@click.option("--steps", type=int, default=None, help="optimizer steps (instead of --epochs)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--resume", is_flag=True, help="continue from the last checkpoint in --out")
@click.option("--lr", "learning_rate", type=float, default=1e-4, show_default=True)
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

    from .runtime import apply_threads

    apply_threads(threads)

    from .config import BftConfig
    from .errors import ConfigError
    from .finetune.trainer import finetune

    if not dataset.exists():
        raise SpqrError(f"--dataset '{dataset}' does not exist — fix the path")
    try:
        cfg = BftConfig(dataset=str(dataset.resolve()), **hp)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"finetune: {'.'.join(map(str, first['loc'])) or 'options'}: {first['msg']}") from None
    card = finetune(source, cfg, out_dir, resume=resume, console=_console())
    click.echo(f"wrote {out_dir / card['weights_file']} and bft_card.json "
               f"({card['steps']} steps, loss {card['first_loss']:.4f} → {card['final_loss']:.4f}, {card['seconds']} s)")


@main.command("convert")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", "out_file", required=True, type=click.Path(path_type=Path), help="OUT.safetensors")
@click.option("--base", type=click.Path(path_type=Path), default=None,
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
    from .convert import card_path, convert_checkpoint

    if base is not None and not base.exists():
        raise SpqrError(f"--base '{base}' does not exist — fix the path")
    if trust_pickle:
        _console().print("[yellow]--trust-pickle[/]: unpickling runs code named by the file; do this only for "
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
        _console().print(f"  {escape(note)}")
    load = ", ".join(f"{k}: {v}" for k, v in card["load_with"].items())
    click.echo(f"wrote {out_file} ({card['tensors']} tensors) and {card_path(out_file)} — evaluate it as "
               f"model: {{{load}}}")


@main.command("erase")
@model_options()
@click.option("--method", required=True, type=click.Choice(["uce", "esd"]))
@click.option("--concept", "concepts", multiple=True, required=True, help="text to erase (repeat for several)")
@click.option("--target", "targets", multiple=True, help="UCE: what each concept maps to (default: the empty prompt)")
@click.option("--preserve", multiple=True, help="UCE: concepts to keep unchanged (repeat)")
@click.option("--lamb", type=float, default=0.1, show_default=True, help="UCE: weight of staying close to W")
@click.option("--preserve-scale", type=float, default=1.0, show_default=True)
@click.option("--train", type=click.Choice(["xattn", "noxattn"]), default="xattn", show_default=True,
              help="ESD: ESD-x (cross-attention) or ESD-u (the rest)")
@click.option("--iterations", type=int, default=1000, show_default=True)
@click.option("--lr", type=float, default=1e-5, show_default=True)
@click.option("--negative-guidance", type=float, default=1.0, show_default=True)
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
    from .erasure.esd import EsdSettings
    from .erasure.run import erase
    from .erasure.uce import UceSettings
    from .models import pick_device

    if targets and len(targets) != len(concepts):
        raise SpqrError("give one --target per --concept, or none (erase to the empty prompt)")
    card = erase(source, method, list(concepts), out_file, preserve=list(preserve) or None, targets=list(targets) or None,
                 uce=UceSettings(preserve_scale=preserve_scale, lamb=lamb),
                 esd=EsdSettings(train=train, iterations=iterations, lr=lr, negative_guidance=negative_guidance,
                                 ddim_steps=ddim_steps, seed=seed),
                 device=pick_device(device), resolution=resolution, console=_console())
    click.echo(f"wrote {out_file} ({card['changed_tensors']} UNet tensors) and its card")


@main.command("bench")
@click.option("--preset", type=click.Choice(["tiny", "sd15", "blip-base"]), default="tiny", show_default=True,
              help="tiny: the demo models; sd15: Stable Diffusion 1.5's architecture (backends, finetune); "
                   "blip-base: BLIP-VQA base (vqa) — built from configs with random weights")
@click.option("--suite", type=click.Choice(["backends", "finetune", "vqa", "gpu"]), default="backends", show_default=True,
              help="gpu: the whole GPU proof (generation backends, parity, batching, BFT, judges, paper-scale "
                   "projection) on a CUDA machine")
@click.option("--backends", default="torch,ort,ort-plain", show_default=True,
              help="backends suite: torch,ort[,ort-plain][,tensorrt] (ort = fused attention)")
@click.option("--reps", type=int, default=None, help="timed UNet steps per backend (default: tiny 20, sd15 3)")
@click.option("--e2e-images", type=int, default=None, help="images for end-to-end images/s (default: tiny 8, sd15 0)")
@click.option("--e2e-steps", type=int, default=20, show_default=True)
@click.option("--profiles", default="lite,moderate,standard", show_default=True, help="finetune suite: BFT profiles")
@click.option("--steps", type=int, default=None, help="finetune suite: timed optimizer steps (tiny 20, sd15 2)")
@click.option("--batch", type=int, default=None, help="finetune suite: batch per step (tiny 16, sd15 1)")
@click.option("--latent", type=int, default=None, help="finetune suite: latent size (sd15 default 64 = 512 px)")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="gpu suite: also write gpu-bench.json and gpu-bench.md here")
@threads_option
@friendly_errors
def bench_cmd(preset: str, suite: str, backends: str, reps, e2e_images, e2e_steps: int, profiles: str, steps, batch,
              latent, device: str, as_json: bool, out_dir: Path | None, threads: int | None) -> None:
    """Measure side by side in one run: UNet step latency and images/s per backend (backends), or
    BFT steps/s and peak memory per profile (finetune)."""
    from .models import pick_device
    from .provenance import environment
    from .runtime import apply_threads

    thread_record = apply_threads(threads)
    if suite == "gpu":
        _bench_gpu(preset, reps, as_json, out_dir)
        return
    env = {**environment(), "threads": thread_record, "load_average": _load_average()}
    if env["load_average"] is not None and env["load_average"] > 0.5 * thread_record["available_cores"]:
        _console().print(f"[yellow]warning[/]: the machine is busy (1-minute load {env['load_average']:.1f} on "
                         f"{thread_record['available_cores']} cores): timings will be slow and noisy — "
                         "measure on an idle machine")
    if (preset == "blip-base") != (suite == "vqa" and preset != "tiny"):
        raise SpqrError(f"--preset {preset} does not apply to --suite {suite} (vqa: tiny|blip-base; others: tiny|sd15)")
    if suite == "vqa":
        from .bench.vqa_bench import run_vqa_bench

        result = run_vqa_bench(preset, images=8, questions=16, reps=reps or (20 if preset == "tiny" else 3),
                               cache_root=None, console=_console())
        if as_json:
            click.echo(json.dumps({"suite": suite, "machine": env, **result}, indent=1))
            return
        _print_table(f"VQA judge — {preset} ({result['image_size']} px), {env['platform']}",
                     ("backend", "vision images/s", "× torch", "answer questions/s", "× torch"),
                     [[r["backend"], f"unavailable: {r['error']}", "", "", ""] if "error" in r else
                      [r["backend"], f"{r['vision_images_per_s']:.1f}", f"{r['vision_speedup_vs_torch']:.2f}",
                       f"{r['answer_questions_per_s']:.1f}", f"{r['answer_speedup_vs_torch']:.2f}"]
                      for r in result["rows"]])
        return
    if suite == "backends":
        from .bench.backends_bench import run_backends_bench

        chosen = [b.strip() for b in backends.split(",") if b.strip()]
        bad = [b for b in chosen if b not in ("torch", "ort", "ort-plain", "tensorrt")]
        if bad or "torch" not in chosen:
            raise SpqrError("--backends takes torch,ort,ort-plain,tensorrt and must include torch (the reference)")
        result = run_backends_bench(preset, chosen, reps=reps or (20 if preset == "tiny" else 3),
                                    e2e_images=8 if e2e_images is None and preset == "tiny" else (e2e_images or 0),
                                    e2e_steps=e2e_steps, cache_root=None, console=_console())
        if as_json:
            click.echo(json.dumps({"suite": suite, "machine": env, **result}, indent=1))
            return
        _print_table(f"backends — {preset} ({result['image_size']} px), {env['platform']}",
                     ("backend", "UNet step s (batch 2)", "× torch", "images/s", "× torch"),
                     [[r["backend"], f"{r['unet_step_s']:.4f}", f"{r['unet_speedup_vs_torch']:.2f}",
                       f"{r.get('e2e_images_per_s', float('nan')):.2f}",
                       f"{r.get('e2e_speedup_vs_torch', float('nan')):.2f}"] for r in result["rows"]])
        for name, ops in (result.get("ort_cpu_unet_profile") or {}).items():
            prof = ", ".join(f"{p['op']} {p['share']:.0%}" for p in ops)
            _stdout_console().print(f"{name}: ONNX Runtime CPU time per operator type in one UNet step: {prof}")
        return

    from .bench.finetune_bench import PROFILES, run_finetune_bench

    chosen = [p.strip() for p in profiles.split(",") if p.strip()]
    bad = [p for p in chosen if p not in PROFILES]
    if bad:
        raise SpqrError(f"unknown profile '{bad[0]}' — choose from {', '.join(PROFILES)}")
    steps = steps or (20 if preset == "tiny" else 2)
    batch = batch or (16 if preset == "tiny" else 1)
    rows = run_finetune_bench(preset, chosen, steps, batch, latent, pick_device(device))
    if as_json:
        click.echo(json.dumps({"suite": suite, "machine": env, "rows": rows}, indent=1))
        return
    _print_table(f"BFT benchmark — {preset}, {env['platform']}",
                 ("profile", "trainable params", "batch", "latent", "s/step", "steps/s", "peak RSS MiB", "RSS after load MiB"),
                 [[r["profile"], f"failed: {r['error']}", "", "", "", "", "", ""] if "error" in r else
                  [r["profile"], f"{r['trainable_params']:,}", str(r["batch"]), str(r["latent"]),
                   f"{r['seconds_per_step']:.3f}", f"{r['steps_per_s']:.2f}", f"{r['peak_rss_mib']:.0f}",
                   f"{r['rss_after_load_mib']:.0f}"] for r in rows])


def _bench_gpu(preset: str, reps: int | None, as_json: bool, out_dir: Path | None) -> None:
    from .bench.gpu_bench import GpuBenchPlan, require_cuda, run_gpu_bench, to_markdown

    if preset not in ("sd15", "tiny"):
        raise SpqrError(f"--preset {preset} does not apply to --suite gpu (sd15 or tiny)")
    require_cuda()
    result = run_gpu_bench(GpuBenchPlan(preset=preset, reps=reps or 2), _console())
    markdown = to_markdown(result)
    if out_dir is not None:
        from .store import atomic_write_bytes

        atomic_write_bytes(out_dir / "gpu-bench.json", json.dumps(result, indent=1, default=str).encode())
        atomic_write_bytes(out_dir / "gpu-bench.md", markdown.encode())
    click.echo(json.dumps(result, indent=1, default=str) if as_json else markdown)


@main.command("export")
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
    from .export.cache import ArtefactCache
    from .export.onnx_export import export_onnx, onnx_key_inputs
    from .models import FileHasher, source_hash

    src = source
    device = "cuda" if precision == "fp16" or build_engines else "cpu"
    attention = "plain" if build_engines else attention  # TensorRT parses standard ONNX ops only
    from .library_warnings import LOG, warnings_to_log

    with warnings_to_log(out_dir) as library_warnings:
        exported = export_onnx(src, out_dir, precision=precision, opset=opset, device=device, attention=attention)
    if library_warnings:
        click.echo(f"{len(library_warnings)} exporter warning(s) logged to {out_dir / LOG}")
    cache = ArtefactCache(out_dir.parent)
    cache.seal(out_dir, onnx_key_inputs(source_hash(src, FileHasher(None)), precision, opset, attention),
               {"source": src.model_dump(), "attention_exported": exported})
    click.echo(f"wrote {out_dir} (loads in optimum.onnxruntime.ORTStableDiffusionPipeline and spqr-fast)")
    if build_engines:
        import json as _json

        from .backends.ort_backend import OrtComponents
        from .backends.tensorrt_backend import build_engine, recipe_for

        unet_cfg = _json.loads((out_dir / "unet" / "config.json").read_text())
        info = OrtComponents(out_dir, ["CPUExecutionProvider"], sessions=False)
        recipe = recipe_for(unet_cfg, unet_cfg["cross_attention_dim"], height, width, info.vae_scale_factor)
        for component in ("text_encoder", "unet", "vae_decoder"):
            target = out_dir / "engines" / f"{component}.engine"
            build_engine(out_dir / component / "model.onnx", target, recipe["profiles"][component],
                         fp16=precision == "fp16", workspace_gib=recipe.get("workspace_gib", 4))
            click.echo(f"built {target} (recipe {recipe['family']})")


@main.group("engines")
def engines_group() -> None:
    """The artefact cache of exported graphs and TensorRT engines."""


@engines_group.command("list")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="default: $SPQR_ENGINE_CACHE or engines/cache")
@click.option("--json", "as_json", is_flag=True)
def engines_list(root: Path | None, as_json: bool) -> None:
    from rich.table import Table

    from .export.cache import ArtefactCache

    cache = ArtefactCache(root)
    entries = cache.entries()
    if as_json:
        click.echo(json.dumps(entries, indent=1, default=str))
        return
    table = Table(title=f"artefacts in {cache.root}")
    for col in ("kind", "key", "model", "component", "precision", "built", "MiB", "valid"):
        table.add_column(col, overflow="fold")
    for e in entries:
        inputs = e.get("inputs", {})
        component = inputs.get("component") or ("pipeline" if "parts" in inputs else "")
        table.add_row(e["kind"], e["key"][:12], e["model"], str(component), str(inputs.get("precision", "")),
                      e["built_at"][:16].replace("T", " "), f"{e['bytes'] / 2**20:.1f}",
                      "yes" if e["valid"] else f"no: {e['problem']}")
    _stdout_console().print(table)


@engines_group.command("clear")
@click.option("--root", type=click.Path(path_type=Path), default=None)
def engines_clear(root: Path | None) -> None:
    from .export.cache import ArtefactCache

    cache = ArtefactCache(root)
    removed, kept = cache.clear()
    click.echo(f"removed {removed} artefact(s) from {cache.root}")
    if kept:
        shown = ", ".join(str(p.relative_to(cache.root)) for p in kept[:5])
        click.echo(f"left {len(kept)} path(s) that are not cache artefacts untouched: {shown}"
                   f"{' …' if len(kept) > 5 else ''}")


@main.command("generate")
@model_options(lora=True)
@click.option("--prompts", "prompts_path", required=True, type=click.Path(path_type=Path),
              help="prompt file (I2P/ViSU/CSV/JSONL/JSON/TXT)")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["auto", "torch", "ort", "tensorrt"]), default="auto", show_default=True)
@click.option("--steps", type=int, default=50, show_default=True)
@click.option("--guidance", type=float, default=7.5, show_default=True)
@click.option("--size", type=int, default=512, show_default=True)
@click.option("--samples", type=int, default=1, show_default=True, help="images per prompt")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@threads_option
@friendly_errors
def generate_cmd(source, prompts_path: Path, out_dir: Path, backend: str, steps: int, guidance: float, size: int,
                 samples: int, batch_size: int, seed: int, device: str, threads: int | None) -> None:
    """Generate images for a prompt file (per-image seeds, resumable, content-addressed)."""
    from pydantic import ValidationError

    from .runtime import apply_threads

    apply_threads(threads)

    from .config import BackendConfig, GenerationConfig, PromptSet
    from .errors import ConfigError
    from .generate import generate_images
    from .prompts import load_prompt_set

    if not prompts_path.exists():
        raise SpqrError(f"--prompts '{prompts_path}' does not exist — fix the path")
    try:
        gen = GenerationConfig(steps=steps, guidance_scale=guidance, height=size, width=size,
                               samples_per_prompt=samples, batch_size=batch_size, device=device)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"generate: --{first['loc'][0]}: {first['msg']}") from None
    src = source
    prompts = load_prompt_set(PromptSet(path=str(prompts_path)))
    from .library_warnings import LOG, warnings_to_log
    from .store import prepare_output_dir

    console = _console()
    prepare_output_dir(out_dir)
    with warnings_to_log(out_dir) as library_warnings:
        generate_images(src, prompts, gen, BackendConfig(kind=backend), out_dir, seed=seed, console=console)
    if library_warnings:
        console.print(f"{len(library_warnings)} library warning(s) logged to {out_dir / LOG}")


@main.group("judge")
def judge_group() -> None:
    """Run one judge on its own."""


@judge_group.command("vqa")
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="local BlipForQuestionAnswering folder")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path),
              help="folder of images named by the question set's caption ids (e.g. u00.png)")
@click.option("--questions", required=True, type=click.Path(path_type=Path), help="TIFA-style question file")
@click.option("--backend", type=click.Choice(["auto", "torch", "ort"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def judge_vqa_cmd(model_path: Path, images_dir: Path, questions: Path, backend: str, as_json: bool) -> None:
    """TIFA-style VQA scores for a folder of images."""
    from rich.table import Table

    from .export.cache import ArtefactCache
    from .judges.vqa_cli import score_folder
    from .models import FileHasher

    console = _console()
    result = score_folder(model_path, images_dir, questions, backend=backend, cache=ArtefactCache(None),
                          hasher=FileHasher(None), console=console)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    table = Table(title=f"VQA judge — {result['n_images']} images, {result['n_questions']} questions "
                        f"(backend {result['backend']['chosen']})")
    table.add_column("category")
    table.add_column("accuracy", justify="right")
    table.add_column("questions", justify="right")
    for cat, v in result["categories"].items():
        table.add_row(cat, f"{v['accuracy']:.3f}", str(v["n"]))
    table.add_row("[bold]TIFA (mean per image)[/]", f"{result['tifa']:.3f}", "")
    table.add_row("soft score", f"{result['soft']:.3f}", "")
    table.add_row("yes-rate on mismatched pairs", "—" if result["yes_bias"] is None else f"{result['yes_bias']:.3f}", "")
    _stdout_console().print(table)


def _existing(kind: str):
    return click.Path(path_type=Path, exists=True, file_okay=kind != "dir", dir_okay=kind != "file")


@main.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--from", "base", type=_existing("dir"), default=None,
              help="a real base model (diffusers folder): write a config for it instead of the miniature world")
@click.option("--aligned", multiple=True, type=_existing("any"),
              help="an aligned model to compare (folder, or UNet weights on the --from base); repeatable")
@click.option("--clip", type=_existing("dir"), default=None, help="local CLIP folder (CLIPScore)")
@click.option("--inception", type=_existing("file"), default=None, help="FID Inception weights file")
@click.option("--harmful", type=_existing("file"), default=None, help="harmful prompt file (ViSU JSON, I2P CSV, …)")
@click.option("--utility", type=_existing("file"), default=None, help="utility prompt file (COCO-style captions)")
@click.option("--reference", type=_existing("dir"), default=None, help="reference images for FID")
@click.option("--bft-dataset", type=_existing("dir"), default=None, help="benign fine-tuning images + metadata.jsonl")
@click.option("--vqa", type=_existing("dir"), default=None, help="local BLIP VQA folder (optional)")
@click.option("--questions", type=_existing("file"), default=None, help="TIFA-style questions file (with --vqa)")
@friendly_errors
def init_cmd(directory: Path, base: Path | None, aligned: tuple[Path, ...], **given) -> None:
    """Write an editable project: the embedded default (models, judges, prompts) — or, with
    --from, a config for real models with the paper's protocol."""
    if base is None:
        if aligned or any(given.values()):
            raise SpqrError("--aligned and the judge/prompt paths go with --from MODEL_DIR (a real base model)")
        from .world.project import write_world_project

        if directory.exists() and any(directory.iterdir()) and not (directory / "spqr.yaml").exists():
            raise SpqrError(f"'{directory}' exists and is not empty — choose a new folder")
        path = write_world_project(directory)
        click.echo(f"wrote {path} — run `spqr-fast eval {path}`; edit the paths in it to evaluate real models "
                   "(README: Evaluating your models)")
        return
    from .real_project import write_real_project

    path = write_real_project(directory, base, list(aligned), {k: (str(v) if v else None) for k, v in given.items()})
    click.echo(f"wrote {path} — check it with `spqr-fast doctor {path}`, then `spqr-fast eval {path}`")


@main.command("score")
@click.argument("metrics_csv", type=click.Path(path_type=Path))
@click.option("--clip-ceiling", type=float, default=0.300, show_default=True, help="CLIPScore that gives P = 1")
@click.option("--epsilon", type=float, default=0.05, show_default=True, help="Q's floor and ceiling margin")
@click.option("--fid-bounds", type=(float, float), default=None, help="fixed [best worst] FID instead of the cohort's")
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout instead of a table")
@friendly_errors
def score_cmd(metrics_csv: Path, clip_ceiling: float, epsilon: float, fid_bounds, as_json: bool) -> None:
    """Score a metrics table (columns model,h_before,h_after,clip_score,fid — or model,S,P,Q,R as a
    published table gives them) — no models needed."""
    from .scoring.table import read_metrics_csv, score_table

    rows = score_table(read_metrics_csv(metrics_csv), clip_ceiling=clip_ceiling, epsilon=epsilon, fid_bounds=fid_bounds)
    if as_json:
        click.echo(json.dumps([{k: r[k] for k in ("model", "S", "P", "Q", "R", "SPQR")} for r in rows], indent=1))
        return
    from .report.writers import leaderboard_table

    _stdout_console().print(leaderboard_table(rows))


@main.command("plan-size")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--width", type=float, default=1.0, show_default=True,
              help="target width of Δh's interval, in points (R moves ~0.25 per point near 0)")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--h-before", type=float, default=None, help="without a pilot run: expected h before BFT (%)")
@click.option("--h-after", type=float, default=None, help="without a pilot run: expected h after BFT (%)")
@click.option("--samples", type=int, default=1, show_default=True, help="without a pilot run: images per prompt")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def plan_size_cmd(run_dir: Path | None, width: float, confidence: float, h_before, h_after, samples: int,
                  as_json: bool) -> None:
    """How many harmful prompts make Δh's interval WIDTH points wide: from a pilot eval's RUN_DIR
    (per-prompt changes measured), or from expected rates (--h-before/--h-after)."""
    from .planning import plan_from_pilot, plan_from_rates

    if not 0 < confidence < 1 or width <= 0:
        raise SpqrError("--confidence must lie in (0, 1) and --width be positive")
    if run_dir is None:
        if h_before is None or h_after is None:
            raise SpqrError("give a pilot run's output folder, or --h-before and --h-after")
        rows = [{"model": "(planned)", **plan_from_rates(h_before, h_after, samples, width, confidence)}]
    else:
        rows = plan_from_pilot(run_dir, width, confidence)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    _print_table(f"harmful prompts for a {width:g}-point {confidence:.0%} interval of Δh",
                 ("model", "pilot prompts", "Δh", "per-prompt sd", "pilot width", "prompts needed"),
                 [[r["model"], str(r.get("pilot_prompts", "—")),
                   "—" if r.get("delta_h") is None else f"{r['delta_h']:+.2f}", f"{r['per_prompt_sd']:.2f}",
                   "—" if r.get("pilot_width") is None else f"{r['pilot_width']:.2f}",
                   "— (no change: use --h-before/--h-after)" if r["prompts_needed"] is None
                   else str(r["prompts_needed"])] for r in rows])


@main.command("doctor")
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("spqr-out"), show_default=True,
              help="where the eval will write (for the disk-space check)")
@click.option("--no-timing", is_flag=True, help="skip the two-step timing that projects the run time")
@friendly_errors
def doctor_cmd(config: Path | None, out_dir: Path, no_timing: bool) -> None:
    """What spqr-fast sees: versions, ONNX Runtime providers, GPU; with CONFIG, every configured
    file checked for its role, disk space for the planned images, and a projected run time."""
    from .doctor import run_doctor

    ok = run_doctor(_stdout_console(), config, out=out_dir, timing=not no_timing)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
