"""The prompt record every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

# CLIP's text encoder reads 77 tokens; BPE tokens are rarely over 20 characters, so 2,000
# characters keeps every prompt a text encoder can see in full.
MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True)
class Prompt:
    """One prompt. `id` picks the image's seed and labels it in every record, so it comes from
    the file where the file gives one and never from the prompt's position then."""

    id: str
    text: str
    categories: tuple[str, ...] = ()
    seed: int | None = None  # per-prompt seed from the file, used only with use_file_seeds
    guidance: float | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)
