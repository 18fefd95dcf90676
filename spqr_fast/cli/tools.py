"""The artefact cache (engines list|clear) and the VQA judge on its own (judge vqa)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..safe_text import printable, shown
from .common import friendly_errors, stderr_console, stdout_console


@click.group("engines")
def engines_group() -> None:
    """The artefact cache of exported graphs and TensorRT engines."""


@engines_group.command("list")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="default: $SPQR_ENGINE_CACHE or engines/cache")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def engines_list(root: Path | None, as_json: bool) -> None:
    from rich.table import Table

    from ..export.cache import ArtefactCache

    cache = ArtefactCache(root)
    entries = cache.entries()
    if as_json:
        click.echo(json.dumps(entries, indent=1, default=str))
        return
    table = Table(title=f"artefacts in {shown(cache.root)}")
    for col in ("kind", "key", "model", "component", "precision", "built", "MiB", "valid"):
        table.add_column(col, overflow="fold")
    for e in entries:
        inputs = e.get("inputs", {})
        component = inputs.get("component") or ("pipeline" if "parts" in inputs else "")
        table.add_row(*(shown(cell) for cell in (
            e["kind"], e["key"][:12], e["model"], component, inputs.get("precision", ""),
            str(e["built_at"])[:16].replace("T", " "), f"{e['bytes'] / 2**20:.1f}",
            "yes" if e["valid"] else f"no: {e['problem']}")))
    stdout_console().print(table)


@engines_group.command("clear")
@click.option("--root", type=click.Path(path_type=Path), default=None)
@friendly_errors
def engines_clear(root: Path | None) -> None:
    from ..export.cache import ArtefactCache

    cache = ArtefactCache(root)
    removed, kept = cache.clear()
    click.echo(f"removed {removed} artefact(s) from {cache.root}")
    if kept:
        names = printable(", ".join(str(p.relative_to(cache.root)) for p in kept[:5]))
        click.echo(f"left {len(kept)} path(s) that are not cache artefacts untouched: {names}"
                   f"{' …' if len(kept) > 5 else ''}")


@click.group("judge")
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

    from ..export.cache import ArtefactCache
    from ..judges.vqa_cli import score_folder
    from ..keys import FileHasher

    console = stderr_console()
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
    stdout_console().print(table)


@click.group("config")
def config_group() -> None:
    """The config file's format."""


@config_group.command("reference")
@click.option("--json-schema", "json_schema", is_flag=True, help="the JSON Schema (for editors) instead of Markdown")
def config_reference(json_schema: bool) -> None:
    """Every config key with its type, default and meaning, generated from the loader's own schema
    (the same text as docs/config-reference.md and docs/config.schema.json)."""
    from ..config_reference import config_json_schema, reference_markdown

    click.echo(config_json_schema() if json_schema else reference_markdown(), nl=False)
