"""Pure pieces of the pipeline, tested without any model: the verdict fusion of several safety
judges, and the package's import graph (no circle, the floors depend one way)."""

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
