"""Process-wide settings for the libraries we drive: never reach the hub, keep logs quiet."""

from __future__ import annotations

import os


def prepare_runtime() -> None:
    """Call once, before diffusers/transformers are imported (the CLI does)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def quiet_library_progress() -> None:
    """diffusers' own 'Loading pipeline components' bars would interleave with ours."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()
