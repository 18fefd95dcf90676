"""Sharding the plan without Ray (Slurm job arrays): `eval --shard i/n` generates and judges one
contiguous slice of the plan; `report --merge DIR...` combines shard outputs into one leaderboard,
refusing shards of different configs or an incomplete set."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import InputError, SpqrError
from ..keys import stable_hash
from ..store import atomic_write_json, file_sha256

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


SHARD_FOLDERS = ("images", "records", "bft")


def config_fingerprint(cfg) -> str:
    return stable_hash(json.loads(cfg.model_dump_json()), n=32)


def _shard_files(out: Path) -> list[Path]:
    """What a shard contributes to a merge: its images, records and BFT results (no temp files)."""
    return sorted(f for sub in SHARD_FOLDERS if (out / sub).is_dir() for f in (out / sub).rglob("*")
                  if f.is_file() and not f.name.startswith("."))


def write_manifest(out: Path, cfg, i: int, n: int, n_items: int) -> None:
    """Written last: the shard's config, its hash, and the hash of every file it contributes."""
    files = {f.relative_to(out).as_posix(): file_sha256(f) for f in _shard_files(out)}
    atomic_write_json(out / MANIFEST, {"shard": i, "of": n, "config_sha": config_fingerprint(cfg), "items": n_items,
                                       "config": json.loads(cfg.model_dump_json()), "files": files})


def read_manifest(folder: Path) -> dict:
    """A shard's manifest, checked against the shard: its config hash recomputed from its config,
    and every listed file present with its hash. One line naming the problem otherwise."""
    from pydantic import ValidationError

    from ..config import EvalConfig

    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError(f"'{folder}' is not a shard output (no {MANIFEST}) — give folders written by `eval --shard i/n`")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        cfg = EvalConfig.model_validate(m["config"])
        shard, of, files = int(m["shard"]), int(m["of"]), dict(m["files"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError) as err:
        raise InputError(f"'{path}' is truncated or malformed ({type(err).__name__}) — re-run that shard") from None
    if config_fingerprint(cfg) != m["config_sha"]:
        raise InputError(f"'{path}': its config does not match its config_sha (edited after the run) — re-run that shard")
    for rel, sha in files.items():
        f = Path(folder) / rel
        if rel.split("/", 1)[0] not in SHARD_FOLDERS or ".." in Path(rel).parts:
            raise InputError(f"'{path}' lists '{rel}', outside a shard's folders — re-run that shard")
        if not f.is_file():
            raise InputError(f"shard '{folder}': '{rel}' is missing — re-run that shard")
        if file_sha256(f) != sha:
            raise InputError(f"shard '{folder}': '{rel}' does not match the shard's manifest (edited or corrupt) — "
                             "re-run that shard")
    return {**m, "shard": shard, "of": of, "files": files}


def _link_files(src: Path, rels: list[str], dst: Path) -> None:
    """Hard-link (or copy across devices) the listed files of src into dst, keeping what dst has."""
    for rel in rels:
        f, target = src / rel, dst / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:
            shutil.copy2(f, target)


def merge_shards(shard_dirs: list[Path], out: Path) -> dict:
    """Check the shards belong together and are intact, and pool their files into `out`;
    returns the config dict."""
    manifests = [read_manifest(Path(d)) for d in shard_dirs]
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
    for d, m in zip(shard_dirs, manifests):
        _link_files(Path(d), sorted(m["files"]), out)
    return first["config"]
