"""Scoring's results memoised by everything they are a function of.

`score_cohort` is pure, and its bootstrap is most of a cached re-run's time (one Fréchet distance
per model and replicate). Its rows are stored under a key hashing the measurements (every array's
bytes, shape and dtype), the reference features, the scoring parameters and the source of the
scoring code itself, so a re-run over unchanged records reads them back, and any change to an
input — or to the code that computes them — scores afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import numpy as np

from ..schema import ModelRow
from .leaderboard import ModelMeasurements, ScoringParams, score_cohort


def _update(h, value) -> None:
    if isinstance(value, np.ndarray):
        h.update(f"array{value.shape}{value.dtype.str}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif is_dataclass(value):
        h.update(type(value).__name__.encode())
        for f in fields(value):
            h.update(f.name.encode())
            _update(h, getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        h.update(f"seq{len(value)}".encode())
        for v in value:
            _update(h, v)
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())


def _code_digest() -> str:
    """The scoring code's source: a changed formula must not read old rows back."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def score_key(models: list[ModelMeasurements], ref_features: np.ndarray, params: ScoringParams) -> str:
    h = hashlib.sha256()
    h.update(_code_digest().encode())
    _update(h, asdict(params))
    _update(h, models)
    _update(h, ref_features)
    return h.hexdigest()[:32]


def memoised_score(models: list[ModelMeasurements], ref_features: np.ndarray, params: ScoringParams,
                   folder: Path) -> tuple[list[ModelRow], bool]:
    """(rows, whether they were read back). An unreadable memo entry is scored again."""
    from ..store import atomic_write_bytes

    path = Path(folder) / f"{score_key(models, ref_features, params)}.json"
    if path.is_file():
        try:
            return [ModelRow.model_validate(r) for r in json.loads(path.read_bytes())], True
        except (OSError, ValueError):
            pass
    rows = score_cohort(models, ref_features, params)
    atomic_write_bytes(path, json.dumps([r.dump() for r in rows]).encode())
    return rows, False
