"""Generation and judging of an audit's chunks with every stage's pipeline and every judge loaded
once. An audit looks at its intervals every few prompts; loading the stages again at each look
(and re-checking an export's parity) would spend the budget on loading, so this keeps them: an
audit has one model, at most two stages, and its judges — memory an eval of a cohort, which
loads one stage at a time, cannot afford but an audit can."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..plan import Stage, WorkItem, group_by_stage

if TYPE_CHECKING:
    from ..context import RunContext
    from ..judging import JudgedStores, JudgeRunner
    from ..sampling.stage_generator import StageGenerator
    from ..schema import StageLoad


class WarmChunks:
    """`generate` then `judge` for each chunk; `close` when the audit ends. `planned[(model,
    stage)]`: the images the audit may make of that stage in all (what `backend: auto` weighs an
    export against, once, at the stage's first load); `log`: where the stages' load lines go.
    `seconds_left()`: the time budget's remainder (None: an image budget), which caps the images
    an export is weighed against. `keep=False` (`audit --low-memory`): each stage is freed after
    its images and each judge after its records, as `eval` does — for a GPU that cannot hold the
    stages and the judges at once; every chunk then loads them again (the backend stays the
    stage's first choice)."""

    def __init__(self, ctx: RunContext, stages: list[Stage], planned: dict[tuple[str, str], int],
                 log: Callable[[str], None], seconds_left: Callable[[], float | None], keep: bool = True):
        from ..judging import JudgeRunner

        self.ctx, self.stages, self.planned, self.log, self.keep = ctx, stages, planned, log, keep
        self.seconds_left = seconds_left
        self.generators: dict[tuple[str, str], StageGenerator] = {}
        self.loads: dict[tuple[str, str], StageLoad] = {}
        self.judges: JudgeRunner = JudgeRunner(ctx.cfg, ctx.out, ctx.images, ctx.hasher, ctx.device, ctx.console,
                                               ort_threads=ctx.threads.used, keep_judges=keep)

    def generate(self, items: list[WorkItem]) -> float:
        """Every missing image of `items`, each stage loaded at its first missing image. Returns
        the seconds spent on loads that later chunks will not repeat (0 when not kept), so the
        audit's rate per image — what it plans the next chunks from — leaves them out."""
        by_stage = group_by_stage(items)
        once = 0.0
        for st in self.stages:
            key = (st.model, st.stage)
            stage_items = by_stage.get(key, [])
            if all(self.ctx.images.has(it.key) for it in stage_items):
                continue
            generator = self.generators.get(key) or self._generator()
            self.generators[key] = generator
            started = time.monotonic()
            self.loads[key] = generator.load(st, self.planned.get(key), within_seconds=self.seconds_left())
            once += time.monotonic() - started if self.keep else 0.0
            generator.run(st, stage_items)
            if not self.keep:
                generator.release()
        return once

    def judge(self, items: list[WorkItem]) -> tuple[JudgedStores, float]:
        """The chunk's judge records, and the seconds spent building judges that later chunks
        will not build again (0 when not kept)."""
        before = self.judges.build_seconds
        judged = self.judges.run(items, [])
        return judged, (self.judges.build_seconds - before) if self.keep else 0.0

    def close(self) -> None:
        for generator in self.generators.values():
            generator.release()
        self.generators.clear()
        self.judges.release()

    def _generator(self) -> StageGenerator:
        from ..sampling.stage_generator import StageGenerator

        ctx = self.ctx
        return StageGenerator(ctx.cfg.generation, ctx.cfg.backend, ctx.out, ctx.device,
                              log=self.log, threads=ctx.threads.used, hasher=ctx.hasher)
