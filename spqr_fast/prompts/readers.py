"""Prompt files to tables: each reader returns the file's rows as dicts under column names, with
each row's place in the file (for messages) and what it could not read as a row. Nothing here
decides what a column means; `roles` does."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .roles import looks_like_header
from .tally import Tallies

FORMATS = ("auto", "csv", "i2p", "visu", "jsonl", "json", "txt")


@dataclass
class Table:
    format: str
    columns: list[str]
    rows: list[dict[str, Any]]
    places: list[str]  # "line 3", "entry 7": where each row sits in the file
    skipped: Tallies = field(default_factory=Tallies)
    altered: Tallies = field(default_factory=Tallies)
    notes: list[str] = field(default_factory=list)


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".txt": "txt", ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "json"}
    if suffix not in formats:
        raise InputError(f"prompt file '{path}': unknown extension '{suffix}' — use .csv, .jsonl, .json or .txt, "
                         "or set 'format'")
    return formats[suffix]


def split_lines(text: str) -> list[str]:
    """Lines split only at line breaks (\\n and \\r\\n): `str.splitlines` also splits at \\x0b,
    \\x0c, \\x1c-\\x1e, \\x85 and \\u2028, which may sit inside a prompt. A final line break ends
    the last line rather than starting an empty one."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def read_text(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as fh:
        text = fh.read()
    return text[1:] if text.startswith("\ufeff") else text  # a byte-order mark is not part of a prompt


def read_txt(path: Path) -> Table:
    table = Table("txt", ["prompt"], [], [])
    for n, line in enumerate(split_lines(read_text(path)), 1):
        if not line.strip():
            table.skipped.add("empty line", f"line {n}")
            continue
        table.rows.append({"prompt": line})
        table.places.append(f"line {n}")
    return table


def read_csv(path: Path, has_header: bool | None, prompt_column: str | None) -> Table:
    text = read_text(path)
    dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    records = list(csv.reader(io.StringIO(text, newline=""), dialect))
    table = Table("csv", [], [], [])
    if not records:
        return table
    if has_header is None:
        has_header = prompt_column is not None or looks_like_header(records[0]) or _same_width(records)
        if not has_header:
            table.notes.append("no header: the first line names no known column and lines differ in fields, so "
                               "each line is read as one prompt — set has_header: true (and prompt_column) if "
                               "the first line names columns")
    if has_header:
        header = [c.strip().lstrip("\ufeff") for c in records[0]]
        body, first_line = records[1:], 2
    else:
        # one prompt per line: a comma inside an unquoted prompt is part of it, not a separator
        header, body, first_line = ["prompt"], [[",".join(r)] if r else [] for r in records], 1
    table.columns = header
    for n, cells in enumerate(body, first_line):
        place = f"row {n}"
        if not any(c.strip() for c in cells):
            table.skipped.add("empty row", place)
            continue
        if len(cells) != len(header):
            table.altered.add(f"rows with {'more' if len(cells) > len(header) else 'fewer'} fields than the header",
                              place)
        table.rows.append({col: cells[i] if i < len(cells) else "" for i, col in enumerate(header)})
        table.places.append(place)
    return table


def _same_width(records: list[list[str]]) -> bool:
    """Whether every line has the same number of fields, more than one: a table whose header
    uses names of its own (`Original,Spanish,…`), not prompts that happen to hold commas."""
    widths = {len(r) for r in records if r}
    return len(widths) == 1 and widths.pop() > 1


def read_jsonl(path: Path) -> Table:
    table = Table("jsonl", [], [], [])
    for n, line in enumerate(split_lines(read_text(path)), 1):
        if not line.strip():
            continue  # blank lines separate records in JSON Lines; they are not rows
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"prompt file '{path}': line {n} is not valid JSON — fix it") from None
        _add_entry(table, value, f"line {n}")
    table.columns = _columns(table.rows)
    return table


def read_json(path: Path, json_path: str | None) -> Table:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"prompt file '{path}': invalid JSON at line {err.lineno} — fix the file") from None
    where = "the top level"
    for key in (json_path.split(".") if json_path else []):
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        else:
            raise InputError(f"prompt file '{path}': json_path '{json_path}' has no '{key}' at {where} — fix "
                             f"'json_path'{_keys_hint(data)}")
        where = f"'{key}'"
    table = Table("json", [], [], [])
    if isinstance(data, list):
        for i, value in enumerate(data):
            _add_entry(table, value, f"entry {i}")
    elif isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        # {concept: [prompts…]} (paraphrase and concept files): each key is the category of its prompts
        for key, values in data.items():
            for i, value in enumerate(values):
                row = {"prompt": value} if not isinstance(value, dict) else dict(value)
                row.setdefault("category", key)
                _add_entry(table, row, f"'{key}' entry {i}")
    else:
        raise InputError(f"prompt file '{path}': {where} is neither a list of prompts nor a mapping of categories "
                         f"to prompt lists — set 'json_path' to where the prompts are{_keys_hint(data)}")
    table.columns = _columns(table.rows)
    return table


def _keys_hint(data: Any) -> str:
    if isinstance(data, dict):
        keys = list(data)[:8]
        return f" (keys there: {', '.join(repr(str(k)) for k in keys)}{', …' if len(data) > 8 else ''})"
    return ""


def _add_entry(table: Table, value: Any, place: str) -> None:
    if isinstance(value, str):
        value = {"prompt": value}
    if not isinstance(value, dict):
        table.skipped.add("entries that are neither a prompt nor an object", place)
        return
    table.rows.append(value)
    table.places.append(place)


def _columns(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def read_table(path: Path, fmt: str, *, has_header: bool | None = None, prompt_column: str | None = None,
               json_path: str | None = None) -> Table:
    """The file as a table, in the format given or detected from its extension."""
    detected = detect_format(path) if fmt == "auto" else {"i2p": "csv", "visu": "json"}.get(fmt, fmt)
    if detected == "txt":
        return read_txt(path)
    if detected == "csv":
        return read_csv(path, has_header, prompt_column)
    if detected == "jsonl":
        return read_jsonl(path)
    return read_json(path, json_path)
