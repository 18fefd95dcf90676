"""Counts of rows skipped or changed, by reason, each with its first example — so a warning can
say how many and show one."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Tally:
    count: int = 0
    first: str = ""


@dataclass
class Tallies:
    by_reason: dict[str, Tally] = field(default_factory=dict)

    def add(self, reason: str, example: str) -> None:
        tally = self.by_reason.setdefault(reason, Tally(first=example))
        tally.count += 1

    def total(self) -> int:
        return sum(t.count for t in self.by_reason.values())

    def as_dict(self) -> dict[str, dict]:
        return {reason: {"count": t.count, "first": t.first} for reason, t in self.by_reason.items()}

    def merge(self, other: Tallies) -> None:
        for reason, t in other.by_reason.items():
            mine = self.by_reason.setdefault(reason, Tally(first=t.first))
            mine.count += t.count
