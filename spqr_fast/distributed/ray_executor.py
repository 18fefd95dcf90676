"""Generation and judging on Ray: one actor per GPU (or per CPU worker), kept for the whole run.

Generation is cut into chunks of one model stage, and an idle actor gets a chunk of the stage it
already holds when there is one, so weights load once per actor and stage. Judging is cut into
one part per actor: each actor frees its pipeline, builds the judges once and writes the records
of its part into the shared stores; the driver then opens those stores by the judges'
identities, which every part must agree on. A task whose actor dies is retried on a fresh actor;
only in-flight work is lost, and finished images and records are already stored. (The tests
kill an actor mid-run by giving `RayExecutor` a worker class of their own.)
"""

from __future__ import annotations

import io
import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SpqrError
from ..plan import Stage, WorkItem, group_by_stage
from ..progress import make_progress

if TYPE_CHECKING:
    from ..context import RunContext
    from ..schema import StageLoad
    from ..judging import JudgedStores

MAX_RETRIES = 3
PASSED_ENV = ("SPQR_ENGINE_CACHE", "SPQR_RECIPES")


class _Worker:
    """One actor: a StageGenerator for generation chunks, a JudgeRunner for a judging part."""

    def __init__(self, cfg_json: str, out: str, device: str, threads: int):
        import torch

        from ..config import parse_config
        from ..keys import FileHasher
        from ..runtime import prepare_runtime
        from ..sampling.stage_generator import StageGenerator

        prepare_runtime()
        # CPU float kernels reduce in an order that depends on the thread count; matching the
        # driver's count makes a worker's images bit-identical to a local run on this machine.
        torch.set_num_threads(threads)
        self.cfg = parse_config(json.loads(cfg_json), "the Ray driver's config")  # checked as the driver's was
        self.out, self.device, self.threads = Path(out), device, threads
        self.hasher = FileHasher.for_folder(self.out)  # this process's one hasher (appends to the shared memo)
        self.generator = StageGenerator(self.cfg.generation, self.cfg.backend, self.out, device, log=lambda m: None,
                                        threads=threads, hasher=self.hasher)

    def generate(self, stage: Stage, items: list[WorkItem]) -> StageLoad:
        report = self.generator.load(stage)
        self.generator.run(stage, items)
        return report

    def judge(self, items: list[WorkItem], ref_paths: list[Path]) -> tuple[dict, dict]:
        """Judge this part; returns the judges' (identities, backend reports)."""
        from rich.console import Console

        from ..judging import JudgeRunner
        from ..store import ImageStore

        self.generator.release()  # the pipeline's memory goes back before the judges load
        runner = JudgeRunner(self.cfg, self.out, ImageStore(self.out), self.hasher, self.device,
                             Console(file=io.StringIO()), ort_threads=self.threads)
        judged = runner.run(items, ref_paths)
        return judged.identities, judged.backends


@dataclass
class _Task:
    method: str  # "generate" | "judge"
    args: tuple
    size: int  # images, for progress
    label: str  # for the retry line and the failure message
    affinity: str | None = None  # weights hash: prefer the actor already holding it
    attempts: int = 0


class _ActorPool:
    """Actors created as tasks need them (up to the cluster's capacity), each task retried on a
    fresh actor when its actor dies."""

    def __init__(self, ray, ctx: RunContext, capacity: int, gpus: int, threads: int, worker: type = _Worker):
        self.ray, self.capacity = ray, capacity
        actor_cls = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1 if gpus else threads, max_restarts=0)(worker)
        cfg_json, out, device = ctx.cfg.model_dump_json(), str(ctx.out), "cuda" if gpus else "cpu"
        self._new = lambda: actor_cls.remote(cfg_json, out, device, threads)
        self.actors: list = []
        self.holding: dict[int, str | None] = {}  # actor index → weights hash it has loaded

    def grow(self, wanted: int) -> int:
        while len(self.actors) < min(self.capacity, max(1, wanted)):
            self.actors.append(self._new())
        return len(self.actors)

    def run(self, tasks: deque[_Task], on_done: Callable[[_Task, Any], None], log: Callable[[str], None]) -> None:
        ray = self.ray
        inflight: dict = {}  # ref → (actor index, task)

        def dispatch(a: int) -> None:
            if not tasks:
                return
            pick = next((k for k, t in enumerate(tasks) if t.affinity and t.affinity == self.holding.get(a)), 0)
            task = tasks[pick]
            del tasks[pick]
            self.holding[a] = task.affinity
            inflight[getattr(self.actors[a], task.method).remote(*task.args)] = (a, task)

        for a in range(self.grow(len(tasks))):
            dispatch(a)
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            a, task = inflight.pop(done[0])
            try:
                on_done(task, ray.get(done[0]))
            except ray.exceptions.RayActorError:
                task.attempts += 1
                if task.attempts > MAX_RETRIES:
                    raise SpqrError(f"a Ray worker died {MAX_RETRIES + 1} times on {task.label} — see the Ray logs; "
                                    "finished images and records are kept, re-run to resume") from None
                log(f"ray: worker died on {task.label} — retrying on a fresh worker")
                tasks.appendleft(task)
                self.actors[a] = self._new()
                self.holding.pop(a, None)
            except ray.exceptions.RayTaskError as err:
                # A judge or input error raised on a worker: the driver says it in its own words.
                if isinstance(err.cause, SpqrError):
                    raise err.cause from None
                raise
            dispatch(a)


