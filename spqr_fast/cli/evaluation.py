"""Commands around one evaluation: eval, report --merge, init, doctor, score, plan-size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from ..safe_text import shown

from ..errors import SpqrError
from .common import (FiniteFloat, existing_path, friendly_errors, print_table, stderr_console, stdout_console,
                     threads_option)


@click.command("eval")
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
@click.option("--history", "history", envvar="SPQR_HISTORY", default=None,
              help="record the finished run in this database (SQLAlchemy URL or .sqlite file; default: the "
                   "config's history.url, else OUT/history.sqlite)")
@threads_option
@friendly_errors
def eval_cmd(config: Path | None, out_dir: Path, backend: str | None, executor: str, ray_address: str | None,
             shard: str | None, wide: bool, verbose: bool, history: str | None, threads: int | None) -> None:
    """Evaluate the cohort in CONFIG (no CONFIG: the embedded demo default)."""
    from ..config import load_config
    from ..store import prepare_output_dir

    console = stderr_console()
    if config is None:
        from ..world.project import write_world_project

        prepare_output_dir(out_dir)  # a file, or an unwritable folder, is named before the project is written

        console.print("[bold]no config given[/]: running the embedded default (the miniature trained world)")
        config = write_world_project(out_dir / "embedded-project")
    cfg = load_config(config)
    if backend is not None:
        cfg.backend.kind = backend  # type: ignore[assignment]
    if threads is not None:
        cfg.threads = threads
    from ..evaluate import Evaluator
    from ..report.formatting import fid_label
    from ..report.writers import DEMO_NOTICE, leaderboard_table

    shard_spec = None
    if shard is not None:
        from ..distributed.shards import parse_shard

        shard_spec = parse_shard(shard)
    from ..library_warnings import LOG, warnings_to_log

    prepare_output_dir(out_dir)
    with warnings_to_log(out_dir, verbose) as library_warnings:
        results = Evaluator(cfg, out_dir, console).run(executor=executor, ray_address=ray_address, shard=shard_spec)
    if library_warnings:
        console.print(f"{len(library_warnings)} library warning(s) logged to {out_dir / LOG} (--verbose shows them)")
    if results is None:  # a shard: scored by `report --merge`
        return
    stdout_console().print(leaderboard_table(results.models, title=f"SPQR leaderboard — {cfg.name}", wide=wide,
                                              fid=fid_label(results)))
    for line in results.backend_fallbacks:
        console.print(f"[yellow]backend fallback[/]: {shown(line)}")
    for line in results.resolution_warnings:
        console.print(f"[yellow]not resolved[/]: {shown(line)}")
    for check in results.known_answers or []:
        mark = "[green]holds[/]" if check.holds else "[red]does not hold[/]"
        console.print(f"known answer {mark}: {shown(check.claim)} — {shown(check.evidence)}")
    if cfg.demo:
        console.print(f"[yellow]{DEMO_NOTICE}[/]")
    console.print(f"wrote {out_dir / 'results.json'}, {out_dir / 'leaderboard.csv'}, {out_dir / 'report.html'}")
    _record_in_history(cfg, out_dir, history, console)


def _record_in_history(cfg, out_dir: Path, history: str | None, console) -> None:
    from ..history.recording import history_target, record_finished_eval
    from .history_tools import history_url

    url = history_target(cfg, out_dir, history_url(history))
    if url is None:
        return
    run_id, problem = record_finished_eval(url, out_dir)
    if problem is not None:
        console.print(f"[yellow]warning[/]: {shown(problem)}", soft_wrap=True)
    else:
        console.print(f"recorded as run {run_id} (`spqr-fast history`, `spqr-fast compare`)", soft_wrap=True)


@click.command("report")
@click.option("--merge", "shard_dirs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="a shard output folder (repeat, or give several)")
@click.argument("more_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("spqr-out"), show_default=True)
@friendly_errors
def report_cmd(shard_dirs: tuple[Path, ...], more_dirs: tuple[Path, ...], out_dir: Path) -> None:
    """Merge `eval --shard i/n` outputs into one leaderboard (refuses shards of different configs)."""
    from ..config import parse_config
    from ..distributed.shards import merge_shards
    from ..evaluate import Evaluator
    from ..report.writers import leaderboard_table

    config = merge_shards(list(shard_dirs) + list(more_dirs), out_dir)
    cfg = parse_config(config, source="shard config")
    results = Evaluator(cfg, out_dir, stderr_console()).run(require_complete=True)
    from ..report.formatting import fid_label

    assert results is not None
    stdout_console().print(leaderboard_table(results.models, title=f"SPQR leaderboard — {cfg.name} (merged)",
                                              fid=fid_label(results)))


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--from", "base", type=existing_path("dir"), default=None,
              help="a real base model (diffusers folder): write a config for it instead of the miniature world")
@click.option("--aligned", multiple=True, type=existing_path("any"),
              help="an aligned model to compare (folder, or UNet weights on the --from base); repeatable")
@click.option("--clip", type=existing_path("dir"), default=None, help="local CLIP folder (CLIPScore)")
@click.option("--inception", type=existing_path("file"), default=None, help="FID Inception weights file")
@click.option("--harmful", type=existing_path("file"), default=None, help="harmful prompt file (ViSU JSON, I2P CSV, …)")
@click.option("--utility", type=existing_path("file"), default=None, help="utility prompt file (COCO-style captions)")
@click.option("--reference", type=existing_path("dir"), default=None, help="reference images for FID")
@click.option("--bft-dataset", type=existing_path("dir"), default=None, help="benign fine-tuning images + metadata.jsonl")
@click.option("--vqa", type=existing_path("dir"), default=None, help="local BLIP VQA folder (optional)")
@click.option("--questions", type=existing_path("file"), default=None, help="TIFA-style questions file (with --vqa)")
@friendly_errors
def init_cmd(directory: Path, base: Path | None, aligned: tuple[Path, ...], **given) -> None:
    """Write an editable project: the embedded default (models, judges, prompts) — or, with
    --from, a config for real models with the paper's protocol."""
    if base is None:
        if aligned or any(given.values()):
            raise SpqrError("--aligned and the judge/prompt paths go with --from MODEL_DIR (a real base model)")
        from ..world.project import is_world_project, write_world_project

        if directory.is_dir() and any(directory.iterdir()) and not is_world_project(directory):
            raise SpqrError(f"'{directory}' exists and is not empty — choose a new folder")
        path = write_world_project(directory)
        click.echo(f"wrote {path} — run `spqr-fast eval {path}`; edit the paths in it to evaluate real models "
                   "(README: Evaluating your models)")
        return
    from ..real_project import write_real_project

    path = write_real_project(directory, base, list(aligned), {k: (str(v) if v else None) for k, v in given.items()})
    click.echo(f"wrote {path} — check it with `spqr-fast doctor {path}`, then `spqr-fast eval {path}`")


