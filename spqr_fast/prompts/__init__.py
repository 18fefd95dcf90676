"""Prompt sets as their authors wrote them: files read by the role of each column, every skipped
or altered row counted, and one id scheme for every file type.

`readers` turns a file into a table of rows, `roles` decides which column holds the prompt, the
id, the seed, the guidance and the categories, `build` makes `Prompt`s from the table and counts
what it had to skip or change (`report`), and `select` filters and samples them as the config asks.
"""

from .build import distinct_ids, load_prompt_set, read_prompt_file, select
from .model import MAX_PROMPT_CHARS, Prompt
from .references import IMAGE_SUFFIXES, list_reference_images
from .report import PromptFileReport

__all__ = ["IMAGE_SUFFIXES", "MAX_PROMPT_CHARS", "Prompt", "PromptFileReport", "distinct_ids",
           "list_reference_images", "load_prompt_set", "read_prompt_file", "select"]
