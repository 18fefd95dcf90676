"""The Ray executor's scheduling (affinity, retries, errors) against a fake Ray: no cluster."""

from collections import deque
from types import SimpleNamespace

import pytest

from spqr_fast.distributed.ray_executor import MAX_RETRIES, _ActorPool, _Task
from spqr_fast.errors import JudgeError, SpqrError


class _Died(Exception):
    pass


class FakeRef:
    """A pending call (refs are dict keys in the pool, as Ray's ObjectRefs are)."""

    def __init__(self, method, args):
        self.method, self.args = method, args


class FakeRay:
    """What `_ActorPool` uses of Ray: remote classes, refs, wait, get and two exception types."""

    class exceptions:
        class RayActorError(Exception):
            pass

        class RayTaskError(Exception):
            def __init__(self, cause):
                super().__init__(str(cause))
                self.cause = cause

    def __init__(self):
        self.actors_started = 0

    def remote(self, **options):
        ray = self

        class ActorClass:
            def __init__(self, cls):
                self.cls = cls

            def remote(self, *args):
                ray.actors_started += 1
                instance = self.cls(*args)
                return SimpleNamespace(**{name: SimpleNamespace(remote=lambda *a, m=getattr(instance, name): FakeRef(m, a))
                                          for name in ("generate", "judge")})

        return ActorClass

    def wait(self, refs, num_returns):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        try:
            return ref.method(*ref.args)
        except _Died:
            raise self.exceptions.RayActorError() from None
        except Exception as err:  # a task's own error reaches the driver wrapped
            raise self.exceptions.RayTaskError(err) from None


def _worker(calls: list, die: dict):
    class Worker:
        def __init__(self, cfg_json, out, device, threads):
            self.id = die["started"] = die.get("started", 0) + 1

        def generate(self, stage, items):
            calls.append((self.id, stage, tuple(items)))
            if die.get("times", 0) > 0:
                die["times"] -= 1
                raise _Died()
            return {"stage": stage}

        def judge(self, items, refs):
            raise JudgeError("judge 'clip' failed on image k1 (ValueError: bad)")

    return Worker


def _pool(ray, worker, capacity=2):
    ctx = SimpleNamespace(cfg=SimpleNamespace(model_dump_json=lambda: "{}"), out="/tmp/out")
    return _ActorPool(ray, ctx, capacity, gpus=0, threads=1, worker=worker)


def test_chunks_go_to_the_actor_holding_their_weights_and_a_dead_actor_is_replaced():
    ray, calls, die = FakeRay(), [], {"times": 1}
    pool = _pool(ray, _worker(calls, die))
    tasks = deque(_Task("generate", (stage, [i]), 1, f"m [{stage}]", affinity=stage)
                  for stage, i in [("a", 1), ("b", 2), ("a", 3), ("b", 4)])
    done, log = [], []
    pool.run(tasks, lambda task, result: done.append(task.args[1][0]), log.append)
    assert sorted(done) == [1, 2, 3, 4]  # every chunk finished once, the one on the dead actor included
    assert log == ["ray: worker died on m [a] — retrying on a fresh worker"] and ray.actors_started == 3
    by_actor: dict = {}
    for actor, stage, _ in calls:
        by_actor.setdefault(actor, set()).add(stage)
    assert all(len(stages) == 1 for stages in by_actor.values())  # each actor kept to the weights it held


def test_a_chunk_that_keeps_killing_workers_stops_the_run_with_one_line():
    ray, calls = FakeRay(), []
    pool = _pool(ray, _worker(calls, {"times": 99}), capacity=1)
    with pytest.raises(SpqrError, match=f"died {MAX_RETRIES + 1} times on m \\[a\\]"):
        pool.run(deque([_Task("generate", ("a", [1]), 1, "m [a]", affinity="a")]), lambda t, r: None, lambda m: None)
    assert len(calls) == MAX_RETRIES + 1


def test_a_judge_error_on_a_worker_reaches_the_driver_as_itself():
    pool = _pool(FakeRay(), _worker([], {}))
    with pytest.raises(JudgeError, match="judge 'clip' failed on image k1") as caught:
        pool.run(deque([_Task("judge", ([], []), 0, "judging part 1/1")]), lambda t, r: None, lambda m: None)
    assert type(caught.value) is JudgeError  # not Ray's wrapper: the CLI prints its one line
