"""`spqr-fast eval`: the stages of `pipeline.py` run over one output folder, holding its lock.

Every stage reads what the previous one stored (images, per-image records) and skips what
already exists, so a killed run resumes where it stopped and re-scoring never regenerates.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .config import EvalConfig
from .context import Executor, RunContext
from .distributed.local_executor import LocalExecutor
from .keys import FileHasher
from .models import pick_device
from .pipeline import EVALUATION, SHARD, run_steps
from .runtime import apply_threads
from .schema import Results
from .store import ImageStore, file_lock, prepare_output_dir, remove_temp_files


def make_executor(kind: str, ray_address: str | None = None) -> Executor:
    if kind == "ray":
        from .distributed.ray_executor import RayExecutor

        return RayExecutor(ray_address)
    return LocalExecutor()


class Evaluator:
    def __init__(self, cfg: EvalConfig, out_dir: Path, console: Console | None = None):
        self.cfg = cfg
        self.out = prepare_output_dir(Path(out_dir))
        self.console = console or Console(stderr=True)

    def run(self, *, executor: str = "local", ray_address: str | None = None,
            shard: tuple[int, int] | None = None, require_complete: bool = False) -> Results | None:
        """The whole evaluation, holding the output folder's lock: a second run into the same
        folder waits for this one, then finds its work done. With `shard=(i, n)` only that slice
        is generated and judged (no scores: None); with `require_complete` (merging shards) nothing may
        be left to train or generate."""
        waiting = lambda: self.console.print(f"waiting for another spqr-fast run writing to {self.out}")  # noqa: E731
        with file_lock(self.out / ".lock", on_wait=waiting):
            removed = remove_temp_files(self.out)
            if removed:
                self.console.print(f"removed {removed} temporary file(s) left by an interrupted run")
            runner = make_executor(executor, ray_address)
            try:
                ctx = self.context(runner, shard=shard, require_complete=require_complete)
                return run_steps(ctx, SHARD if shard is not None else EVALUATION).results
            finally:
                runner.close()

    def context(self, executor: Executor, **options) -> RunContext:
        """The context every stage reads: this run's config, output folder, machine and executor."""
        return RunContext(cfg=self.cfg, out=self.out, images=ImageStore(self.out),
                          hasher=FileHasher.for_folder(self.out),
                          device=pick_device(self.cfg.generation.device), threads=apply_threads(self.cfg.threads),
                          console=self.console, executor=executor, **options)
