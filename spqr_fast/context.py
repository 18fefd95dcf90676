"""The types the evaluation's steps share: the run's context (read by every step, written by
none), the state the steps hand on, and the executor protocol. Executors say where the
generate and judge steps run: each has the same methods, takes the run's context and the items
to work on, and writes into the output folder's stores; none sees the rest of the pipeline.
`distributed/local_executor.py` runs in this process, `distributed/ray_executor.py` on a Ray
cluster's actors. A shard (`--shard i/n`) is not an executor but a slice of the plan
(`pipeline.SHARD`): any executor can run it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rich.console import Console
from .safe_text import shown

from .config import EvalConfig, ModelSource
from .judging import JudgedStores
from .keys import FileHasher
from .measure import Measured
from .plan import Stage, WorkItem
from .prompts import Prompt
from .runtime import Threads
from .schema import Results, StageLoad
from .store import ImageStore


class Executor(Protocol):
    name: str  # recorded in results.json's provenance

    def generate(self, ctx: RunContext, stages: list[Stage], items: list[WorkItem]) -> dict[tuple[str, str], StageLoad]:
        """Every missing image of `items` into the image store; load reports per (model, stage)."""

    def judge(self, ctx: RunContext, items: list[WorkItem], ref_paths: list[Path]) -> JudgedStores:
        """Every configured judge over the images of `items` (and the reference images) that
        have no record yet."""

    def close(self) -> None:
        """Give back what the executor holds (a Ray session it started)."""


@dataclass(frozen=True)
class RunContext:
    """What every stage may read and nothing writes: the config, the output folder and its image
    store, the machine, where to print, and the executor running generation and judging."""

    cfg: EvalConfig
    out: Path
    images: ImageStore
    hasher: FileHasher
    device: str
    threads: Threads  # intra-op threads: `.used` for ONNX Runtime sessions, `.record()` for results
    console: Console
    executor: Executor
    shard: tuple[int, int] | None = None
    require_complete: bool = False  # merging shards: nothing may be left to train or generate

    def log(self, message: str) -> None:
        self.console.print(shown(message))


@dataclass(frozen=True)
class RunState:
    """What the pipeline's steps hand on, filled in step by step (each field names the step
    writing it). Immutable: a step returns a new state with its part added."""

    prompt_sets: dict[str, list[Prompt]] = field(default_factory=dict)  # inputs
    ref_paths: list[Path] = field(default_factory=list)  # inputs
    fine_tuned: dict[str, ModelSource] = field(default_factory=dict)  # finetune
    bft_cards: dict[str, dict] = field(default_factory=dict)  # finetune
    stages: list[Stage] = field(default_factory=list)  # plan
    items: list[WorkItem] = field(default_factory=list)  # plan: the whole plan
    work: list[WorkItem] = field(default_factory=list)  # plan: what this run generates and judges
    load_reports: dict[tuple[str, str], StageLoad] = field(default_factory=dict)  # generate
    judged: JudgedStores | None = None  # judge
    measured: Measured | None = None  # measure
    results: Results | None = None  # score (a shard run has none: `report --merge` scores)
