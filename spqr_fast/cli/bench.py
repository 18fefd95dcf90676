"""`spqr-fast bench`: side-by-side measurements (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import SpqrError
from .common import friendly_errors, load_average, print_table, stderr_console, stdout_console, threads_option


@click.command("bench")
@click.option("--preset", type=click.Choice(["tiny", "sd15", "blip-base"]), default="tiny", show_default=True,
              help="tiny: the demo models; sd15: Stable Diffusion 1.5's architecture (backends, finetune); "
                   "blip-base: BLIP-VQA base (vqa) — built from configs with random weights")
@click.option("--suite", type=click.Choice(["backends", "finetune", "vqa", "gpu", "scale", "audit"]),
              default="backends",
              show_default=True,
              help="gpu: the whole GPU proof (generation backends, parity, batching, BFT, judges, paper-scale "
                   "projection) on a CUDA machine; scale: the evaluator's own work around the networks at growing "
                   "sizes (no network runs); audit: images and seconds to an audit's decision vs a full eval")
@click.option("--images", "scale_images", type=click.IntRange(min=10), multiple=True,
              help="scale suite: images per size (repeat; default 1000, 10000, 100000)")
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
              help="gpu suite: also write gpu-bench.json and gpu-bench.md here; scale suite: its work folder "
                   "(default: a temporary one, removed after)")
@threads_option
@friendly_errors
def bench_cmd(preset: str, suite: str, scale_images: tuple[int, ...], backends: str, reps, e2e_images,
              e2e_steps: int, profiles: str, steps, batch, latent, device: str, as_json: bool, out_dir: Path | None,
              threads: int | None) -> None:
    """Measure side by side in one run: UNet step latency and images/s per backend (backends), or
    BFT steps/s and peak memory per profile (finetune)."""
    from ..models import pick_device
    from ..provenance import environment
    from ..runtime import apply_threads

    thread_settings = apply_threads(threads)
    if suite == "gpu":
        _bench_gpu(preset, reps, as_json, out_dir)
        return
    env = {**environment(), "threads": thread_settings.record(), "load_average": load_average()}
    if env["load_average"] is not None and env["load_average"] > 0.5 * thread_settings.available_cores:
        stderr_console().print(f"[yellow]warning[/]: the machine is busy (1-minute load {env['load_average']:.1f} on "
                         f"{thread_settings.available_cores} cores): timings will be slow and noisy — "
                         "measure on an idle machine")
    if suite == "audit":
        _bench_audit(out_dir, as_json, env)
        return
    if suite == "scale":
        _bench_scale(list(scale_images) or [1000, 10000, 100000], out_dir, as_json, env)
        return
    if (preset == "blip-base") != (suite == "vqa" and preset != "tiny"):
        raise SpqrError(f"--preset {preset} does not apply to --suite {suite} (vqa: tiny|blip-base; others: tiny|sd15)")
    if suite == "vqa":
        from ..bench.vqa_bench import run_vqa_bench

        result = run_vqa_bench(preset, images=8, questions=16, reps=reps or (20 if preset == "tiny" else 3),
                               cache_root=None, console=stderr_console(), threads=thread_settings.used)
        if as_json:
            click.echo(json.dumps({"suite": suite, "machine": env, **result}, indent=1))
            return
        print_table(f"VQA judge — {preset} ({result['image_size']} px), {env['platform']}",
                     ("backend", "vision images/s", "× torch", "answer questions/s", "× torch"),
                     [[r["backend"], f"unavailable: {r['error']}", "", "", ""] if "error" in r else
                      [r["backend"], f"{r['vision_images_per_s']:.1f}", f"{r['vision_speedup_vs_torch']:.2f}",
                       f"{r['answer_questions_per_s']:.1f}", f"{r['answer_speedup_vs_torch']:.2f}"]
                      for r in result["rows"]])
        return
    if suite == "backends":
        from ..bench.backends_bench import run_backends_bench

        chosen = [b.strip() for b in backends.split(",") if b.strip()]
        bad = [b for b in chosen if b not in ("torch", "ort", "ort-plain", "tensorrt")]
        if bad or "torch" not in chosen:
            raise SpqrError("--backends takes torch,ort,ort-plain,tensorrt and must include torch (the reference)")
        result = run_backends_bench(preset, chosen, reps=reps or (20 if preset == "tiny" else 3),
                                    e2e_images=8 if e2e_images is None and preset == "tiny" else (e2e_images or 0),
                                    e2e_steps=e2e_steps, cache_root=None, console=stderr_console(),
                                    threads=thread_settings.used)
        if as_json:
            click.echo(json.dumps({"suite": suite, "machine": env, **result}, indent=1))
            return
        print_table(f"backends — {preset} ({result['image_size']} px), {env['platform']}",
                     ("backend", "UNet step s (batch 2)", "× torch", "images/s", "× torch"),
                     [[r["backend"], f"{r['unet_step_s']:.4f}", f"{r['unet_speedup_vs_torch']:.2f}",
                       f"{r.get('e2e_images_per_s', float('nan')):.2f}",
                       f"{r.get('e2e_speedup_vs_torch', float('nan')):.2f}"] for r in result["rows"]])
        for name, ops in (result.get("ort_cpu_unet_profile") or {}).items():
            prof = ", ".join(f"{p['op']} {p['share']:.0%}" for p in ops)
            stdout_console().print(f"{name}: ONNX Runtime CPU time per operator type in one UNet step: {prof}")
        return

    from ..bench.finetune_bench import PROFILES, run_finetune_bench

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
    print_table(f"BFT benchmark — {preset}, {env['platform']}",
                 ("profile", "trainable params", "batch", "latent", "s/step", "steps/s", "peak RSS MiB", "RSS after load MiB"),
                 [[r["profile"], f"failed: {r['error']}", "", "", "", "", "", ""] if "error" in r else
                  [r["profile"], f"{r['trainable_params']:,}", str(r["batch"]), str(r["latent"]),
                   f"{r['seconds_per_step']:.3f}", f"{r['steps_per_s']:.2f}", f"{r['peak_rss_mib']:.0f}",
                   f"{r['rss_after_load_mib']:.0f}"] for r in rows])


def _bench_scale(sizes: list[int], out_dir: Path | None, as_json: bool, env: dict) -> None:
    import tempfile

    from ..bench.scale_bench import run_scale_bench

    with tempfile.TemporaryDirectory(prefix="spqr-scale-") as tmp:
        result = run_scale_bench(sizes, out_dir or Path(tmp), compare_blas=True, console=stderr_console())
    if as_json:
        click.echo(json.dumps({"suite": "scale", "machine": env, **result}, indent=1))
        return
    phases = list(result["rows"][0]["seconds"])
    print_table(f"the evaluator's own work (no networks), {result['models']} models before/after BFT, "
                f"{result['feature_dim']}-d features, bootstrap {result['n_boot']}/{result['n_boot_fid']} — "
                f"{env['platform']}",
                ("images", *phases, "ms/image", "score, BLAS default", "peak RSS GiB", "report.html KiB"),
                [[f"{r['images']:,}", *(f"{r['seconds'][p]:.2f}" for p in phases), f"{r['ms_per_image']:.2f}",
                  f"{r['score_seconds_blas_default']:.2f}", f"{r['peak_rss_gib']:.2f}",
                  f"{r['report_html_bytes'] / 1024:.0f}"] for r in result["rows"]])


def _bench_gpu(preset: str, reps: int | None, as_json: bool, out_dir: Path | None) -> None:
    from ..bench.gpu_bench import GpuBenchPlan, require_cuda, run_gpu_bench, to_markdown

    if preset not in ("sd15", "tiny"):
        raise SpqrError(f"--preset {preset} does not apply to --suite gpu (sd15 or tiny)")
    require_cuda()
    result = run_gpu_bench(GpuBenchPlan(preset=preset, reps=reps or 2), stderr_console())
    markdown = to_markdown(result)
    if out_dir is not None:
        from ..store import atomic_write_bytes

        atomic_write_bytes(out_dir / "gpu-bench.json", json.dumps(result, indent=1, default=str).encode())
        atomic_write_bytes(out_dir / "gpu-bench.md", markdown.encode())
    click.echo(json.dumps(result, indent=1, default=str) if as_json else markdown)


def _bench_audit(out_dir: Path | None, as_json: bool, env: dict) -> None:
    import tempfile

    from ..bench.audit_bench import run_audit_bench

    with tempfile.TemporaryDirectory(prefix="spqr-audit-") as tmp:
        result = run_audit_bench(out_dir or Path(tmp), stderr_console())
    if as_json:
        click.echo(json.dumps({"suite": "audit", "machine": env, **result}, indent=1))
        return
    print_table(f"audit ({result['criteria']}, budget {result['budget']}, α {result['alpha']}) vs a full eval of the "
                f"same model — {env['platform']}",
                ("model", "verdict", "h (audit interval)", "h full eval", "audit images", "eval images", "× images",
                 "audit s", "eval s", "× time"),
                [[r["model"], r["verdict"], f"{r['estimate']:.1f} [{r['interval'][0]:.1f}, {r['interval'][1]:.1f}]",
                  f"{r['h_before_full_eval']:.1f}", str(r["audit_images"]), str(r["eval_images"]),
                  f"{r['image_ratio']:.2f}", f"{r['audit_seconds']:.1f}", f"{r['eval_seconds']:.1f}",
                  f"{r['time_ratio']:.2f}"] for r in result["rows"]])
