"""Errors a user can fix. Each carries one line naming the problem and the fix; the CLI
prints it and exits non-zero. Anything else is a bug and shows its traceback."""

import errno

# OS errors that are the machine's state, not a bug: the CLI reports them in one line.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class SpqrError(Exception):
    """Base class for user-fixable problems. The message is one line whatever data it quotes:
    line breaks and control characters in a quoted prompt, path or option are replaced."""

    def __init__(self, message: str = "", *args):
        from .safe_text import printable

        super().__init__(printable(str(message)), *args)


class ConfigError(SpqrError):
    """The configuration file is malformed, has an unknown key or a wrong type."""


class InputError(SpqrError):
    """An input file or folder is missing, unreadable or of the wrong kind."""


class ModelLoadError(SpqrError):
    """A model could not be loaded from the path given."""


class GenerationError(SpqrError):
    """Generation produced unusable output (e.g. NaN latents)."""


class JudgeError(SpqrError):
    """A judge could not be loaded or failed in a way the run cannot absorb."""


_DISK_FULL_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded")


def as_disk_error(err: BaseException) -> OSError | None:
    """The OS error behind `err` when it is the machine's state (disk full, read-only, no
    permission), else None. Libraries with native writers (safetensors, ONNX) raise their own
    exception types for a full disk, so their chain and text are read too."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_ERRNOS:
            return seen
        if any(t in str(seen) for t in _DISK_FULL_TEXT):
            return OSError(errno.ENOSPC, "No space left on device")
        seen = seen.__cause__ or seen.__context__
    return None