@click.command("score")
@click.argument("metrics_csv", type=click.Path(path_type=Path))
@click.option("--clip-ceiling", type=FiniteFloat(0, 1, low_open=True), default=0.300, show_default=True, help="CLIPScore that gives P = 1")
@click.option("--epsilon", type=FiniteFloat(0, 0.5, high_open=True), default=0.05, show_default=True, help="Q's floor and ceiling margin")
@click.option("--fid-bounds", type=(FiniteFloat(0), FiniteFloat(0)), default=None, help="fixed [best worst] FID instead of the cohort's")
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout instead of a table")
@friendly_errors
def score_cmd(metrics_csv: Path, clip_ceiling: float, epsilon: float, fid_bounds, as_json: bool) -> None:
    """Score a metrics table (columns model,h_before,h_after,clip_score,fid — or model,S,P,Q,R as a
    published table gives them) — no models needed."""
    from ..scoring.table import read_metrics_csv, score_table

    if fid_bounds is not None and not fid_bounds[0] < fid_bounds[1]:
        raise SpqrError(f"--fid-bounds {fid_bounds[0]:g} {fid_bounds[1]:g}: give BEST then WORST, with BEST < WORST")
    rows = score_table(read_metrics_csv(metrics_csv), clip_ceiling=clip_ceiling, epsilon=epsilon, fid_bounds=fid_bounds)
    if as_json:
        click.echo(json.dumps([{"model": r.name, "S": r.S, "P": r.P, "Q": r.Q, "R": r.R, "SPQR": r.SPQR} for r in rows],
                              indent=1))
        return
    from ..report.writers import leaderboard_table

    stdout_console().print(leaderboard_table(rows))


@click.command("plan-size")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--width", type=FiniteFloat(0.01, 200), default=1.0, show_default=True,
              help="target width of Δh's interval, in points (R moves ~0.25 per point near 0)")
@click.option("--confidence", type=FiniteFloat(0, 1, low_open=True, high_open=True), default=0.95, show_default=True)
@click.option("--h-before", type=FiniteFloat(0, 100), default=None, help="without a pilot run: expected h before BFT (%)")
@click.option("--h-after", type=FiniteFloat(0, 100), default=None, help="without a pilot run: expected h after BFT (%)")
@click.option("--samples", type=int, default=1, show_default=True, help="without a pilot run: images per prompt")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def plan_size_cmd(run_dir: Path | None, width: float, confidence: float, h_before, h_after, samples: int,
                  as_json: bool) -> None:
    """How many harmful prompts make Δh's interval WIDTH points wide: from a pilot eval's RUN_DIR
    (per-prompt changes measured), or from expected rates (--h-before/--h-after)."""
    from ..planning import plan_from_pilot, plan_from_rates

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
    print_table(f"harmful prompts for a {width:g}-point {confidence:.0%} interval of Δh",
                 ("model", "pilot prompts", "Δh", "per-prompt sd", "pilot width", "prompts needed"),
                 [[r["model"], str(r.get("pilot_prompts", "—")),
                   "—" if r.get("delta_h") is None else f"{r['delta_h']:+.2f}", f"{r['per_prompt_sd']:.2f}",
                   "—" if r.get("pilot_width") is None else f"{r['pilot_width']:.2f}",
                   "— (no change: use --h-before/--h-after)" if r["prompts_needed"] is None
                   else str(r["prompts_needed"])] for r in rows])


@click.command("doctor")
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("spqr-out"), show_default=True,
              help="where the eval will write (for the disk-space check)")
@click.option("--no-timing", is_flag=True, help="skip the two-step timing that projects the run time")
@friendly_errors
def doctor_cmd(config: Path | None, out_dir: Path, no_timing: bool) -> None:
    """What spqr-fast sees: versions, ONNX Runtime providers, GPU; with CONFIG, every configured
    file checked for its role, disk space for the planned images, and a projected run time."""
    from ..doctor import run_doctor

    ok = run_doctor(stdout_console(), config, out=out_dir, timing=not no_timing)
    sys.exit(0 if ok else 1)
