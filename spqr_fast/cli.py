"""The command line. It only parses arguments and calls the stage that does the work;
user-fixable errors (SpqrError) become one line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from rich.console import Console

from .errors import SpqrError


def _console() -> Console:
    return Console(stderr=True)


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
        except KeyboardInterrupt:
            click.echo("interrupted: finished images and records are saved; re-run the same command to resume", err=True)
            sys.exit(130)

    return wrapper


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
@friendly_errors
def eval_cmd(config: Path | None, out_dir: Path) -> None:
    """Evaluate the cohort in CONFIG (no CONFIG: the embedded demo default)."""
    from .config import load_config
    console = _console()
    if config is None:
        from .demo.project import write_demo_project

        console.print("[bold]no config given[/]: running the embedded default (tiny demo models, built in code)")
        config = write_demo_project(out_dir / "embedded-project")
    cfg = load_config(config)
    from .evaluate import Evaluator
    from .report.writers import DEMO_NOTICE, leaderboard_table

    results = Evaluator(cfg, out_dir, console).run()
    _stdout_console().print(leaderboard_table(results["models"], title=f"SPQR leaderboard — {cfg.name}"))
    if cfg.demo:
        console.print(f"[yellow]{DEMO_NOTICE}[/]")
    console.print(f"wrote {out_dir / 'results.json'}, {out_dir / 'leaderboard.csv'}, {out_dir / 'report.html'}")


@main.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@friendly_errors
def init_cmd(directory: Path) -> None:
    """Write the embedded default as an editable project: DIR/spqr.yaml, models, prompts."""
    from .demo.project import write_demo_project
    if directory.exists() and any(directory.iterdir()) and not (directory / "spqr.yaml").exists():
        raise SpqrError(f"'{directory}' exists and is not empty — choose a new folder")
    path = write_demo_project(directory)
    click.echo(f"wrote {path} — run `spqr-fast eval {path}`; edit the paths in it to evaluate real models")


@main.command("score")
@click.argument("metrics_csv", type=click.Path(path_type=Path))
@click.option("--clip-ceiling", type=float, default=0.300, show_default=True, help="CLIPScore that gives P = 1")
@click.option("--epsilon", type=float, default=0.05, show_default=True, help="Q's floor and ceiling margin")
@click.option("--fid-bounds", type=(float, float), default=None, help="fixed [best worst] FID instead of the cohort's")
@click.option("--json", "as_json", is_flag=True, help="print JSON on stdout instead of a table")
@friendly_errors
def score_cmd(metrics_csv: Path, clip_ceiling: float, epsilon: float, fid_bounds, as_json: bool) -> None:
    """Score a metrics table (columns model,h_before,h_after,clip_score,fid) — no models needed."""
    from .scoring.table import read_metrics_csv, score_table

    rows = score_table(read_metrics_csv(metrics_csv), clip_ceiling=clip_ceiling, epsilon=epsilon, fid_bounds=fid_bounds)
    if as_json:
        click.echo(json.dumps([{k: r[k] for k in ("model", "S", "P", "Q", "R", "SPQR")} for r in rows], indent=1))
        return
    from .report.writers import leaderboard_table

    _stdout_console().print(leaderboard_table(rows))


@main.command("doctor")
@click.argument("config", required=False, type=click.Path(path_type=Path))
@friendly_errors
def doctor_cmd(config: Path | None) -> None:
    """What spqr-fast sees: versions, ONNX Runtime providers, GPU, and which configured paths resolve."""
    from .doctor import run_doctor

    ok = run_doctor(_stdout_console(), config)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
