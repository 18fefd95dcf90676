"""Text from data made safe to keep and to show: control characters (escape sequences' ESC, a
stray \\r, \\x0b…) and line or paragraph separators replaced, and Rich markup escaped, so that
no name, path or prompt steers the terminal."""

from __future__ import annotations

import unicodedata

from rich.markup import escape


def printable(text: str) -> str:
    """`text` with control characters and line/paragraph separators replaced by spaces."""
    if text.isprintable():
        return text
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)


def shown(value: object) -> str:
    """Any value from data, ready for `Console.print`: printable and with markup escaped."""
    return escape(printable(str(value)))
