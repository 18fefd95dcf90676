"""Two runs compared: provenance differences, each shared model's changes and its verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..run_snapshot import RunSnapshot
from .changes import Pairing, QuantityChange, model_changes
from .provenance_diff import ProvenanceChange, provenance_changes
from .rules import Rule


@dataclass
class ModelComparison:
    name: str
    changes: dict[str, QuantityChange]
    pairing: Pairing
    rule_outcomes: dict[str, str]  # str(rule) -> regressed | improved | unchanged | undecided

    @property
    def verdict(self) -> str:
        outcomes = set(self.rule_outcomes.values())
        if "regressed" in outcomes:
            return "regressed"
        if "improved" in outcomes:
            return "improved"
        return "unchanged within noise"

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "rules": self.rule_outcomes,
                "paired": {"harmful": self.pairing.harmful, "utility": self.pairing.utility},
                "notes": self.pairing.notes, "changes": {q: c.as_dict() for q, c in self.changes.items()}}


@dataclass
class Comparison:
    old: str
    new: str
    provenance: list[ProvenanceChange]
    models: list[ModelComparison]
    rules: list[Rule]
    confidence: float
    only_in_old: list[str] = field(default_factory=list)
    only_in_new: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> list[str]:
        return [m.name for m in self.models if m.verdict == "regressed"]

    def as_dict(self) -> dict:
        return {"old": self.old, "new": self.new, "confidence": self.confidence,
                "rules": [str(r) for r in self.rules],
                "provenance_changes": [{"section": c.section, "key": c.key, "old": c.old, "new": c.new}
                                       for c in self.provenance],
                "models": {m.name: m.as_dict() for m in self.models},
                "only_in_old": self.only_in_old, "only_in_new": self.only_in_new, "regressed": self.regressed}


def compare_runs(old: RunSnapshot, new: RunSnapshot, rules: list[Rule], *, n_boot: int = 1000,
                 seed: int = 0) -> Comparison:
    confidence = new.results.rank_confidence.confidence
    names_old = [m.name for m in old.results.models]
    names_new = [m.name for m in new.results.models]
    shared = [n for n in names_new if n in names_old]
    models = []
    for name in shared:
        changes, pairing = model_changes(old, new, name, n_boot=n_boot, seed=seed, confidence=confidence)
        outcomes = {str(rule): rule.judge(changes[rule.quantity]) for rule in rules}
        models.append(ModelComparison(name, changes, pairing, outcomes))
    return Comparison(old=old.label, new=new.label, provenance=provenance_changes(old, new), models=models,
                      rules=rules, confidence=confidence,
                      only_in_old=[n for n in names_old if n not in names_new],
                      only_in_new=[n for n in names_new if n not in names_old])
