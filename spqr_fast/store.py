"""Content-addressed, resumable storage for images and per-image judge records.

Files are written to a temporary name and renamed into place, so a killed run leaves either a
complete file or none. An image counts as present only once its metadata (written last) exists.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import InputError
from .input_files import require_regular_file


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


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB chunks (checkpoints can be gigabytes)."""
    import hashlib

    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


TEMP_GLOB = ".*.tmp"  # what atomic_write_bytes leaves behind when killed mid-write
OUTPUT_SETS = ".results"  # result files live in OUT/.results/<set>/, OUT/<name> links to the current set
OWN_FOLDERS = ("images", "records", "bft", ".cache", OUTPUT_SETS)


@contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None, *, shared: bool = False) -> Iterator[None]:
    """An advisory lock on `path` (exclusive, or `shared` with other shared holders), held for the
    block and released even when the process is killed. `on_wait` is called once if another
    process holds it."""
    import fcntl

    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, mode)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_temp_files(root: Path) -> int:
    """Delete the temporary files of killed writes under `root`; returns how many. Call it only
    while holding the folder's lock, so no live writer's file is taken."""
    n = 0
    # Only where spqr-fast writes: an output folder may sit inside a user's own tree.
    ours = [root.glob(TEMP_GLOB), *((root / sub).rglob(TEMP_GLOB) for sub in OWN_FOLDERS if (root / sub).is_dir())]
    for tmp in (t for found in ours for t in found):
        if tmp.is_symlink() or tmp.is_file():
            tmp.unlink(missing_ok=True)
            n += 1
    sets = root / OUTPUT_SETS
    current = os.readlink(sets / "current") if (sets / "current").is_symlink() else None
    for entry in sets.glob("*") if sets.is_dir() else ():
        if entry.name in ("current", current):
            continue
        if entry.is_symlink():
            entry.unlink()
        else:
            shutil.rmtree(entry, ignore_errors=True)
        n += 1
    return n


def prepare_output_dir(out: Path) -> Path:
    """Create `out` if needed and check it can be written, before any work is done."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output '{out}' is a file — give a folder for --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise InputError(f"output folder '{out}' is not writable ({err.strerror}) — fix its permissions "
                         "(or run with --user $(id -u) in Docker) or choose another --out") from None
    return out


def publish_outputs(out: Path, files: dict[str, bytes]) -> None:
    """Replace the whole set of result files at once: they are written into a new folder under
    OUT/.results/, then one rename points OUT/.results/current at it; OUT/<name> are links
    through `current`. A reader (or a kill) sees the old set or the new set, never a mix."""
    sets = out / OUTPUT_SETS
    sets.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=sets, prefix=".tmp-"))
    for name, data in files.items():
        atomic_write_bytes(staging / name, data)
    final = sets / f"set-{staging.name.removeprefix('.tmp-')}"
    staging.rename(final)
    pointer = sets / f".current-{final.name}"
    pointer.symlink_to(final.name)
    current = sets / "current"
    previous = os.readlink(current) if current.is_symlink() else None
    os.replace(pointer, current)  # the swap
    for name in files:
        link = out / name
        target = Path(OUTPUT_SETS) / "current" / name
        if not (link.is_symlink() and Path(os.readlink(link)) == target):
            tmp_link = out / f".{name}.link.tmp"
            tmp_link.unlink(missing_ok=True)
            tmp_link.symlink_to(target)
            os.replace(tmp_link, link)
    if previous and previous != final.name:
        shutil.rmtree(sets / previous, ignore_errors=True)


def read_json(path: Path, what: str = "record") -> object:
    """A stored JSON file, or one line naming the file when it is truncated or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{what} '{path}' is truncated or corrupt ({type(err).__name__}) — delete it and re-run "
                         "to recompute it") from None


def encode_png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def to_rgb8(im) -> np.ndarray:
    """An RGB uint8 array from a PIL image, as a viewer shows it: EXIF orientation applied, and
    16-bit greyscale scaled to 8 bits (PIL's `convert("RGB")` clips it, turning a 16-bit PNG
    almost white)."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16") or im.mode == "I":
        wide = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or wide.max() <= 65535 else float(wide.max())
        grey = np.clip(np.rint(wide / top * 255.0), 0, 255).astype(np.uint8)
        im = Image.fromarray(grey, mode="L")
    return np.asarray(im.convert("RGB"))


MAX_IMAGE_PIXELS = 64_000_000  # 8000 × 8000: far past any image a judge or BFT reads, far below a bomb


@contextmanager
def open_image(path: Path):
    """A PIL image opened from a regular file, its size checked from the header before any pixel
    is decoded (a decompression bomb is named, not decoded); every decoder failure names the file."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    require_regular_file(Path(path), "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise InputError(f"image '{path}' is {im.width}×{im.height} pixels, over the {MAX_IMAGE_PIXELS:,} "
                                     "spqr-fast decodes (a decompression bomb?) — resize or remove it")
                yield im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(f"image '{path}' is too large to decode safely ({err}) — resize or remove it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise InputError(f"image '{path}' is unreadable or corrupt ({err}) — delete or replace it and re-run") from None


def read_image_rgb(path: Path) -> np.ndarray:
    """An RGB uint8 array (see `to_rgb8`), or an InputError naming the file."""
    with open_image(path) as im:
        return to_rgb8(im)


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
        return read_json(self._base(key).with_suffix(".json"), "image metadata")  # type: ignore[return-value]


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
        return read_json(self._path(key, ".json"), "judge record")  # type: ignore[return-value]

    def put_array(self, key: str, arr: np.ndarray) -> None:
        import io

        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        atomic_write_bytes(self._path(key, ".npy"), buf.getvalue())

    def get_array(self, key: str) -> np.ndarray:
        path = self._path(key, ".npy")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            if isinstance(err, OSError) and not path.is_file():
                raise
            raise InputError(f"feature record '{path}' is truncated or corrupt — delete it and re-run to "
                             "recompute it") from None
        if not np.all(np.isfinite(arr)):
            raise InputError(f"feature record '{path}' holds NaN or infinite values — delete it and re-run; "
                             "if it comes back, the feature network's output is broken") from None
        return arr
