"""What differs between two runs' provenance, by section, most likely causes first: the models'
weights, the judges (identities and thresholds), scoring, the prompts, seeds, generation,
backend, software. Timings, memory and paths of temporary folders are not causes and are left out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..run_snapshot import RunSnapshot

SECTIONS = ("model weights", "fine-tuning", "judges", "thresholds", "scoring", "prompts", "seeds", "generation",
            "backend", "software")


@dataclass(frozen=True)
class ProvenanceChange:
    section: str
    key: str
    old: Any
    new: Any


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _prompt_digests(run: RunSnapshot) -> dict[str, str]:
    """A digest of each prompt set's (id, text) pairs, from the per-image records."""
    sets: dict[str, set] = {"harmful": set(), "utility": set()}
    for f in run.facts:
        if f.kind in ("harm", "clip"):
            sets["harmful" if f.kind == "harm" else "utility"].add((f.prompt_id, f.prompt or ""))
    return {f"{name} prompt set": f"{len(pairs)} prompts, sha256 "
            + hashlib.sha256(json.dumps(sorted(pairs)).encode()).hexdigest()[:12]
            for name, pairs in sets.items() if pairs}


def _sections(run: RunSnapshot) -> dict[str, dict[str, Any]]:
    p = run.results.provenance
    config = p.get("config", {})
    weights = {f"{m.get('name')}/{m.get('stage')}": m.get("weights_hash") for m in p.get("models", [])}
    bft = {name: {**{k: card.get(k) for k in ("key", "profile", "dataset_sha256", "base_model_hash")},
                  **(card.get("hyperparameters") or {})}
           for name, card in (p.get("bft") or {}).items() if isinstance(card, dict)}
    backend = {k: v for k, v in (p.get("backend") or {}).items() if k not in ("per_stage", "judges")}
    # stages whose images were all cached were not loaded: they say nothing about the backend
    backend["chosen per stage"] = {
        f"{m.get('name')}/{m.get('stage')}": m["load"].get("backend", {}).get("chosen")
        for m in p.get("models", []) if isinstance(m.get("load"), dict) and m["load"].get("backend", {}).get("chosen")}
    backend["threads"] = (p.get("threads") or {}).get("used")
    env = p.get("environment") or {}
    return {
        "model weights": _flat(weights),
        "fine-tuning": _flat(bft),
        "judges": _flat(p.get("judges") or {}),
        "thresholds": _flat(p.get("thresholds") or {}),
        "scoring": _flat(p.get("scoring") or {}),
        "prompts": {**_prompt_digests(run), **_flat({k: v for k, v in (config.get("prompts") or {}).items()
                                                     if k != "reference_images"})},
        "seeds": _flat(p.get("seeds") or {}),
        "generation": _flat(config.get("generation") or {}),
        "backend": _flat(backend),
        "software": _flat({"python": env.get("python"), "spqr_fast": env.get("spqr_fast"),
                           "packages": env.get("packages") or {}}),
    }


def provenance_changes(old: RunSnapshot, new: RunSnapshot) -> list[ProvenanceChange]:
    a, b = _sections(old), _sections(new)
    changes = []
    for section in SECTIONS:
        left, right = a.get(section, {}), b.get(section, {})
        for key in sorted(set(left) | set(right)):
            if section == "backend" and key.startswith("chosen per stage.") and not (key in left and key in right):
                continue  # loaded in one run only
            if left.get(key) != right.get(key):
                changes.append(ProvenanceChange(section, key, left.get(key), right.get(key)))
    return changes
