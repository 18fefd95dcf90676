"""Content-addressed, resumable storage for images and per-image judge records.

Files are written to a temporary name and renamed into place, so a killed run leaves either a
complete file or none. An image counts as present only once its metadata (written last) exists.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes files private; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


def encode_png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def read_image_rgb(path: Path) -> np.ndarray:
    """An RGB uint8 array, or an InputError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise InputError(f"image '{path}' is unreadable or corrupt ({err}) — delete or replace it and re-run") from None


class ImageStore:
    """images/<ab>/<key>.png plus <key>.json metadata."""

    def __init__(self, root: Path):
        self.root = Path(root) / "images"

    def _base(self, key: str) -> Path:
        return self.root / key[:2] / key

    def image_path(self, key: str) -> Path:
        return self._base(key).with_suffix(".png")

    def has(self, key: str) -> bool:
        return self._base(key).with_suffix(".json").is_file() and self.image_path(key).is_file()

    def put(self, key: str, image: np.ndarray, meta: dict) -> None:
        atomic_write_bytes(self.image_path(key), encode_png(image))
        atomic_write_json(self._base(key).with_suffix(".json"), meta)

    def get(self, key: str) -> np.ndarray:
        return read_image_rgb(self.image_path(key))

    def meta(self, key: str) -> dict:
        return json.loads(self._base(key).with_suffix(".json").read_text())


class RecordStore:
    """Per-image judge outputs: records/<judge id>/<ab>/<image key>.json (or .npy for features)."""

    def __init__(self, root: Path, judge_id: str):
        self.root = Path(root) / "records" / judge_id

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def has(self, key: str, suffix: str = ".json") -> bool:
        return self._path(key, suffix).is_file()

    def put_json(self, key: str, record: dict) -> None:
        atomic_write_json(self._path(key, ".json"), record)

    def get_json(self, key: str) -> dict:
        return json.loads(self._path(key, ".json").read_text())

    def put_array(self, key: str, arr: np.ndarray) -> None:
        import io

        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        atomic_write_bytes(self._path(key, ".npy"), buf.getvalue())

    def get_array(self, key: str) -> np.ndarray:
        return np.load(self._path(key, ".npy"), allow_pickle=False)
