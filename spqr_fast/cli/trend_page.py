"""Writing the history's trend page (the page itself: history/trend.py)."""

from __future__ import annotations

from pathlib import Path


def write_trend(path: Path, runs, rules) -> None:
    from ..history.trend import trend_html

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(trend_html(runs, rules), encoding="utf-8")
    tmp.replace(path)
