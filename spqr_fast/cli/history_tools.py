"""`spqr-fast compare` and `spqr-fast history`: runs compared by paired tests, and the run
history kept in a SQL database."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..safe_text import shown
from .common import friendly_errors, stderr_console, stdout_console

HISTORY_HELP = ("history database: a SQLAlchemy URL (sqlite:///PATH, postgresql+psycopg://USER@HOST/DB), a "
                ".sqlite file or a run folder (its history.sqlite); default $SPQR_HISTORY")


def history_url(value: str | None) -> str | None:
    """A URL as given; a path becomes the SQLite file it names (a folder: its history.sqlite)."""
    if value is None or "://" in value:
        return value
    try:
        path = Path(value).expanduser()
    except RuntimeError:
        from ..errors import InputError

        raise InputError(f"--history '{value}': its '~user' is not a user on this machine — write the full path") from None
    if path.is_dir():
        path = path / "history.sqlite"
    return f"sqlite:///{path.resolve()}"


def history_option(fn):
    return click.option("--history", "history", envvar="SPQR_HISTORY", default=None, help=HISTORY_HELP)(fn)


def _open(history: str | None, *, migrate: bool = False):
    from ..errors import InputError
    from ..history import open_history

    url = history_url(history)
    if url is None:
        raise InputError("no history database given — pass --history URL (an eval records into "
                         "OUT/history.sqlite unless its config says otherwise) or set SPQR_HISTORY")
    return open_history(url, migrate=migrate)


def _snapshot(ref: str, history: str | None):
    """A run folder, or a run id in the history."""
    from ..errors import InputError
    from ..history.records import load_run
    from ..run_snapshot import RunSnapshot

    path = Path(ref)
    if path.exists() or history is None:
        if not path.exists() and history is None:
            raise InputError(f"'{ref}' is neither a run folder nor (without --history) a run id — give an eval's "
                             "--out folder, or --history URL to read run ids")
        return RunSnapshot.from_folder(path)
    db = _open(history)
    try:
        return load_run(db, ref)
    finally:
        db.close()


@click.command("compare")
@click.argument("old")
@click.argument("new")
@history_option
@click.option("--fail-on", "fail_on", default=None,
              help="regression rules, e.g. \"S:-0.02, R:-0.05, tifa:-0.03\" (default: every axis -0.01)")
@click.option("--json", "as_json", is_flag=True, help="the comparison as JSON on stdout")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None, help="write an HTML page")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), default=None,
              help="write JUnit XML: one test case per model and rule")
@click.option("--boot", "n_boot", type=click.IntRange(min=100, max=100_000), default=1000, show_default=True,
              help="bootstrap replicates of the intervals")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="bootstrap seed")
@friendly_errors
def compare_cmd(old: str, new: str, history: str | None, fail_on: str | None, as_json: bool, html_path: Path | None,
                junit_path: Path | None, n_boot: int, seed: int) -> None:
    """Compare run OLD with run NEW (run folders, or run ids in the history): what changed in
    provenance, each model's changes with intervals — paired per image where the runs share
    prompts and seeds — and a verdict per model. Exit 1 when a model regressed."""
    from ..compare import DEFAULT_RULES, compare_runs, parse_rules
    from ..compare.render import comparison_html, print_comparison, write_comparison_junit

    rules = parse_rules(fail_on if fail_on is not None else DEFAULT_RULES)
    cmp = compare_runs(_snapshot(old, history), _snapshot(new, history), rules, n_boot=n_boot, seed=seed)
    if as_json:
        click.echo(json.dumps(cmp.as_dict(), indent=1, default=str))
    else:
        print_comparison(cmp, stdout_console())
    if html_path is not None:
        html_path.write_text(comparison_html(cmp), encoding="utf-8")
    if junit_path is not None:
        write_comparison_junit(cmp, junit_path)
    if cmp.regressed:
        stderr_console().print(f"regressed: {shown(', '.join(cmp.regressed))}")
        sys.exit(1)


@click.group("history", invoke_without_command=True)
@history_option
@click.option("--model", default=None, help="only runs with this model")
@click.option("--since", default=None, help="only runs recorded since this date (YYYY-MM-DD) or time")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most this many runs")
@click.option("--json", "as_json", is_flag=True)
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="a trend page: each model's SPQR and axes over the runs")
@click.option("--audits", "show_audits", is_flag=True, help="the recorded audits instead of the eval runs")
@click.pass_context
@friendly_errors
def history_group(ctx: click.Context, history: str | None, model: str | None, since: str | None, limit: int | None,
                  as_json: bool, html_path: Path | None, show_audits: bool) -> None:
    """The recorded runs, newest first (`record` and `migrate` below)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..history.records import list_audits, list_runs, load_run

    since = _since(since)
    db = _open(history)
    if show_audits:
        try:
            audits = list_audits(db, model=model, since=since, limit=limit)
        finally:
            db.close()
        if as_json:
            click.echo(json.dumps(audits, indent=1))
            return
        console = stdout_console()
        if not audits:
            console.print("no audits recorded" + (" matching the filters" if model or since else ""))
        for a in audits:
            console.print(f"{a['id']}  {a['recorded_at']}  {shown(a['model'])}  {a['verdict']:<12} "
                          f"{shown(a['criteria'])}  {a['images']} images, {a['seconds']:.0f} s  {shown(a['folder'] or '')}")
        return
    try:
        runs = list_runs(db, model=model, since=since, limit=limit)
        if html_path is not None:
            from ..compare import DEFAULT_RULES, parse_rules
            from ..history.trend import write_trend_page

            write_trend_page(html_path, [load_run(db, r.id) for r in reversed(runs[:60])], parse_rules(DEFAULT_RULES))
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps([{"id": r.id, "recorded_at": r.recorded_at, "name": r.name, "folder": r.folder,
                                "config_hash": r.config_hash,
                                "models": {n: {k: v for k, v in m.items() if k not in ("run_id", "row")}
                                           for n, m in r.models.items()}} for r in runs], indent=1))
        return
    console = stdout_console()
    if not runs:
        console.print("no runs recorded" + (" matching the filters" if model or since else ""))
    for r in runs:
        scores = ", ".join(f"{shown(n)} {m['SPQR']:.3f}" if m.get("SPQR") is not None else f"{shown(n)} —"
                           for n, m in r.models.items() if model is None or n == model)
        console.print(f"{r.id}  {r.recorded_at}  {shown(r.name)}  SPQR: {scores}  {shown(r.folder or '')}")


def _since(value: str | None) -> str | None:
    from datetime import datetime

    from ..errors import InputError

    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        raise InputError(f"--since '{value}' is not a date — use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None


@history_group.command("record")
@click.argument("run_dir", type=click.Path(path_type=Path))
@history_option
@friendly_errors
def history_record(run_dir: Path, history: str | None) -> None:
    """Record the finished run in RUN_DIR (default database: RUN_DIR/history.sqlite)."""
    from ..history import record_run

    db = _open(history if history is not None else str(run_dir))
    try:
        run_id, new = record_run(db, run_dir)
    finally:
        db.close()
    click.echo(f"recorded {run_dir} as run {run_id}" if new else f"{run_dir} is already recorded as run {run_id}")


@history_group.command("migrate")
@history_option
@friendly_errors
def history_migrate(history: str | None) -> None:
    """Bring a database written by an older spqr-fast to this version's schema (one transaction)."""
    from ..history import HISTORY_SCHEMA_VERSION

    _open(history, migrate=True).close()
    click.echo(f"history database at schema version {HISTORY_SCHEMA_VERSION}")
