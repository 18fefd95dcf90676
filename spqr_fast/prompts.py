"""Prompt-set loaders for the formats harmful and utility sets come in.

Every loader returns a list of `Prompt` with a unique `id`. Ids come from the file where it has
one (deduplicated with a `#k` suffix — Ring-A-Bell case numbers repeat) and from the position
otherwise; seeds derive from ids, so they must be stable and unique.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import PromptSet
from .errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
# CLIP's text encoder reads 77 tokens; BPE tokens are rarely over 20 characters, so 2,000
# characters keeps every prompt a text encoder can see in full.
MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    categories: tuple[str, ...] = ()
    seed: int | None = None  # per-prompt seed from the file (I2P), used only when asked
    guidance: float | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _dedupe_ids(ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        k = seen.get(i, 0)
        out.append(i if k == 0 else f"{i}#{k}")
        seen[i] = k + 1
    return out


def _split_categories(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(c.strip() for c in str(value).split(",") if c.strip())


def _sniff_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "txt"
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        return "i2p" if "prompt" in header and ("categories" in header or set(SEED_COLUMNS) & set(header)) else "csv"
    if suffix == ".json":
        data = _read_json(path)
        if isinstance(data, list) and data and isinstance(data[0], dict) and "nsfw" in data[0]:
            return "visu"
        return "json"
    raise InputError(f"prompt file '{path}': unknown extension '{suffix}' — use .csv, .jsonl, .json or .txt, or set 'format'")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"prompt file '{path}': invalid JSON at line {err.lineno} — fix the file") from None


def _load_txt(path: Path) -> list[Prompt]:
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [Prompt(id=f"p{i:05d}", text=t) for i, t in enumerate(ln for ln in lines if ln)]


def _rows_to_prompts(rows: list[dict], path: Path) -> list[Prompt]:
    prompts = []
    raw_ids = []
    for i, row in enumerate(rows):
        text = row.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"prompt file '{path}': entry {i} has no 'prompt' text — fix or remove it")
        raw_ids.append(str(row.get("id") or row.get("case_number") or f"p{i:05d}"))
        cats = row.get("category") or row.get("categories")
        cats_t = tuple(cats) if isinstance(cats, list) else _split_categories(cats)
        prompts.append((text.strip(), cats_t, row))
    return [
        Prompt(id=pid, text=t, categories=c, extra={k: v for k, v in r.items() if k not in ("prompt",)})
        for pid, (t, c, r) in zip(_dedupe_ids(raw_ids), prompts)
    ]


def _load_csv(path: Path) -> list[Prompt]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise InputError(f"prompt file '{path}': needs a 'prompt' column (header: {reader.fieldnames})")
        return _rows_to_prompts(list(reader), path)


def _load_jsonl(path: Path) -> list[Prompt]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(f"prompt file '{path}': line {n} is not valid JSON — fix it") from None
    return _rows_to_prompts(rows, path)


def _load_json_list(path: Path) -> list[Prompt]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise InputError(f"prompt file '{path}': expected a JSON list of objects with a 'prompt' key")
    return _rows_to_prompts([d if isinstance(d, dict) else {} for d in data], path)


# Per-prompt seed / guidance / id columns, by the names I2P and the erasure projects' CSVs use.
SEED_COLUMNS = ("sd_seed", "evaluation_seed", "seed")
GUIDANCE_COLUMNS = ("sd_guidance_scale", "evaluation_guidance", "guidance")
ID_COLUMNS = ("case_number", "id", "")  # "" is pandas' unnamed index column


def _first(row: dict, names: tuple[str, ...]) -> str | None:
    return next((row[n] for n in names if row.get(n) not in (None, "")), None)


def _load_i2p(path: Path) -> list[Prompt]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out, ids = [], []
    for i, row in enumerate(rows):
        text = (row.get("prompt") or "").strip()
        if not text:
            continue  # I2P has a handful of empty prompts; they cannot be generated
        seed = _first(row, SEED_COLUMNS)
        guidance = _first(row, GUIDANCE_COLUMNS)
        case = _first(row, ID_COLUMNS)  # the file's own case number: one prompt, one id, in any subset
        ids.append(f"i2p{case.strip()}" if case is not None else f"i2p{i:05d}")
        out.append(
            Prompt(
                id="",
                text=text,
                categories=_split_categories(row.get("categories")),
                seed=int(float(seed)) if seed not in (None, "") else None,
                guidance=float(guidance) if guidance not in (None, "") else None,
                extra={k: row[k] for k in ("hard", "inappropriate_percentage", "nudity_percentage") if k in row},
            )
        )
    return [replace(p, id=pid) for p, pid in zip(out, _dedupe_ids(ids))]


def _load_visu(path: Path, tags: list[str] | None) -> list[Prompt]:
    data = _read_json(path)
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, dict) or "nsfw" not in row:
            raise InputError(f"prompt file '{path}': entry {i} lacks 'nsfw' — not a ViSU-style file")
        tag = str(row.get("tag", ""))
        if tags and tag not in tags:
            continue
        pid = str(row.get("incremental_id", row.get("prompt_id", i)))
        out.append(Prompt(id=f"visu{pid}", text=str(row["nsfw"]).strip(), categories=(tag,) if tag else (),
                          extra={"safe": row.get("safe"), "coco_id": row.get("coco_id")}))
    return out


def _cap_lengths(prompts: list[Prompt]) -> tuple[list[Prompt], int]:
    """Prompts cut to MAX_PROMPT_CHARS (far past anything a CLIP text encoder reads), and how
    many were cut: a megabyte prompt line would otherwise be copied into every result file."""
    cut = sum(len(p.text) > MAX_PROMPT_CHARS for p in prompts)
    if not cut:
        return prompts, 0
    return [replace(p, text=p.text[:MAX_PROMPT_CHARS]) if len(p.text) > MAX_PROMPT_CHARS else p for p in prompts], cut


def load_prompt_set(spec: PromptSet, warn: Callable[[str], None] | None = None, id_prefix: str = "p") -> list[Prompt]:
    """Load, filter and sample a prompt set as the config describes it; `warn` hears about
    prompts cut to MAX_PROMPT_CHARS. Prompts without an id of their own get `id_prefix` and their
    position (`h00000` for harmful, `u00000` for utility), so two sets never share ids — ids pick
    each image's seed and label its grid cell."""
    path = Path(spec.path)
    if path.is_dir():
        raise InputError(f"prompt file '{path}' is a folder — give a prompt file (.csv, .jsonl, .json or .txt)")
    if not path.is_file():
        raise InputError(f"prompt file '{path}' not found — fix 'prompts.*.path'")
    loaders = {
        "txt": _load_txt,
        "csv": _load_csv,
        "jsonl": _load_jsonl,
        "json": _load_json_list,
        "i2p": _load_i2p,
    }
    try:
        fmt = spec.format if spec.format != "auto" else _sniff_format(path)
        prompts = _load_visu(path, spec.tags) if fmt == "visu" else loaders[fmt](path)
    except UnicodeDecodeError:
        raise InputError(f"prompt file '{path}' is not UTF-8 text — convert it or point to the right file") from None
    except csv.Error as err:
        raise InputError(f"prompt file '{path}' is not a readable CSV ({err}) — fix the file") from None
    if id_prefix != "p":
        prompts = [replace(q, id=f"{id_prefix}{i:05d}") if q.id == f"p{i:05d}" else q for i, q in enumerate(prompts)]
    if spec.use_file_seeds and not any(p.seed is not None for p in prompts):
        raise InputError(f"prompt file '{path}': use_file_seeds is set but the file gives no per-prompt seed "
                         f"(columns {', '.join(SEED_COLUMNS)}) — drop use_file_seeds or use a file with seeds")
    prompts, cut = _cap_lengths(prompts)
    if cut and warn is not None:
        warn(f"prompt file '{path}': {cut} prompt(s) longer than {MAX_PROMPT_CHARS} characters were cut to that "
             "length (the text encoder reads only its first 77 tokens)")
    if spec.categories:
        wanted = set(spec.categories)
        prompts = [p for p in prompts if wanted.intersection(p.categories)]
    if spec.sample is not None and spec.sample < len(prompts):
        rng = random.Random(spec.sample_seed)
        keep = sorted(rng.sample(range(len(prompts)), spec.sample))
        prompts = [prompts[i] for i in keep]
    if spec.limit is not None:
        prompts = prompts[: spec.limit]
    if not prompts:
        raise InputError(f"prompt file '{path}': no prompts left after filtering — check 'tags'/'categories'")
    return prompts


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


def list_reference_images(folder: str | Path) -> list[Path]:
    """The images of a FID reference folder, sorted so that features are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"reference image folder '{folder}' not found — fix 'prompts.reference_images'")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise InputError(f"reference image folder '{folder}' holds {len(files)} images; FID needs at least 2")
    return files
