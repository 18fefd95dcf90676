"""The artefact cache: exported ONNX folders and TensorRT engines, each under a key hashing
everything that determines it, with a manifest JSON beside it. An artefact whose files no longer
match their manifest (corrupt, truncated, edited) is rebuilt, never trusted."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ..plan import stable_hash
from ..store import atomic_write_json

MANIFEST = "manifest.json"
ENV_ROOT = "SPQR_ENGINE_CACHE"


def default_root() -> Path:
    """`$SPQR_ENGINE_CACHE`, else `engines/cache` under the working directory (git-ignored)."""
    return Path(os.environ.get(ENV_ROOT) or Path.cwd() / "engines" / "cache")


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtefactCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_root()

    def folder(self, kind: str, key_inputs: dict) -> Path:
        return self.root / kind / stable_hash(key_inputs, n=24)

    def valid(self, folder: Path) -> tuple[bool, str]:
        """(usable, why not). Every file listed in the manifest must exist with its hash."""
        manifest = folder / MANIFEST
        if not manifest.is_file():
            return False, "no manifest (never built, or the build was interrupted)"
        try:
            data = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            return False, "manifest is corrupt"
        for rel, sha in data.get("files", {}).items():
            path = folder / rel
            if not path.is_file():
                return False, f"{rel} is missing"
            if _file_sha(path) != sha:
                return False, f"{rel} does not match its manifest (corrupt or stale)"
        return True, ""

    def seal(self, folder: Path, key_inputs: dict, extra: dict | None = None) -> dict:
        """Write the manifest last: from then on the artefact counts as built."""
        files = {str(p.relative_to(folder)): _file_sha(p) for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.name != MANIFEST}
        manifest = {"key": folder.name, "kind": folder.parent.name, "inputs": key_inputs, "files": files,
                    **(extra or {})}
        atomic_write_json(folder / MANIFEST, manifest)
        return manifest

    def discard(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def entries(self) -> list[dict]:
        out = []
        for manifest in sorted(self.root.glob(f"*/*/{MANIFEST}")):
            try:
                data = json.loads(manifest.read_text())
            except json.JSONDecodeError:
                data = {"key": manifest.parent.name, "kind": manifest.parent.parent.name, "inputs": {}}
            size = sum(p.stat().st_size for p in manifest.parent.rglob("*") if p.is_file())
            ok, why = self.valid(manifest.parent)
            out.append({**data, "path": str(manifest.parent), "bytes": size, "valid": ok, "problem": why})
        return out

    def clear(self) -> int:
        n = len(list(self.root.glob("*/*")))
        shutil.rmtree(self.root, ignore_errors=True)
        return n
