"""Errors a user can fix. Each carries one line naming the problem and the fix; the CLI
prints it and exits non-zero. Anything else is a bug and shows its traceback."""


class SpqrError(Exception):
    """Base class for user-fixable problems."""


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
