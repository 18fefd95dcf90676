"""What reading a prompt file did: the format and column roles it used, how many rows it read,
kept, skipped and changed (each reason with its count and first example), and what the prompts
carry. `prompts inspect` prints it; evaluation turns it into warning lines."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .tally import Tallies


@dataclass
class PromptFileReport:
    path: str
    format: str
    format_detected: bool
    columns: list[str]
    roles: dict[str, str | None]
    found_by_name: tuple[str, ...]
    rows_read: int
    kept: int
    skipped: Tallies
    altered: Tallies
    with_seed: int
    with_guidance: int
    categories: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    first_prompts: list[tuple[str, str]] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """One line per reason a row was skipped or changed, and per ambiguous choice."""
        lines = [f"prompt file '{self.path}': {t.count} {reason} skipped (first: {t.first})"
                 for reason, t in self.skipped.by_reason.items()]
        lines += [f"prompt file '{self.path}': {t.count} {reason} (first: {t.first})"
                  for reason, t in self.altered.by_reason.items()]
        lines += [f"prompt file '{self.path}': {note}" for note in self.notes]
        return lines

    def as_dict(self) -> dict:
        return {
            "path": self.path, "format": self.format, "format_detected": self.format_detected,
            "columns": self.columns, "roles": self.roles, "roles_found_by_name": list(self.found_by_name),
            "rows_read": self.rows_read, "prompts_kept": self.kept,
            "skipped": self.skipped.as_dict(), "altered": self.altered.as_dict(),
            "prompts_with_seed": self.with_seed, "prompts_with_guidance": self.with_guidance,
            "categories": dict(self.categories.most_common()), "notes": self.notes,
            "first_prompts": [{"id": i, "prompt": t} for i, t in self.first_prompts],
        }
