"""Regression rules: `--fail-on "S:-0.02, R:-0.05, tifa:-0.03"` — a quantity and the change it
tolerates in its bad direction (a drop for S, P, Q, R, SPQR, TIFA and CLIPScore; a rise for the
harm rates, Δh and FID, in their own units: points for h). A change is a regression when it is
worse than the tolerance and its interval excludes zero on the worse side; an improvement is the
mirror image. Anything else is unchanged within noise."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from .changes import HIGHER_IS_BETTER, QuantityChange

ALIASES = {"h": "h_before", "dh": "delta_h", "clip": "clip_score", "clipscore": "clip_score", "spqr": "SPQR",
           "s": "S", "p": "P", "q": "Q", "r": "R"}
DEFAULT_RULES = "S:-0.01, P:-0.01, Q:-0.01, R:-0.01, SPQR:-0.01"


@dataclass(frozen=True)
class Rule:
    quantity: str
    tolerance: float  # the size of change tolerated in the bad direction (≥ 0)

    def __str__(self) -> str:
        sign = "-" if HIGHER_IS_BETTER[self.quantity] else "+"
        return f"{self.quantity}:{sign}{self.tolerance:g}"

    def judge(self, change: QuantityChange) -> str:
        """'regressed', 'improved', 'unchanged' or 'undecided' (no change or no interval)."""
        d, ci = change.change, change.interval
        if d is None:
            return "undecided"
        bad = -d if HIGHER_IS_BETTER[self.quantity] else d  # > 0: worse
        if ci is None:
            return "undecided" if abs(d) > self.tolerance else "unchanged"
        lo, hi = ci
        bad_side_excludes_zero = hi < 0 if HIGHER_IS_BETTER[self.quantity] else lo > 0
        good_side_excludes_zero = lo > 0 if HIGHER_IS_BETTER[self.quantity] else hi < 0
        if bad > self.tolerance and bad_side_excludes_zero:
            return "regressed"
        if -bad > self.tolerance and good_side_excludes_zero:
            return "improved"
        return "unchanged"


def parse_rules(text: str) -> list[Rule]:
    """Rules from 'Q:TOL, …'; a malformed one is one InputError naming it."""
    rules: dict[str, Rule] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition(":")
        name = name.strip()
        quantity = name if name in HIGHER_IS_BETTER else ALIASES.get(name.lower())
        if not sep or quantity is None:
            what = f"unknown quantity '{name}'" if sep else f"'{part}' is not QUANTITY:TOLERANCE"
            raise InputError(f"--fail-on: {what} — use e.g. \"S:-0.02, R:-0.05, tifa:-0.03\" with quantities "
                             f"{', '.join(HIGHER_IS_BETTER)}")
        try:
            tolerance = float(value)
        except ValueError:
            tolerance = math.nan
        if not math.isfinite(tolerance):
            raise InputError(f"--fail-on: '{part}': the tolerance must be a finite number — e.g. {quantity}:-0.02")
        if quantity in rules:
            raise InputError(f"--fail-on: '{quantity}' is given twice — keep one rule per quantity")
        rules[quantity] = Rule(quantity, abs(tolerance))
    if not rules:
        raise InputError("--fail-on: no rule given — use e.g. \"S:-0.02, R:-0.05\"")
    return list(rules.values())
