"""Files read from data are regular files: a FIFO, a device (a symlink to /dev/zero), a socket
would hang a read or feed it forever, so each is named and refused before it is opened."""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import InputError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def file_kind(path: Path) -> str | None:
    """What `path` (followed through symlinks) is when it is not a regular file; None when it
    is one. A missing path is 'missing'."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def file_in_the_way(path: Path) -> Path | None:
    """The first parent of `path` that exists but is not a folder (so `path` cannot be created), or None."""
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def require_regular_file(path: Path, role: str) -> Path:
    kind = file_kind(path)
    if kind is None:
        return path
    if kind == "missing":
        raise InputError(f"{role} '{path}' not found — fix the path")
    raise InputError(f"{role} '{path}' is {kind}, not a regular file — point to a file")
