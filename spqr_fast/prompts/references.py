"""The real images FID compares generated ones against."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..input_files import file_kind

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def list_reference_images(folder: str | Path) -> list[Path]:
    """The images of a FID reference folder, sorted so that features are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"reference image folder '{folder}' not found — fix 'prompts.reference_images'")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in files:  # a FIFO or a link to /dev/zero named like an image would hang the reader
        kind = file_kind(path)
        if kind is not None:
            raise InputError(f"reference image '{path}' is {kind}, not a regular file — remove it from the folder")
    if len(files) < 2:
        raise InputError(f"reference image folder '{folder}' holds {len(files)} images; FID needs at least 2")
    return files
