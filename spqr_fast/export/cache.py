"""The artefact cache: exported ONNX folders and TensorRT engines, each under a key hashing
everything that determines it, with a manifest JSON beside it. An artefact whose files no longer
match their manifest (corrupt, truncated, edited) is rebuilt, never trusted."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..keys import stable_hash
from ..store import atomic_write_json, file_lock, file_sha256

MANIFEST = "manifest.json"
ENV_ROOT = "SPQR_ENGINE_CACHE"
TMP_PREFIX = ".building-"
KEY = re.compile(r"[0-9a-f]{24}")  # stable_hash(key_inputs, n=24): every artefact folder's name
TMP_NAME = re.compile(rf"{re.escape(TMP_PREFIX)}([0-9a-f]{{24}})-[A-Za-z0-9_]+")  # tempfile.mkdtemp's suffix


CLEAR_LOCK = ".clear.lock"  # exclusive while `engines clear` runs, shared while a run opens an artefact


class ArtefactGone(Exception):
    """An artefact was removed (or broken) between its build and its use: build it again."""


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest when it is one spqr-fast wrote — a JSON object naming the folder's
    own key and kind, with its inputs and file hashes — else None. A folder of a user's project
    that happens to hold a `manifest.json` is not an artefact and is never listed or removed."""
    path = folder / MANIFEST
    if not KEY.fullmatch(folder.name) or path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("key") != folder.name or data.get("kind") != folder.parent.name:
        return None
    if not isinstance(data.get("inputs"), dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def own_files(folder: Path) -> list[Path]:
    """The files under `folder`, not following links (a pipeline folder links to its components,
    which are artefacts with their own manifests)."""
    found = []
    for top, _dirs, names in os.walk(folder):  # os.walk does not descend into linked folders
        found += [Path(top) / n for n in names if not (Path(top) / n).is_symlink()]
    return sorted(found)


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def built_for(manifest: dict) -> str:
    """The model an artefact was built for, in words (a component artefact may serve others
    sharing its weights later)."""
    source = manifest.get("source")
    if isinstance(source, dict) and source.get("path"):
        words = Path(str(source["path"])).name
        if source.get("unet_patch"):
            words += f" + UNet patch {Path(str(source['unet_patch'])).name}"
        if source.get("lora"):
            words += f" + LoRA {Path(str(source['lora'])).name}"
        return words
    return Path(str(manifest["model"])).name if manifest.get("model") else "?"


def default_root() -> Path:
    """`$SPQR_ENGINE_CACHE`, else `engines/cache` under the working directory (git-ignored)."""
    return Path(os.environ.get(ENV_ROOT) or Path.cwd() / "engines" / "cache")


class ArtefactCache:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_root()

    def folder(self, kind: str, key_inputs: dict) -> Path:
        return self.root / kind / stable_hash(key_inputs, n=24)

    def valid(self, folder: Path, *, deep: bool = False) -> tuple[bool, str]:
        """(usable, why not). Every file listed in the manifest must exist with its hash. A file
        whose size and modification time are those recorded when it was sealed is taken as
        unchanged without reading it (gigabytes per stage at SD 1.5 size); `deep` hashes all."""
        manifest = folder / MANIFEST
        if not manifest.is_file():
            return False, "no manifest (never built, or the build was interrupted)"
        try:
            data = json.loads(manifest.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False, "manifest is corrupt"
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            return False, "manifest is not an artefact manifest"
        stats = data.get("stats") if isinstance(data.get("stats"), dict) else {}
        for rel, sha in data["files"].items():
            path = folder / str(rel)
            if not path.resolve().is_relative_to(folder.resolve()):
                return False, f"manifest names '{rel}' outside its folder"
            if not path.is_file():
                return False, f"{rel} is missing"
            if not deep and stats.get(rel) == _stat(path):
                continue
            if file_sha256(path) != sha:
                return False, f"{rel} does not match its manifest (corrupt or stale)"
        return True, ""

    def seal(self, folder: Path, key_inputs: dict, extra: dict | None = None, *, key: str | None = None,
             kind: str | None = None) -> dict:
        """Write the manifest last: from then on the artefact counts as built. `key`/`kind` name
        the final place when `folder` is a temporary build folder."""
        paths = [p for p in own_files(folder) if p.name != MANIFEST]
        files = {str(p.relative_to(folder)): file_sha256(p) for p in paths}
        stats = {str(p.relative_to(folder)): _stat(p) for p in paths}
        manifest = {"key": key or folder.name, "kind": kind or folder.parent.name, "inputs": key_inputs,
                    "files": files, "stats": stats, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **(extra or {})}
        atomic_write_json(folder / MANIFEST, manifest)
        return manifest

    def get_or_build(self, kind: str, key_inputs: dict, build: Callable[[Path], dict | None], *,
                     label: str = "artefact", log: Callable[[str], None] = print) -> Path:
        """The valid artefact for `key_inputs`, building it first when it is missing or invalid.

        `build(folder)` fills an empty temporary folder and may return extra manifest fields. The
        folder is sealed and renamed into place only when complete, under a per-key lock: two runs
        sharing one cache wait for each other instead of deleting each other's half-written
        builds, and a killed build leaves only a temporary folder, never a half artefact."""
        folder = self.folder(kind, key_inputs)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(folder.parent / f".{folder.name}.lock",
                       on_wait=lambda: log(f"{label} {folder.name}: waiting for another run building it")):
            ok, why = self.valid(folder)
            if ok:
                return folder
            if folder.exists():
                log(f"{label} {folder.name}: {why} — rebuilding")
            for stale in folder.parent.glob(f"{TMP_PREFIX}{folder.name}-*"):  # builds killed mid-way
                self.discard(stale)
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f"{TMP_PREFIX}{folder.name}-"))
            try:
                extra = build(tmp)
                self.seal(tmp, key_inputs, extra, key=folder.name, kind=kind)
                self.discard(folder)
                os.replace(tmp, folder)
            finally:
                self.discard(tmp)
        return folder

    @contextmanager
    def reading(self, folder: Path) -> Iterator[Path]:
        """Hold the artefact while its files are opened: `engines clear` waits until the block
        ends, and an artefact that vanished before it began (cleared between its build and its
        use) raises ArtefactGone, so the caller builds it again instead of falling back."""
        with file_lock(self.root / CLEAR_LOCK, shared=True):
            ok, why = self.valid(folder)
            if ok:
                for top, dirs, names in os.walk(folder):
                    for name in (*dirs, *names):
                        link = Path(top) / name
                        if link.is_symlink() and not link.exists():
                            ok, why = False, f"{link.relative_to(folder)} links to a removed artefact"
            if not ok:
                raise ArtefactGone(f"artefact {folder.name}: {why}")
            yield folder

    def discard(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def entries(self) -> list[dict]:
        out = []
        for manifest in sorted(self.root.glob(f"*/*/{MANIFEST}")):
            data = read_manifest(manifest.parent)
            if data is None:
                continue  # a build in progress, or not an artefact of ours
            size = sum(p.stat().st_size for p in own_files(manifest.parent))
            ok, why = self.valid(manifest.parent)
            built = data.get("built_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(manifest.stat().st_mtime))
            out.append({**data, "path": str(manifest.parent), "bytes": size, "valid": ok, "problem": why,
                        "model": built_for(data), "built_at": built})
        return out

    def clear(self) -> tuple[int, list[Path]]:
        """Remove the `kind/key` folders that carry spqr-fast's own manifest (and leftovers of
        killed builds, by their exact name pattern), each under the per-key lock a build holds;
        anything else under the root is left alone. Returns (removed, kept paths)."""
        if not self.root.is_dir():
            return 0, []
        with file_lock(self.root / CLEAR_LOCK):  # runs opening an artefact finish first
            return self._clear()

    def _clear(self) -> tuple[int, list[Path]]:
        removed, kept = 0, []
        for kind_dir in sorted(self.root.iterdir()):
            if kind_dir.name == CLEAR_LOCK:
                continue
            if not kind_dir.is_dir() or kind_dir.is_symlink():
                kept.append(kind_dir)
                continue
            for entry in sorted(kind_dir.iterdir()):
                is_folder = entry.is_dir() and not entry.is_symlink()
                stale = TMP_NAME.fullmatch(entry.name)
                key = stale.group(1) if stale else entry.name
                if is_folder and (stale or read_manifest(entry) is not None):
                    with file_lock(kind_dir / f".{key}.lock"):  # a build of this key finishes first
                        if entry.exists():
                            self.discard(entry)
                            removed += 0 if stale else 1
                elif entry.is_file() and entry.name.endswith(".lock") and KEY.fullmatch(entry.name[1:-5]):
                    continue  # lock files stay: another process may hold one
                else:
                    kept.append(entry)
        return removed, kept
