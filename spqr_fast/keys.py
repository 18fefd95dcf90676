"""Hashes that name things: canonical cache keys, file hashes memoised on disk, and what
determines a model's weights (whole, and per exported component)."""

from __future__ import annotations

import hashlib
import json
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


class FileHasher:
    """sha256 of files, cached on disk by (path, size, mtime) so multi-GB checkpoints hash once."""

    def __init__(self, cache_file: Path | None = None):
        self.cache_file = cache_file
        self._cache: dict[str, str] = {}
        if cache_file is not None and cache_file.is_file():
            try:
                self._cache = json.loads(cache_file.read_text())
            except json.JSONDecodeError:
                self._cache = {}

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
            from .store import atomic_write_json

            self._cache[tag] = digest(path)
            if self.cache_file is not None:
                atomic_write_json(self.cache_file, self._cache)
        return self._cache[tag]

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