class RayExecutor:
    """Both stages on one Ray session (started on first use, shut down by `close` if started here)."""

    name = "ray"

    def __init__(self, address: str | None = None, worker: type = _Worker):
        """`worker`: the actor class (a `_Worker`; tests pass one that dies on cue)."""
        self.address = address
        self.worker = worker
        self._pool: _ActorPool | None = None
        self._started_here = False

    def _actors(self, ctx: RunContext) -> _ActorPool:
        if self._pool is not None:
            return self._pool
        try:
            import ray
        except ImportError:
            raise SpqrError("--executor ray needs the 'ray' package — pip install 'spqr-fast[ray]'") from None
        if not ray.is_initialized():
            passed = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     runtime_env={"env_vars": passed} if passed else None)
            self._started_here = True
        gpus = int(ray.cluster_resources().get("GPU", 0))
        threads = ctx.threads.used
        # One actor per GPU; on CPUs one per `threads` cores (a CPU worker uses what a local run uses).
        capacity = gpus or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        self._pool = _ActorPool(ray, ctx, capacity, gpus, threads, self.worker)
        return self._pool

    def generate(self, ctx: RunContext, stages: list[Stage], items: list[WorkItem]) -> dict[tuple[str, str], StageLoad]:
        by_stage = group_by_stage(items)
        size = max(1, ctx.cfg.generation.batch_size) * 2
        tasks: deque[_Task] = deque()
        for st in stages:
            todo = [it for it in by_stage.get((st.model, st.stage), []) if not ctx.images.has(it.key)]
            tasks.extend(_Task("generate", (st, todo[s:s + size]), len(todo[s:s + size]),
                               f"{st.model} [{st.stage}]", affinity=st.weights_hash) for s in range(0, len(todo), size))
        reports: dict[tuple[str, str], dict] = {}
        with make_progress(ctx.console) as progress:
            bar = progress.add_task("generate (ray)", total=len(items),
                                    completed=len(items) - sum(t.size for t in tasks), unit="img")
            if not tasks:
                return reports

            def done(task: _Task, report: dict) -> None:
                st = task.args[0]
                reports[(st.model, st.stage)] = report
                progress.advance(bar, task.size)

            self._actors(ctx).run(tasks, done, ctx.log)
        return reports

    def judge(self, ctx: RunContext, items: list[WorkItem], ref_paths: list[Path]) -> JudgedStores:
        from ..judging import JudgedStores, reference_keys
        from .shards import shard_slice

        judged = JudgedStores.open(ctx.cfg, ctx.out, ctx.hasher, reference_keys(ref_paths, ctx.hasher))
        if not items:  # nothing to judge: the stores are named from the judges' identities alone
            return judged
        pool = self._actors(ctx)
        n = pool.grow(len(items))
        tasks = deque(_Task("judge", (part, ref_paths if i == 0 else []), len(part), f"judging part {i + 1}/{n}")
                      for i in range(n) if (part := shard_slice(items, i, n)))
        answers: list[tuple[dict, dict]] = []
        with make_progress(ctx.console) as progress:
            bar = progress.add_task("judge (ray)", total=len(items), unit="img")

            def done(task: _Task, answer: tuple[dict, dict]) -> None:
                answers.append(answer)
                progress.advance(bar, task.size)

            pool.run(tasks, done, ctx.log)
        if any(ident != judged.identities for ident, _ in answers):
            raise SpqrError("the Ray workers' judges differ from the driver's (weights, thresholds or questions) — "
                            "give every worker the same judge files, then re-run")
        for _, backends in answers:  # a part whose records were all stored built no judge: keep a built one's report
            for name, report in backends.items():
                if name not in judged.backends or judged.backends[name].chosen is None:
                    judged.backends[name] = report
        ctx.log(f"judged on {len(answers)} Ray worker(s): {', '.join(judged.identities)}"
                + "".join(f"; {name} on {report.chosen}" for name, report in judged.backends.items()))
        return judged

    def close(self) -> None:
        if self._started_here:
            import ray

            ray.shutdown()
        self._pool = None
