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
    from spqr_fast.backends.resolve import BackendResolver
    from spqr_fast.backends.selection import MachineOffer
    from spqr_fast.config import BackendConfig
    from spqr_fast.keys import FileHasher

    cpu = MachineOffer(providers=["CPUExecutionProvider"])
    gpu = MachineOffer(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], gpu="H100")
    log: list[str] = []

    def resolver(kind: str, offer: MachineOffer) -> BackendResolver:
        return BackendResolver(BackendConfig(kind=kind), FileHasher(None), log=log.append, offer=offer)

    class Graphs:
        def __init__(self, providers):
            self.providers = providers

    # the providers come from the same candidate order as generation's, ONNX Runtime only
    graphs, report = _as_written(resolver("auto", cpu).resolve_judge("X", Graphs, lambda g: 1e-9, 1e-4))
    assert isinstance(graphs, Graphs) and graphs.providers == ["CPUExecutionProvider"] and report["chosen"] == "ort-cpu"
    assert log == ["backend for X: ort-cpu (parity: error 1.0e-09 ≤ 1e-04)"]
    assert {"backend": "ort-cuda", "reason": "ONNX Runtime has no CUDAExecutionProvider (install onnxruntime-gpu: "
            "pip install 'spqr-fast[gpu]')"} in report["skipped"]
    graphs, report = _as_written(resolver("auto", gpu).resolve_judge("X", Graphs, lambda g: 1e-9, 1e-4))
    assert graphs.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"] and report["chosen"] == "ort-cuda"
    # parity fails on the GPU provider: the CPU one is tried next, then torch
    graphs, report = _as_written(resolver("auto", gpu).resolve_judge("X", Graphs, lambda g: 1.0, 1e-4))
    assert graphs is None and report["chosen"] == "torch" and "parity failed" in log[-1]
    assert [s["backend"] for s in report["skipped"]] == ["ort-cuda", "ort-cpu"]
    graphs, report = _as_written(resolver("auto", MachineOffer()).resolve_judge("X", Graphs, lambda g: 0.0, 1e-4))
    assert graphs is None and "no ONNX Runtime provider" in log[-1]

    def broken(providers):
        raise RuntimeError("exporter crashed\nlong trace")

    graphs, report = _as_written(resolver("ort", cpu).resolve_judge("X", broken, lambda g: 0.0, 1e-4))
    assert graphs is None and report["skipped"][-1] == {"backend": "ort-cpu", "reason": "build failed: exporter crashed"}
    log.clear()
    for kind in ("torch", "tensorrt"):  # requests without an ONNX Runtime candidate keep judges on torch, silently
        graphs, report = _as_written(resolver(kind, gpu).resolve_judge("X", broken, lambda g: 0.0, 1e-4))
        assert graphs is None and report["chosen"] == "torch" and report["skipped"] == [] and log == []


def _as_written(resolved):
    """(components, the backend report as provenance writes it)."""
    components, report = resolved
    return components, report.dump()
