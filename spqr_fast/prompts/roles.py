"""Which column holds what: the names the field's prompt files use for each role, and the
choice made for one table (given in the config, or found by name — and said which)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError

ROLES = ("prompt", "id", "seed", "guidance", "category")

# Names the published prompt files use, most specific first (compared without case and
# surrounding spaces). I2P: prompt/categories/sd_seed/sd_guidance_scale/case_number; the erasure
# projects: evaluation_seed/evaluation_guidance/case_num; COCO captions: image_id,text; ViSU:
# nsfw/tag/incremental_id; paired safe/unsafe files: 'sensitive prompt'; "" is pandas' unnamed
# index column.
KNOWN_NAMES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "prompts", "text", "caption", "sentence", "adv_prompt", "adversarial_prompt",
               "sensitive prompt", "sensitive_prompt", "nsfw"),
    "id": ("case_number", "case_num", "case_id", "id", "incremental_id", "prompt_id", "image_id", "index", ""),
    "seed": ("sd_seed", "evaluation_seed", "seed", "random_seed"),
    "guidance": ("sd_guidance_scale", "evaluation_guidance", "guidance_scale", "guidance", "cfg_scale", "cfg"),
    "category": ("categories", "category", "concept", "class", "label", "type", "tag", "artist"),
}


@dataclass(frozen=True)
class ColumnRoles:
    """The column of each role (None: the file has none), which were found by name rather than
    given, and notes on ambiguous choices."""

    columns: dict[str, str | None]
    found_by_name: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def __getitem__(self, role: str) -> str | None:
        return self.columns.get(role)


def _norm(name: str) -> str:
    return name.strip().lower()


def resolve_roles(header: list[str], given: dict[str, str | None], where: str) -> ColumnRoles:
    """Each role's column: the one the config names (it must exist), else the first known name
    present. A prompt column is required; the others are optional."""
    by_norm: dict[str, str] = {}
    for col in header:
        by_norm.setdefault(_norm(col), col)
    columns: dict[str, str | None] = {}
    found: list[str] = []
    notes: list[str] = []
    taken: set[str] = set()
    for role in ROLES:
        wanted = given.get(role)
        if wanted is not None:
            if wanted not in header and _norm(wanted) not in by_norm:
                raise InputError(f"{where}: {role}_column '{wanted}' is not a column (columns: "
                                 f"{', '.join(repr(c) for c in header)}) — fix '{role}_column'")
            columns[role] = wanted if wanted in header else by_norm[_norm(wanted)]
            taken.add(columns[role])
            continue
        candidates = [by_norm[n] for n in KNOWN_NAMES[role] if n in by_norm and by_norm[n] not in taken]
        columns[role] = candidates[0] if candidates else None
        if candidates:
            found.append(role)
            taken.add(candidates[0])
        if role == "prompt" and len(candidates) > 1:
            notes.append(f"columns {', '.join(repr(c) for c in candidates)} could each be the prompt; read "
                         f"'{candidates[0]}' — set prompt_column to choose another")
    if columns["prompt"] is None:
        raise InputError(f"{where}: no prompt column among {', '.join(repr(c) for c in header) or 'no columns'} "
                         "— set 'prompt_column' to the column that holds the prompts")
    return ColumnRoles(columns=columns, found_by_name=tuple(found), notes=tuple(notes))


def looks_like_header(cells: list[str]) -> bool:
    """Whether a CSV's first row names columns: some cell is a known column name."""
    known = {n for names in KNOWN_NAMES.values() for n in names if n}
    return any(_norm(c) in known for c in cells)
