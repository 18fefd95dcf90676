"""Text from data made safe to keep and to show: control characters (escape sequences' ESC, a
stray \\r, \\x0b…) and line or paragraph separators replaced, and Rich markup escaped, so that
no name, path or prompt steers the terminal."""

from __future__ import annotations

import unicodedata

from rich.markup import escape


BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # reorder what a terminal shows


def is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in BIDI_CONTROLS


def printable(text: str) -> str:
    """`text` with control characters, line/paragraph separators and bidirectional overrides
    replaced by spaces."""
    if text.isprintable():
        return text
    return "".join(" " if is_control(ch) else ch for ch in text)


def shown(value: object) -> str:
    """Any value from data, ready for `Console.print`: printable and with markup escaped."""
    return escape(printable(str(value)))
