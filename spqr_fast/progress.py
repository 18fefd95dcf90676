"""Progress of long stages: Rich bars (items, items/s, ETA) on a terminal; plain periodic lines
where stderr is a file or a pipe (nohup, Slurm logs, CI), which a live bar never reaches."""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task,
                           TextColumn, TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    def __init__(self, unit: str = "it"):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", self.unit)
        return Text("—" if speed is None else f"{speed:.2f} {unit}/s", style="progress.data.speed")


class LineProgress(Progress):
    """A Progress that prints one plain line per task when it starts, every `interval` seconds
    while it runs, and when it finishes — no live display."""

    def __init__(self, console: Console, interval: float):
        super().__init__(console=console, disable=True)
        self.interval = interval
        self._last: dict = {}
        self._finished: set = set()

    def add_task(self, description: str, *args, **kwargs):
        task_id = super().add_task(description, *args, **kwargs)
        self._last[task_id] = time.monotonic()
        task = self._task(task_id)
        if _done(task):
            self._finished.add(task_id)
            self.console.print(f"{description}: {task.completed:g}/{task.total:g} already done")
        else:
            self.console.print(f"{description}: {task.completed:g}/{task.total:g}")
        return task_id

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def update(self, task_id, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._report(task_id)

    def _task(self, task_id) -> Task:
        return next(t for t in self.tasks if t.id == task_id)

    def _report(self, task_id) -> None:
        task, now = self._task(task_id), time.monotonic()
        if task_id in self._finished or (not _done(task) and now - self._last[task_id] < self.interval):
            return
        self._last[task_id] = now
        unit = task.fields.get("unit", "it")
        speed = task.finished_speed or task.speed
        rate = "" if speed is None else f", {speed:.2f} {unit}/s"
        extra = "".join(f", {k} {v}" for k, v in task.fields.items() if k != "unit")
        if _done(task):
            self._finished.add(task_id)
            self.console.print(f"{task.description}: {task.completed:g}/{task.total:g} done in "
                               f"{task.elapsed or 0:.1f} s{rate}{extra}")
        else:
            eta = "" if task.time_remaining is None else f", about {task.time_remaining:.0f} s left"
            self.console.print(f"{task.description}: {task.completed:g}/{task.total:g}{rate}{eta}{extra}")


def _done(task: Task) -> bool:
    return task.total is not None and task.completed >= task.total


def progress_interval() -> float:
    """Seconds between plain progress lines (`SPQR_PROGRESS_SECONDS`, default 30)."""
    try:
        return max(0.0, float(os.environ.get("SPQR_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def make_progress(console: Console) -> Progress:
    if not console.is_terminal:
        return LineProgress(console, progress_interval())
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
