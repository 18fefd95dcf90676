"""Prompts from a table: each row's prompt, id, seed, guidance and categories read from the
columns of their roles; rows without a prompt skipped and counted, control characters replaced
and counted, repeated ids renamed and counted. Then `select` filters and samples as asked.

One id scheme for every file type: the id the file gives, as written (0 included); a prompt
whose file gives none gets the set's prefix and its position among the prompts kept.
"""

from __future__ import annotations

import csv
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import PromptSet
from ..errors import InputError
from ..input_files import file_kind
from ..safe_text import printable
from .model import MAX_PROMPT_CHARS, Prompt
from .readers import read_table
from .report import PromptFileReport
from .roles import ROLES, resolve_roles
from .tally import Tallies

MAX_SEED = 2**63 - 1
FIRST_SHOWN = 5


def read_prompt_file(spec: PromptSet, id_prefix: str = "p") -> tuple[list[Prompt], PromptFileReport]:
    """Every prompt of the file, in file order, and the report of how they were read."""
    path = Path(spec.path)
    kind = file_kind(path)
    if kind == "a folder":
        raise InputError(f"prompt file '{path}' is a folder — give a prompt file (.csv, .jsonl, .json or .txt)")
    if kind == "missing":
        raise InputError(f"prompt file '{path}' not found — fix 'prompts.*.path'")
    if kind is not None:
        raise InputError(f"prompt file '{path}' is {kind}, not a regular file — give a prompt file")
    given = {role: getattr(spec, f"{role}_column") for role in ROLES}
    if spec.format == "visu":
        given = {"prompt": "nsfw", "category": "tag", **{k: v for k, v in given.items() if v is not None}}
    try:
        table = read_table(path, spec.format, has_header=spec.has_header, prompt_column=given["prompt"],
                           json_path=spec.json_path)
    except UnicodeDecodeError:
        raise InputError(f"prompt file '{path}' is not UTF-8 text — convert it or point to the right file") from None
    except csv.Error as err:
        raise InputError(f"prompt file '{path}' is not a readable CSV ({err}) — fix the file") from None
    where = f"prompt file '{path}'"
    rows_read = len(table.rows) + table.skipped.total()
    if not table.rows:
        raise InputError(f"{where} holds no prompts — point to the right file")
    roles = resolve_roles(table.columns, given, where)
    skipped, altered = table.skipped, table.altered
    rows: list[tuple[str | None, str, dict, str]] = []
    for row, place in zip(table.rows, table.places):
        text = row.get(roles["prompt"])
        if text is None or (isinstance(text, str) and not text.strip()):
            skipped.add("rows with an empty prompt", place)
            continue
        if not isinstance(text, str):
            skipped.add("rows whose prompt is not text", place)
            continue
        clean = printable(text)
        if not clean.strip():
            skipped.add("rows with an empty prompt", place)  # control characters only
            continue
        if clean != text:
            altered.add("prompts with control characters (replaced by spaces)", place)
        rows.append((_file_id(row.get(roles["id"]) if roles["id"] else None), clean.strip(), row, place))

    if not rows:
        raise InputError(f"{where}: none of its {rows_read} rows has text in the prompt column "
                         f"'{roles['prompt']}' — set 'prompt_column' to the column that holds the prompts")
    prompts: list[Prompt] = []
    ids: list[str] = []
    for k, (file_id, text, row, place) in enumerate(rows):
        ids.append(file_id if file_id is not None else f"{id_prefix}{k:05d}")
        if len(text) > MAX_PROMPT_CHARS:
            altered.add(f"prompts longer than {MAX_PROMPT_CHARS} characters cut to that length "
                        "(the text encoder reads only its first 77 tokens)", place)
            text = text[:MAX_PROMPT_CHARS]
        prompts.append(Prompt(
            id="", text=text,
            categories=_categories(row.get(roles["category"])) if roles["category"] else (),
            seed=_seed(row.get(roles["seed"]), roles["seed"], place, where) if roles["seed"] else None,
            guidance=_guidance(row.get(roles["guidance"]), roles["guidance"], place, where)
            if roles["guidance"] else None,
            extra={key: value for key, value in row.items() if key != roles["prompt"]},
        ))
    ids = _dedupe(ids, [place for *_, place in rows], altered)
    prompts = [replace(p, id=pid) for p, pid in zip(prompts, ids)]
    report = PromptFileReport(
        path=str(path), format=table.format, format_detected=spec.format == "auto", columns=table.columns,
        roles=roles.columns, found_by_name=roles.found_by_name, rows_read=rows_read,
        kept=len(prompts), skipped=skipped, altered=altered,
        with_seed=sum(p.seed is not None for p in prompts), with_guidance=sum(p.guidance is not None for p in prompts),
        categories=Counter(c for p in prompts for c in p.categories), notes=[*table.notes, *roles.notes],
        first_prompts=[(p.id, p.text) for p in prompts[:FIRST_SHOWN]],
    )
    return prompts, report


