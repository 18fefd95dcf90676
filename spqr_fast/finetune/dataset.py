"""BFT datasets: an image folder with `metadata.jsonl` lines `{"file_name", "text"}`.

Everything is checked before training starts; problems are reported with counts and names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class BftDataset:
    root: Path
    files: tuple[Path, ...]
    captions: tuple[str, ...]
    sha256: str

    def __len__(self) -> int:
        return len(self.files)


def _names(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", … ({len(items) - n} more)" if len(items) > n else "")


def load_bft_dataset(folder: str | Path) -> BftDataset:
    from ..store import open_image

    root = Path(folder)
    meta = root / "metadata.jsonl"
    if root.is_file():
        raise InputError(f"BFT dataset '{root}' is a file — give the image folder that holds metadata.jsonl")
    if not root.is_dir():
        raise InputError(f"BFT dataset '{root}' not found — give an image folder with metadata.jsonl")
    if not meta.is_file():
        raise InputError(f"BFT dataset '{root}' has no metadata.jsonl — add one line per image: "
                         '{"file_name": "...", "text": "..."}')
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"BFT dataset '{meta}' is not UTF-8 text (byte {err.start}) — save it as UTF-8") from None
    malformed, missing, empty, unreadable, outside = [], [], [], [], []
    files, captions = [], []
    inside = root.resolve()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, text = row["file_name"], row["text"]
        except (json.JSONDecodeError, KeyError, TypeError):
            malformed.append(f"line {n}")
            continue
        name = str(name)
        if "\x00" in name or len(name) > 4096 or any(len(part.encode()) > 255 for part in name.split("/")):
            malformed.append(f"line {n} (a file name with a NUL byte or longer than file systems allow)")
            continue
        path = root / name
        if not path.resolve().is_relative_to(inside):  # '../x' or '/etc/x' would read files elsewhere
            outside.append(f"{name} (line {n})")
            continue
        if not path.is_file():
            missing.append(str(name))
            continue
        if not isinstance(text, str) or not text.strip():
            empty.append(f"{name} (line {n})")
            continue
        try:
            with open_image(path) as im:
                im.verify()
        except InputError:
            unreadable.append(str(name))
            continue
        files.append(path)
        captions.append(text.strip())
    problems = [f"{len(v)} {label} ({_names(v)})" for label, v in
                (("malformed metadata lines", malformed), ("file names outside the dataset folder", outside),
                 ("missing images", missing),
                 ("empty captions", empty), ("unreadable images", unreadable)) if v]
    if problems:
        raise InputError(f"BFT dataset '{root}': {'; '.join(problems)} — fix metadata.jsonl or the files, then re-run")
    if not files:
        raise InputError(f"BFT dataset '{root}' is empty — metadata.jsonl lists no images")
    h = hashlib.sha256()
    for f, c in zip(files, captions):
        h.update(f.relative_to(root).as_posix().encode())  # == the name for a flat folder
        h.update(c.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return BftDataset(root, tuple(files), tuple(captions), h.hexdigest())


def load_training_image(path: Path, resolution: int) -> np.ndarray:
    """Resize the shorter side to `resolution`, centre-crop, scale to [-1, 1]; CHW float32."""
    from PIL import Image

    from ..store import open_image, to_rgb8

    with open_image(path) as im:
        im = Image.fromarray(to_rgb8(im))
        scale = resolution / min(im.size)
        im = im.resize((max(resolution, round(im.width * scale)), max(resolution, round(im.height * scale))),
                       Image.BICUBIC)
        left, top = (im.width - resolution) // 2, (im.height - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return arr.transpose(2, 0, 1)
