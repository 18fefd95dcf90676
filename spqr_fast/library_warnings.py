"""Third-party warnings a user cannot act on (PyTorch's ONNX tracer, transformers' deprecations)
go to a log file in the output folder, not between the progress bars; the terminal gets one
line with their count. `--verbose` lets them through as before."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

LOG = Path("logs") / "library-warnings.log"


@contextmanager
def warnings_to_log(out: Path, verbose: bool = False) -> Iterator[list[str]]:
    """Inside the block, every Python warning is appended to OUT/logs/library-warnings.log
    (one line each, with where it came from); the list yielded collects them for a count."""
    seen: list[str] = []
    if verbose:
        yield seen
        return
    path = Path(out) / LOG
    for planted in (path.parent, path):
        if planted.is_symlink():
            raise InputError(f"'{planted}' is a symbolic link — spqr-fast writes only inside its output folder; "
                             "remove the link and re-run")
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each distinct warning once per place, as Python shows them

        def to_log(message, category, filename, lineno, file=None, line=None):
            text = f"{category.__name__}: {str(message).splitlines()[0] if str(message) else ''} ({filename}:{lineno})"
            seen.append(text)
            path.parent.mkdir(parents=True, exist_ok=True)  # a run without warnings leaves no log
            try:  # O_NOFOLLOW: a link planted after the check is not followed either
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError:
                return  # the count is still reported; the log is not written through a link
            with os.fdopen(fd, "a", encoding="utf-8") as log:
                log.write(text + "\n")

        warnings.showwarning = to_log
        yield seen