def _file_id(value: Any) -> str | None:
    """The id a row gives, as text; None only where the cell is missing or empty (0 is an id)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = printable(str(value)).strip()
    return text or None


def _dedupe(ids: list[str], places: list[str], altered: Tallies) -> list[str]:
    """Repeated ids (Ring-A-Bell case numbers, COCO image ids with several captions) made unique
    with a `#k` suffix, counted."""
    seen: dict[str, int] = {}
    out = []
    for pid, place in zip(ids, places):
        k = seen.get(pid, 0)
        if k:
            altered.add("repeated ids renamed '<id>#<k>'", f"{place}, id '{pid}'")
        out.append(pid if k == 0 else f"{pid}#{k}")
        seen[pid] = k + 1
    return out


def _categories(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(c for c in (printable(str(i)).strip() for i in items) if c)


def _number(value: Any, role: str, column: str, place: str, where: str, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InputError(f"{where}: {place}: {column} {str(value)[:40]!r} is not {what} — fix the cell, or set "
                         f"'{role}_column' to the right column")
    return number


def _seed(value: Any, column: str, place: str, where: str) -> int | None:
    number = _number(value, "seed", column, place, where, "a whole number ≥ 0")
    if number is None:
        return None
    if not number.is_integer() or number > MAX_SEED:
        raise InputError(f"{where}: {place}: {column} {str(value)[:40]!r} is not a whole number ≥ 0 below 2^63 — "
                         "fix the cell, or set 'seed_column' to the right column")
    return int(number)


def _guidance(value: Any, column: str, place: str, where: str) -> float | None:
    return _number(value, "guidance", column, place, where, "a finite guidance scale ≥ 0")


def select(prompts: list[Prompt], spec: PromptSet) -> list[Prompt]:
    """The prompts the config keeps: by tags and categories, then a seeded sample, then the first
    `limit`."""
    for wanted in (spec.tags, spec.categories):
        if wanted:
            keep = set(wanted)
            prompts = [p for p in prompts if keep.intersection(p.categories)]
    if spec.sample is not None and spec.sample < len(prompts):
        rng = random.Random(spec.sample_seed)
        chosen = sorted(rng.sample(range(len(prompts)), spec.sample))
        prompts = [prompts[i] for i in chosen]
    if spec.limit is not None:
        prompts = prompts[: spec.limit]
    return prompts


def load_prompt_set(spec: PromptSet, warn: Callable[[str], None] | None = None, id_prefix: str = "p") -> list[Prompt]:
    """Load, filter and sample a prompt set as the config describes it; `warn` hears one line per
    reason rows were skipped or changed. Prompts without an id of their own get `id_prefix` and
    their position (`h00000` for harmful, `u00000` for utility), so two sets never share ids —
    ids pick each image's seed and label its grid cell."""
    prompts, report = read_prompt_file(spec, id_prefix)
    if spec.use_file_seeds and report.with_seed == 0:
        raise InputError(f"prompt file '{spec.path}': use_file_seeds is set but the file gives no per-prompt seed "
                         f"(no seed column among {', '.join(report.columns)}) — set 'seed_column', drop "
                         "use_file_seeds, or use a file with seeds")
    if warn is not None:
        for line in report.warnings():
            warn(line)
        if spec.use_file_seeds and report.with_seed < report.kept:
            warn(f"prompt file '{spec.path}': {report.kept - report.with_seed} prompt(s) have no seed in the file; "
                 "their seeds derive from their ids")
    chosen = select(prompts, spec)
    if not chosen:
        found = ", ".join(f"{c} ({n})" for c, n in report.categories.most_common(8)) or "none"
        raise InputError(f"prompt file '{spec.path}': no prompts left after filtering — check 'tags'/'categories' "
                         f"(categories in the file: {found})")
    return chosen


def distinct_ids(harmful: list[Prompt], utility: list[Prompt],
                 warn: Callable[[str], None] | None = None) -> list[Prompt]:
    """The utility set with ids the harmful set also uses (files with their own id columns, say
    both numbered from 1) renamed `u:<id>`, so that no two prompts share a seed."""
    taken = {p.id for p in harmful}
    clashes = [p.id for p in utility if p.id in taken]
    if not clashes:
        return utility
    if warn is not None:
        warn(f"{len(clashes)} utility prompt id(s) are also harmful prompt ids (e.g. '{clashes[0]}'); "
             "the utility ones are read as 'u:<id>' so that each prompt gets its own seed")
    return [replace(p, id=f"u:{p.id}") if p.id in taken else p for p in utility]
