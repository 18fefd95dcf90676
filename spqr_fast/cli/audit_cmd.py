"""`spqr-fast audit`: PASS / FAIL / INCONCLUSIVE within a time or image budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..safe_text import shown
from .common import existing_path, friendly_errors, stderr_console, stdout_console, threads_option


@click.command("audit")
@click.argument("config", required=False, type=existing_path("file"))
@click.option("--model", "model", default=None, help="the config's model to audit")
@click.option("--lora", type=existing_path("dir"), default=None,
              help="a fine-tune to audit as this model's after stage (the hub case: does this LoRA break safety?)")
@click.option("--after", "after", type=existing_path("any"), default=None, help="the model after fine-tuning")
@click.option("--criteria", default=None, help="e.g. \"h<=5, dh<=1, tifa>=0.70\" (h, h_after, dh in percent/points)")
@click.option("--budget", default=None, help="wall-clock (15m, 90s, 1h30m) or images (2000img)")
@click.option("--alpha", type=click.FloatRange(min=0.0001, max=0.5), default=0.05, show_default=True,
              help="the error rate of the whole audit, split across criteria")
@click.option("--order-seed", type=click.IntRange(min=0), default=None, help="prompt order seed (default: the run seed)")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("spqr-out"), show_default=True,
              help="output folder (the same stores as eval: images are shared)")
@click.option("--json", "as_json", is_flag=True, help="audit.json's content on stdout")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), default=None,
              help="JUnit XML: one test case per criterion")
@click.option("--history", "history", envvar="SPQR_HISTORY", default=None,
              help="record the audit in this database (default: the config's history.url, else OUT/history.sqlite)")
@click.option("--low-memory", is_flag=True,
              help="free the model's stages and the judges after each chunk (slower: each chunk loads them again)")
@threads_option
@friendly_errors
def audit_cmd(config: Path | None, model: str | None, lora: Path | None, after: Path | None, criteria: str | None,
              budget: str | None, alpha: float, order_seed: int | None, out_dir: Path, as_json: bool,
              junit_path: Path | None, history: str | None, low_memory: bool, threads: int | None) -> None:
    """Decide whether a model meets CRITERIA within BUDGET — stopping as soon as the answer is
    known at error rate ALPHA (exit 0 PASS, 1 FAIL, 3 INCONCLUSIVE, 2 bad input). No CONFIG: the
    embedded world's models against a demonstration threshold."""
    from ..errors import InputError
    from ..library_warnings import warnings_to_log
    from ..store import prepare_output_dir

    console = stderr_console()
    prepare_output_dir(out_dir)
    if config is None:
        if model or criteria or budget or lora or after:
            raise InputError("audit: --model, --criteria, --budget, --lora and --after need a CONFIG — give one, or "
                             "none of them for the demonstration on the embedded world")
        from ..audit.demo import DEMO_CRITERIA, world_audits

        with warnings_to_log(out_dir):
            rows = world_audits(out_dir, console, alpha)
        table = stdout_console()
        table.print(f"audit of the embedded world's models against {DEMO_CRITERIA} (α = {alpha}):")
        for name, record, full in rows:
            table.print(f"  {name:<6} {record['verdict']:<13} {record['used']['images']:>4} images "
                        f"({record['used']['images'] / full:.0%} of the {full} a full eval of it generates)")
        return
    for flag, value in (("--model", model), ("--criteria", criteria), ("--budget", budget)):
        if value is None:
            raise InputError(f"audit: {flag} is required with a CONFIG — see 'spqr-fast audit --help'")
    if lora is not None and after is not None:
        raise InputError("audit: give --lora or --after, not both")
    from ..audit.criteria import parse_budget, parse_criteria
    from ..audit.report import EXIT, audit_record, print_summary, write_audit, write_audit_junit
    from ..audit.runner import AuditRequest, Auditor
    from ..config import load_config

    cfg = load_config(config)
    if threads is not None:
        cfg.threads = threads
    entry = next((m for m in cfg.models if m.name == model), None)
    if entry is None:
        raise InputError(f"--model '{model}' is not in {config} (models: {', '.join(m.name for m in cfg.models)})")
    has_fine_tune = lora is not None or after is not None or entry.bft is not None or entry.after_bft is not None
    parsed = parse_criteria(criteria, has_fine_tune=has_fine_tune)  # type: ignore[arg-type]
    if any(c.quantity.name == "tifa" for c in parsed) and cfg.judges.vqa is None:
        raise InputError("--criteria: tifa needs a VQA judge — add judges.vqa to the config")
    seconds, images = parse_budget(budget)  # type: ignore[arg-type]
    req = AuditRequest(cfg=cfg, model=model, criteria=parsed, alpha=alpha, seconds=seconds,  # type: ignore[arg-type]
                       images=images, out=out_dir, order_seed=cfg.seed if order_seed is None else order_seed,
                       lora=lora, after=after, low_memory=low_memory)
    with warnings_to_log(out_dir):
        outcome = Auditor(req, console).run()
    record = audit_record(req, outcome)
    write_audit(out_dir, record)
    if junit_path is not None:
        write_audit_junit(junit_path, record)
    _record_in_history(cfg, out_dir, history, record, console)
    if as_json:
        click.echo(json.dumps(record, indent=1))
    else:
        print_summary(record, stdout_console())
        console.print(f"wrote {shown(out_dir / 'audit.json')}, {shown(out_dir / 'audit.html')}")
    sys.exit(EXIT[outcome.verdict])


def _record_in_history(cfg, out_dir: Path, history: str | None, record: dict, console) -> None:
    from ..history.recording import history_target, record_finished_audit
    from .history_tools import history_url

    url = history_target(cfg, out_dir, history_url(history))
    if url is None:
        return
    audit_id, problem = record_finished_audit(url, record, out_dir)
    if problem is not None:
        console.print(f"[yellow]warning[/]: {shown(problem)}", soft_wrap=True)
    else:
        console.print(f"recorded as audit {audit_id} (`spqr-fast history --audits`)", soft_wrap=True)
