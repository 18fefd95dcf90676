"""Progress where stderr is not a terminal: plain lines at start, periodically and at the end."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape

from spqr_fast.progress import LineProgress, make_progress


def _lines(interval: float, monkeypatch) -> list[str]:
    monkeypatch.setenv("SPQR_PROGRESS_SECONDS", str(interval))
    buf = io.StringIO()
    with make_progress(Console(file=buf, width=200)) as progress:
        assert isinstance(progress, LineProgress)
        task = progress.add_task(escape("generate base [before BFT]"), total=4, completed=1, unit="img")
        for _ in range(3):
            progress.advance(task, 1)
        progress.add_task("judge clip", total=2, completed=2, unit="img")
        ft = progress.add_task("finetune lite", total=3, loss="-")
        progress.update(ft, advance=3, loss="0.1234")
    return [line for line in buf.getvalue().splitlines() if line]  # older rich (13.7) ends with an empty line


def test_plain_lines_every_interval_and_at_the_end(monkeypatch):
    every = _lines(0, monkeypatch)
    assert every[0] == "generate base [before BFT]: 1/4"
    assert every[1].startswith("generate base [before BFT]: 2/4") and "s left" in every[2]  # rate after 2 samples
    assert every[3].startswith("generate base [before BFT]: 4/4 done in ") and "img/s" in every[3]
    assert "judge clip: 2/2 already done" in every and every[-1].endswith("loss 0.1234")
    quiet = _lines(3600, monkeypatch)  # long interval: only the start and the end of each task
    assert quiet[0] == "generate base [before BFT]: 1/4" and quiet[1].startswith("generate base [before BFT]: 4/4 done")
    assert len(quiet) == 5


def test_a_terminal_gets_live_bars():
    from rich.progress import Progress

    progress = make_progress(Console(file=io.StringIO(), force_terminal=True))
    assert type(progress) is Progress
