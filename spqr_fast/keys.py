"""Hashes that name things: canonical cache keys, file hashes memoised on disk, and what
determines a model's weights (whole, and per exported component)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .config import ModelSource
from .model_formats import layout
from .models import WEIGHT_SUFFIXES, _file_keys


def canonical(obj: object) -> object:
    """One form per value: integral floats as ints (16.0 and 16 are one setting, whether it came
    from YAML, a default or a JSON round trip), tuples as lists, keys as strings."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def stable_hash(obj: object, n: int = 24) -> str:
    """Hex digest of a JSON-serialisable object in canonical form (sorted keys), for cache keys."""
    blob = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


MEMO = Path(".cache") / "file-hashes.jsonl"  # under an output folder: one memo per folder


class FileHasher:
    """sha256 of files, memoised on disk by (path, size, mtime) so multi-GB checkpoints hash once.

    The memo is an append-only journal, one JSON line per entry: a new entry costs one short
    append (work linear in the entries, not a rewrite of the whole memo per entry), and two runs
    sharing it each append their own lines, so neither loses the other's. Reading takes the last
    line per key; a line cut short by a kill is skipped. `for_folder` gives a run's hasher; one is
    made per run (per process) and passed down."""

    def __init__(self, cache_file: Path | None = None):
        self.cache_file = cache_file
        self._cache: dict[str, str] = {}
        self.appended_bytes = 0  # what this hasher wrote to its memo (the scale test reads it)
        self._cut_short = False  # the memo ends inside a line (a kill mid-append): end it first
        if cache_file is not None and cache_file.is_file():
            self._cache, self._cut_short = _read_journal(cache_file)

    @classmethod
    def for_folder(cls, out: Path) -> "FileHasher":
        """The memoising hasher of an output folder (an older folder's whole-file memo,
        `file-hashes.json`, is read too, so its files are not hashed again)."""
        hasher = cls(Path(out) / MEMO)
        legacy = Path(out) / ".cache" / "file-hashes.json"
        if legacy.is_file():
            try:
                old = json.loads(legacy.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                old = {}
            if isinstance(old, dict):
                hasher._cache = {**{k: v for k, v in old.items() if isinstance(v, str)}, **hasher._cache}
        return hasher

    def file(self, path: Path) -> str:
        from .store import file_sha256

        return self._cached("", path, file_sha256)

    def config(self, path: Path, drop: str) -> str:
        """A file's hash with a JSON config's bookkeeping left out: `drop="origin"` leaves out
        `_name_or_path` (where the library loaded it from before saving), `drop="private"` every
        `_`-prefixed key (that and the library version). Other files hash by their bytes."""
        def digest(p: Path) -> str:
            data = _json_config(p)
            if data is None or (drop == "origin" and "_name_or_path" not in data):
                return self.file(p)
            bookkeeping = (lambda k: k == "_name_or_path") if drop == "origin" else (lambda k: k.startswith("_"))
            kept = {k: v for k, v in data.items() if not bookkeeping(k)}
            return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()

        return self._cached(f"{drop}|", path, digest) if path.suffix == ".json" else self.file(path)

    def _cached(self, prefix: str, path: Path, digest) -> str:
        st = path.stat()
        tag = f"{prefix}{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        if tag not in self._cache:
            self._cache[tag] = digest(path)
            if self.cache_file is not None:
                self._append(tag, self._cache[tag])
        return self._cache[tag]

    def _append(self, tag: str, digest: str) -> None:
        line = ("\n" if self._cut_short else "") + json.dumps([tag, digest]) + "\n"
        self._cut_short = False
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        # O_APPEND: each write lands whole at the end, whoever else appends to the memo meanwhile
        fd = os.open(self.cache_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # type: ignore[arg-type]
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        self.appended_bytes += len(line.encode())

    def tree(self, path: Path, suffixes: tuple[str, ...] | None = None) -> str:
        """Hash of a file, or of a folder's files (relative names + contents), optionally only
        those with the given suffixes. In a folder, a JSON config's `_name_or_path` (where the
        library loaded it from before saving) is left out: the same weights saved from another
        place are the same model, with the same image keys and BFT cache."""
        path = Path(path)
        if path.is_file():
            return self.file(path)
        h = hashlib.sha256()
        files = (p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        for f in sorted(p for p in files if suffixes is None or p.suffix in suffixes):
            h.update(str(f.relative_to(path)).encode())
            h.update(self.config(f, drop="origin").encode())
        return h.hexdigest()


def _read_journal(path: Path) -> tuple[dict[str, str], bool]:
    """(the memo's entries, whether it ends inside a line). The last line per key wins; unreadable
    lines (a write cut short by a kill, a foreign line) are skipped — a memo entry missing only
    means hashing that file again."""
    entries: dict[str, str] = {}
    try:
        data = path.read_bytes()
    except OSError:
        return entries, False
    for line in data.splitlines():
        try:
            tag, digest = json.loads(line)
        except (ValueError, TypeError):
            continue
        if isinstance(tag, str) and isinstance(digest, str):
            entries[tag] = digest
    return entries, bool(data) and not data.endswith(b"\n")


def _json_config(path: Path) -> dict | None:
    """A JSON file's object, or None when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def source_hash(src: ModelSource, hasher: FileHasher) -> str:
    """A hash of everything that determines the loaded weights."""
    parts = {"format": src.format, "lora_scale": src.lora_scale}
    for attr in ("path", "base", "lora", "unet_patch"):
        val = getattr(src, attr)
        if val is not None:
            # a LoRA folder also holds cards and logs; only its weights determine the model
            parts[attr] = hasher.tree(Path(val), tuple(WEIGHT_SUFFIXES) if attr == "lora" else None)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def component_hashes(src: ModelSource, hasher: FileHasher) -> dict[str, str]:
    """Per exported component, a hash of what determines its weights. Erasure releases and BFT
    (LoRA, UNet patches) change only the UNet, so a UNet release's or a fine-tuned model's text
    encoder and VAE hash as their base's and their exported graphs are shared. Where the source
    cannot be told apart cheaply (a whole-model file, a torch-pickle UNet file), every component
    takes the whole source's hash: never shared, never wrong. "source" is the whole source's hash."""
    whole = source_hash(src, hasher)
    every = {"text_encoder": whole, "unet": whole, "vae_decoder": whole, "source": whole}
    path = Path(src.path)  # type: ignore[arg-type]
    folder: Path | None = None
    if path.is_dir():
        folder = path
    elif src.base is not None and (src.format == "unet_state_dict" or (
            src.format == "auto" and path.suffix == ".safetensors" and layout(_file_keys(path)) != "ldm_full")):
        folder = Path(src.base)
    if folder is None or not (folder / "text_encoder").is_dir() or not (folder / "vae").is_dir():
        return every
    text_encoder = _component_hash(folder / "text_encoder", hasher)
    if src.lora is not None and _lora_touches_text_encoder(Path(src.lora)):
        text_encoder = hashlib.sha256(f"{text_encoder}|{whole}".encode()).hexdigest()
    return {**every, "text_encoder": text_encoder, "vae_decoder": _component_hash(folder / "vae", hasher)}


def _component_hash(folder: Path, hasher: FileHasher) -> str:
    """A component folder's weights and configuration; config keys starting with '_' (where it
    was loaded from, the library version) are bookkeeping, so a re-saved copy hashes the same."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(f.relative_to(folder)).encode())
        h.update(hasher.config(f, drop="private").encode())
    return h.hexdigest()


def _lora_touches_text_encoder(folder: Path) -> bool:
    """Whether a LoRA folder's weights adapt the text encoder too (read from key names only)."""
    from safetensors import safe_open

    for f in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            with safe_open(str(f), framework="pt") as fh:
                if any(k.startswith(("text_encoder", "lora_te")) for k in fh.keys()):
                    return True
        except Exception:  # noqa: BLE001 - unreadable: assume it does (never share wrongly)
            return True
    return False
