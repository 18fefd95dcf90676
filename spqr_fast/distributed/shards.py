"""Sharding the plan without Ray (Slurm job arrays): `eval --shard i/n` generates and judges one
contiguous slice of the plan; `report --merge DIR...` combines shard outputs into one leaderboard,
refusing shards of different configs or an incomplete set."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import InputError, SpqrError
from ..plan import stable_hash
from ..store import atomic_write_json

MANIFEST = "shard.json"


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' with 0 ≤ i < n (Slurm's 0-based array index)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SpqrError(f"--shard '{text}': expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise SpqrError(f"--shard '{text}': need 0 ≤ i < n")
    return i, n


def shard_slice(items: list, i: int, n: int) -> list:
    """Contiguous slices keep each model stage on few shards (fewer model loads)."""
    lo, hi = len(items) * i // n, len(items) * (i + 1) // n
    return items[lo:hi]


def config_fingerprint(cfg) -> str:
    return stable_hash(json.loads(cfg.model_dump_json()), n=32)


def write_manifest(out: Path, cfg, i: int, n: int, n_items: int) -> None:
    atomic_write_json(out / MANIFEST, {"shard": i, "of": n, "config_sha": config_fingerprint(cfg), "items": n_items,
                                       "config": json.loads(cfg.model_dump_json())})


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (or copy across devices) every file of src into dst, keeping what dst has."""
    for f in src.rglob("*"):
        if f.is_dir() or f.name.startswith("."):
            continue
        target = dst / f.relative_to(src)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


def merge_shards(shard_dirs: list[Path], out: Path) -> dict:
    """Check the shards belong together and pool their stores into `out`; returns the config dict."""
    manifests = []
    for d in shard_dirs:
        m = Path(d) / MANIFEST
        if not m.is_file():
            raise InputError(f"'{d}' is not a shard output (no {MANIFEST}) — give folders written by `eval --shard i/n`")
        manifests.append(json.loads(m.read_text()))
    first = manifests[0]
    for d, m in zip(shard_dirs, manifests):
        if m["config_sha"] != first["config_sha"]:
            raise InputError(f"shard '{d}' was made with a different config than '{shard_dirs[0]}' — "
                             "merge only shards of one run")
        if m["of"] != first["of"]:
            raise InputError(f"shard '{d}' splits the plan in {m['of']} parts, '{shard_dirs[0]}' in {first['of']}")
    have = sorted(m["shard"] for m in manifests)
    if have != list(range(first["of"])):
        missing = sorted(set(range(first["of"])) - set(have))
        raise InputError(f"shards {missing} of {first['of']} are missing (or one is given twice) — "
                         "run them or pass their folders")
    out.mkdir(parents=True, exist_ok=True)
    for d in shard_dirs:
        for sub in ("images", "records", "bft"):
            if (Path(d) / sub).is_dir():
                _link_tree(Path(d) / sub, out / sub)
    return first["config"]
