"""Generation on Ray: one actor per GPU (or per CPU worker) holding a loaded pipeline.

Work is cut into chunks of one model stage, and an idle actor gets a chunk of the stage it
already holds when there is one, so weights load once per actor and stage. A chunk whose actor
dies is retried on a fresh actor; only in-flight items are lost, and finished images are already
in the shared store. Judges then run as a second stage reading that store, exactly as locally.

Chaos testing: `SPQR_FAULT_INJECT=die-after=N,marker=PATH` makes the first actor to reach its
N-th chunk exit abruptly (once: the marker file records that it happened).
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

from ..config import EvalConfig
from ..errors import SpqrError
from ..store import ImageStore

MAX_RETRIES = 3


class _GeneratorWorker:
    def __init__(self, cfg_json: str, out: str, device: str, threads: int):
        import torch

        from ..config import EvalConfig
        from ..runtime import prepare_runtime
        from ..sampling.stage_generator import StageGenerator

        prepare_runtime()
        # CPU float kernels reduce in an order that depends on the thread count; matching the
        # driver's count makes a worker's images bit-identical to a local run on this machine.
        torch.set_num_threads(threads)
        self.generator = StageGenerator(EvalConfig.model_validate_json(cfg_json), Path(out), device,
                                        log=lambda m: None)
        self.chunks_done = 0

    def _maybe_die(self) -> None:
        spec = os.environ.get("SPQR_FAULT_INJECT")
        if not spec:
            return
        opts = dict(kv.split("=", 1) for kv in spec.split(","))
        marker = Path(opts["marker"])
        if self.chunks_done >= int(opts["die-after"]) and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)

    def run(self, stage, items) -> tuple[dict, int]:
        self._maybe_die()
        report = self.generator.load(stage)
        self.generator.run(stage, items)
        self.chunks_done += 1
        return report, len(items)


def _chunks(stages, by_stage, store, size: int) -> deque:
    work = deque()
    for st in stages:
        todo = [it for it in by_stage[(st.model, st.stage)] if not store.has(it.key)]
        for s in range(0, len(todo), size):
            work.append((st, todo[s:s + size]))
    return work


def ray_generate(cfg: EvalConfig, out: Path, stages, items, *, address: str | None, progress, log) -> dict:
    """Generate every missing image of `items` into OUT's image store on a Ray cluster (the same
    StageGenerator as a local run, one per actor); returns load reports per stage."""
    try:
        import ray
    except ImportError:
        raise SpqrError("--executor ray needs the 'ray' package — pip install 'spqr-fast[ray]'") from None
    from ..plan import group_by_stage

    by_stage = group_by_stage(items)
    work = _chunks(stages, by_stage, ImageStore(out), max(1, cfg.generation.batch_size) * 2)
    task = progress.add_task("generate (ray)", total=len(items), completed=len(items) - sum(len(c[1]) for c in work),
                             unit="img")
    if not work:
        return {}
    started_here = not ray.is_initialized()
    if started_here:
        passed = {k: os.environ[k] for k in ("SPQR_FAULT_INJECT", "SPQR_ENGINE_CACHE", "SPQR_RECIPES") if k in os.environ}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 runtime_env={"env_vars": passed} if passed else None)
    try:
        import torch

        gpus = int(ray.cluster_resources().get("GPU", 0))
        threads = torch.get_num_threads()
        # One actor per GPU; on CPUs one per `threads` cores (a CPU worker uses what a local run uses).
        workers = gpus or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        workers = min(workers, len(work))
        actor_cls = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1 if gpus else threads,
                               max_restarts=0)(_GeneratorWorker)
        cfg_json = cfg.model_dump_json()
        device = "cuda" if gpus else "cpu"

        def new_actor():
            return actor_cls.remote(cfg_json, str(out), device, threads)

        actors = [new_actor() for _ in range(workers)]
        holding: dict[int, str] = {}  # actor index → weights hash it has loaded
        inflight: dict = {}  # ref → (actor index, chunk, attempt)
        retries: dict[int, int] = {}
        reports: dict = {}

        def dispatch(a: int) -> None:
            if not work:
                return
            want = holding.get(a)
            pick = next((k for k, (st, _) in enumerate(work) if st.weights_hash == want), 0)
            st, chunk = work[pick]
            del work[pick]
            holding[a] = st.weights_hash
            inflight[actors[a].run.remote(st, chunk)] = (a, st, chunk)

        for a in range(len(actors)):
            dispatch(a)
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            a, st, chunk = inflight.pop(done[0])
            try:
                report, n = ray.get(done[0])
                reports[(st.model, st.stage)] = report
                progress.advance(task, n)
            except ray.exceptions.RayActorError:
                key = id(chunk)
                retries[key] = retries.get(key, 0) + 1
                if retries[key] > MAX_RETRIES:
                    raise SpqrError(f"a Ray worker died {MAX_RETRIES} times on {st.model} [{st.stage}] — "
                                    "see the Ray logs; finished images are kept, re-run to resume") from None
                log(f"ray: worker died on {st.model} [{st.stage}] — retrying {len(chunk)} items")
                work.appendleft((st, chunk))
                actors[a] = new_actor()
                holding.pop(a, None)
            dispatch(a)
        return reports
    finally:
        if started_here:
            ray.shutdown()
