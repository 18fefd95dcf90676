"""`spqr-fast prompts inspect`: what a prompt file will give an evaluation — format, column
roles, counts of rows kept and skipped, categories, seeds — before any GPU hour is spent."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..safe_text import shown
from .common import existing_path, friendly_errors, prompt_file_options, stdout_console


@click.group("prompts")
def prompts_group() -> None:
    """Prompt files: see how spqr-fast reads them."""


@prompts_group.command("inspect")
@click.argument("path", type=existing_path("file"))
@prompt_file_options()
@click.option("--categories", multiple=True, help="keep prompts having any of these categories (repeatable)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="keep the first N prompts")
@click.option("--json", "as_json", is_flag=True, help="the report as JSON on stdout")
@friendly_errors
def prompts_inspect(path: Path, prompt_options: dict, categories: tuple[str, ...], limit: int | None,
                    as_json: bool) -> None:
    """Show how PATH is read: format, column roles, rows read, kept and skipped (and why), ids
    renamed, categories, seeds and guidance found, and the first prompts."""
    from pydantic import ValidationError

    from ..config import PromptSet
    from ..errors import ConfigError
    from ..prompts import read_prompt_file, select

    try:
        spec = PromptSet(path=str(path), categories=list(categories) or None, limit=limit, **prompt_options)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"prompts inspect: --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    prompts, report = read_prompt_file(spec)
    selected = len(select(prompts, spec))
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "prompts_selected": selected}, indent=1, ensure_ascii=False))
        return
    console = stdout_console()
    roles = ", ".join(f"{role}: {shown(col) if col is not None else '—'}"
                      + (" (by name)" if role in report.found_by_name else "")
                      for role, col in report.roles.items())
    console.print(f"[bold]{shown(report.path)}[/bold]: {report.format}"
                  f"{' (detected)' if report.format_detected else ''}; columns {shown(', '.join(report.columns))}")
    console.print(f"roles: {roles}")
    console.print(f"rows read {report.rows_read}, prompts kept {report.kept}"
                  + (f", selected {selected}" if selected != report.kept else "")
                  + f"; with seed {report.with_seed}, with guidance {report.with_guidance}")
    for reason, tally in report.skipped.by_reason.items():
        console.print(f"  skipped {tally.count} {shown(reason)} (first: {shown(tally.first)})")
    for reason, tally in report.altered.by_reason.items():
        console.print(f"  changed {tally.count} {shown(reason)} (first: {shown(tally.first)})")
    for note in report.notes:
        console.print(f"  note: {shown(note)}")
    if report.categories:
        console.print("categories: " + ", ".join(f"{shown(c)} {n}" for c, n in report.categories.most_common(12))
                      + (", …" if len(report.categories) > 12 else ""))
    for pid, text in report.first_prompts:
        console.print(f"  {shown(pid)}: {shown(text[:120])}{'…' if len(text) > 120 else ''}")
