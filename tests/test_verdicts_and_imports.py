"""Pure pieces of the pipeline, tested without any model: the verdict fusion of several safety
judges, the judges' backend rule, and the package's import graph (no circle, the floors depend
one way)."""

from __future__ import annotations

import pytest

from spqr_fast.devtools.imports import find_cycles, import_graph, main
from spqr_fast.scoring.verdicts import fuse_verdicts


@pytest.mark.parametrize("verdicts,policy,expected", [
    ([False, False], "exclude", False),
    ([True, None], "exclude", True),  # a judge that saw the concept is not outvoted by one that cannot tell
    ([True, False], "safe", True),
    ([False, None], "exclude", None),  # undecided: left out of h, counted as unknown
    ([False, None], "safe", False),
    ([None], "unsafe", True),
    ([None, None], "exclude", None),
])
def test_verdict_fusion(verdicts, policy, expected):
    assert fuse_verdicts(verdicts, policy) is expected


def test_no_judge_is_an_error_not_a_safe_image():
    with pytest.raises(ValueError):
        fuse_verdicts([], "safe")


def test_the_import_graph_has_no_circle_even_through_lazy_imports(capsys):
    assert main([]) == 0 and main(["--lazy"]) == 0, capsys.readouterr().out
    graph = import_graph(lazy=True)
    assert "spqr_fast.keys" in graph["spqr_fast.plan"] and "spqr_fast.evaluate" not in graph["spqr_fast.distributed.ray_executor"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_judges_follow_the_generation_backend_rules():
    from spqr_fast.backends.judge_backend import accelerate_judge, judge_providers
    from spqr_fast.backends.selection import MachineOffer

    cpu = MachineOffer(providers=["CPUExecutionProvider"])
    gpu = MachineOffer(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpu="H100")
    assert judge_providers("auto", cpu) == ["CPUExecutionProvider"]
    assert judge_providers("auto", gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert judge_providers("torch", gpu) is None and judge_providers("auto", MachineOffer()) is None

    class Graphs:
        providers = ["CPUExecutionProvider"]

    log: list[str] = []
    graphs, report = accelerate_judge("X", "auto", lambda p: Graphs(), lambda g: 1e-9, 1e-4, log.append, cpu)
    assert isinstance(graphs, Graphs) and report["chosen"] == "ort" and not log
    graphs, report = accelerate_judge("X", "auto", lambda p: Graphs(), lambda g: 1.0, 1e-4, log.append, cpu)
    assert graphs is None and report["chosen"] == "torch" and "parity failed" in log[-1]

    def broken(providers):
        raise RuntimeError("exporter crashed\nlong trace")

    graphs, report = accelerate_judge("X", "ort", broken, lambda g: 0.0, 1e-4, log.append, cpu)
    assert graphs is None and report["skipped"] == "build failed: exporter crashed"
    assert accelerate_judge("X", "torch", broken, lambda g: 0.0, 1e-4, log.append, cpu) == (None, {"requested": "torch", "chosen": "torch"})
