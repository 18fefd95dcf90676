"""The local executor: generation and judging in this process (the `Executor` protocol is in
`context.py`; `ray_executor.py` is the other one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..safe_text import shown

from ..plan import Stage, WorkItem, group_by_stage
from ..progress import make_progress
from ..runtime import memory_snapshot, reset_cuda_peak

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import StageLoad
    from ..judging import JudgedStores


class LocalExecutor:
    """This process: one model stage loaded at a time, then every judge in turn."""

    name = "local"

    def generate(self, ctx: RunContext, stages: list[Stage], items: list[WorkItem]) -> dict[tuple[str, str], StageLoad]:
        from ..sampling.stage_generator import StageGenerator

        generator = StageGenerator(ctx.cfg.generation, ctx.cfg.backend, ctx.out, ctx.device,
                                   log=lambda m: ctx.console.print(shown(m)), threads=ctx.threads.used,
                                   hasher=ctx.hasher)
        by_stage = group_by_stage(items)
        load_reports = {}
        with make_progress(ctx.console) as progress:
            for st in stages:
                stage_items = by_stage.get((st.model, st.stage), [])
                todo = sum(not ctx.images.has(it.key) for it in stage_items)
                task = progress.add_task(shown(f"generate {st.model} [{st.stage} BFT]"), total=len(stage_items),
                                         completed=len(stage_items) - todo, unit="img")
                if todo:
                    reset_cuda_peak()  # memory_after_stage's CUDA peak is this stage's
                    loaded = generator.load(st, todo)
                    generator.run(st, stage_items, on_batch=lambda n, task=task: progress.advance(task, n))
                    load_reports[(st.model, st.stage)] = loaded.model_copy(update={"memory_after_stage": memory_snapshot()})
        generator.release()
        return load_reports

    def judge(self, ctx: RunContext, items: list[WorkItem], ref_paths: list[Path]) -> JudgedStores:
        from ..judging import JudgeRunner

        return JudgeRunner(ctx.cfg, ctx.out, ctx.images, ctx.hasher, ctx.device, ctx.console,
                           ort_threads=ctx.threads.used).run(items, ref_paths)

    def close(self) -> None:
        pass
