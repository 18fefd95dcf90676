"""A generated fuzz suite (Hypothesis): configs, prompt files, criteria and rules, cache manifests
and command options drawn from strategies, each asserting the same contract — a result or one
`error:` line (exit 2), never a traceback, never a NaN in an output, nothing outside the output
folder touched. Found examples are kept in tests/hypothesis-db (committed), so a failure found
once is replayed on every run. The fast tier runs a few dozen examples per property, the slow
tier (`make test-slow`) hundreds."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import example as hypothesis_example
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from spqr_fast.cli import main
from spqr_fast.errors import SpqrError
from spqr_fast.safe_text import is_control

DATABASE = DirectoryBasedExampleDatabase(str(Path(__file__).parent / "hypothesis-db"))
TIERS = [pytest.param(25, id="fast"), pytest.param(300, id="slow", marks=pytest.mark.slow)]

NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["[/]", "[link=file:///etc/passwd]x[/link]", "\x1b]0;pwned\x07", "\x1b[2J", "a\x00b", "..",
                     "../../etc/passwd", "~nobody-here/x", "", " ", "nan", "inf", "-1", "1e309", "\u2028", "\x0b"]),
)
NUMBERS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, NASTY_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(NASTY_TEXT, inner, max_size=3)), max_leaves=6)


def _run(n: int, strategy, check, found: tuple = ()) -> None:
    """`check` over `n` drawn examples, after the ones found failing before (`found`, replayed
    on every run; Hypothesis prunes its database of examples that pass again)."""
    @settings(max_examples=n, database=DATABASE, deadline=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(strategy)
    def inner(example):
        check(example)

    for example in found:
        inner = hypothesis_example(example)(inner)
    inner()


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    yield path


def _no_nan(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_no_nan(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_nan(v) for v in obj)
    return True


@pytest.mark.parametrize("examples", TIERS)
def test_config_values_are_accepted_or_refused_in_one_line(examples, demo_config_dict, demo_project):
    """Any leaf of a valid config replaced by any value: the loader accepts it (and then holds no
    NaN) or raises one SpqrError with a one-line message."""
    from spqr_fast.config import parse_config

    paths = [p for p in _leaves(demo_config_dict) if p]

    def check(example):
        index, value = example
        cfg = copy.deepcopy(demo_config_dict)
        *parents, last = paths[index % len(paths)]
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value
        try:
            parsed = parse_config(cfg, source="fuzz.yaml", base_dir=demo_project.parent, must_exist=False)
        except SpqrError as err:
            assert "\n" not in str(err)
            return
        assert _no_nan(json.loads(parsed.model_dump_json()))

    found = tuple((i, v) for i in range(40) for v in (float("nan"), -1, "[/]"))  # NaN, negative, markup everywhere
    _run(examples, st.tuples(st.integers(min_value=0, max_value=10_000), VALUES), check, found)


PROMPT_ROWS = st.lists(st.lists(NASTY_TEXT, min_size=1, max_size=4), min_size=0, max_size=6)


@pytest.mark.parametrize("examples", TIERS)
def test_prompt_files_read_or_refused_with_clean_prompts(examples, tmp_path_factory):
    """Any CSV, JSON Lines or text written from nasty cells: read (every prompt printable, ids
    unique, counts consistent) or one InputError."""
    import csv
    import io

    from spqr_fast.config import PromptSet
    from spqr_fast.prompts import read_prompt_file

    folder = tmp_path_factory.mktemp("fuzz-prompts")

    def check(example):
        rows, suffix, header = example
        path = folder / f"p{suffix}"
        if suffix == ".csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            if header:
                writer.writerow(["prompt", "id", "seed", "category"][: max(len(r) for r in rows)] if rows else ["prompt"])
            writer.writerows(rows)
            path.write_text(buf.getvalue(), encoding="utf-8", errors="surrogatepass")
        elif suffix == ".jsonl":
            path.write_text("".join(json.dumps(dict(zip(["prompt", "id", "seed"], r))) + "\n" for r in rows))
        else:
            path.write_text("\n".join(r[0] for r in rows), encoding="utf-8", errors="surrogatepass")
        try:
            prompts, report = read_prompt_file(PromptSet(path=str(path)))
        except SpqrError as err:
            assert "\n" not in str(err)
            return
        except UnicodeEncodeError:
            return  # hypothesis drew a lone surrogate: not a file anyone can write as UTF-8
        assert all(p.text and p.text.strip() == p.text and not any(map(is_control, p.text)) for p in prompts)
        assert len({p.id for p in prompts}) == len(prompts)
        assert report.kept == len(prompts) <= report.rows_read

    found = ([["\ud7fc"]], ".csv", False), ([["\x08"]], ".csv", False), ([["a\x0bb", "1"]], ".txt", False), ([["x", "0"], ["y", "0"]], ".csv", True)
    _run(examples, st.tuples(PROMPT_ROWS, st.sampled_from([".csv", ".jsonl", ".txt"]), st.booleans()), check, found)


@pytest.mark.parametrize("examples", TIERS)
def test_criteria_rules_and_budgets_parse_or_refuse_in_one_line(examples):
    from spqr_fast.audit.criteria import parse_budget, parse_criteria
    from spqr_fast.compare.rules import parse_rules

    def check(text):
        for parse in (lambda t: parse_criteria(t, has_fine_tune=True), parse_rules, parse_budget):
            try:
                parse(text)
            except SpqrError as err:
                assert "\n" not in str(err)

    grammar = st.one_of(NASTY_TEXT, st.builds(lambda q, op, v: f"{q}{op}{v}",
                                              st.sampled_from(["h", "dh", "tifa", "S", "R", "x", ""]),
                                              st.sampled_from(["<=", ">=", ":", "<", ""]),
                                              st.one_of(NUMBERS.map(str), NASTY_TEXT)))
    _run(examples, grammar, check)


@pytest.mark.parametrize("examples", TIERS)
def test_cache_manifests_never_crash_listing_and_clear_removes_only_its_own(examples, tmp_path_factory):
    """A cache root holding folders with arbitrary manifest.json contents: `engines list` never
    crashes, and `engines clear` removes only folders whose manifest is spqr-fast's own."""
    from spqr_fast.export.cache import ArtefactCache, read_manifest

    def check(example):
        name, content = example
        root = tmp_path_factory.mktemp("cache")
        folder = root / "onnx" / name
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_bytes(content)
        (folder / "index.html").write_text("user file")
        ours = read_manifest(folder) is not None
        result = CliRunner().invoke(main, ["engines", "list", "--root", str(root)])
        assert result.exit_code == 0 and "Traceback" not in result.output
        ArtefactCache(root).clear()
        assert folder.exists() != ours

    names = st.one_of(st.sampled_from(["a" * 24, "0123456789abcdef01234567"]),
                      st.text(alphabet="abcdef0123456789.-_", min_size=1, max_size=30).filter(lambda s: s not in (".", "..")))
    contents = st.one_of(
        st.builds(lambda d: json.dumps(d).encode(), VALUES),
        st.binary(max_size=40),
        st.just(json.dumps({"key": "a" * 24, "kind": "onnx", "inputs": {}, "files": {}}).encode()),
    )
    _run(examples, st.tuples(names, contents), check)


@pytest.mark.parametrize("examples", TIERS)
def test_score_and_plan_size_options_and_rows(examples, tmp_path_factory):
    """`score` over generated metric rows and `plan-size` over generated numbers: exit 0 with
    finite numbers, or exit 2 with exactly one `error:` line — never a traceback."""
    folder = tmp_path_factory.mktemp("fuzz-score")

    def check(example):
        rows, width, h_before, h_after = example
        path = folder / "m.csv"
        path.write_text("model,h_before,h_after,clip_score,fid\n" + "".join(",".join(map(str, r)) + "\n" for r in rows),
                        encoding="utf-8", errors="replace")
        for args in (["score", str(path), "--json"],
                     ["plan-size", "--width", str(width), "--h-before", str(h_before), "--h-after", str(h_after),
                      "--json"]):
            result = CliRunner().invoke(main, args)
            assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
            if result.exit_code == 0:
                assert _no_nan(json.loads(result.stdout))
            else:
                assert result.exit_code == 2
                assert result.output.count("error:") == 1 and result.output.count("\n") == 1, result.output

    cell = st.one_of(NUMBERS, NASTY_TEXT)
    rows = st.lists(st.tuples(st.sampled_from(["a", "b", "[/]", "c\x1b[2J"]), cell, cell, cell, cell), max_size=4)
    _run(examples, st.tuples(rows, cell, cell, cell), check)


def test_the_example_database_is_in_the_repository():
    assert Path(DATABASE.path).resolve().is_relative_to(Path(__file__).parent.resolve())
    assert os.environ.get("HYPOTHESIS_DATABASE") is None  # nothing redirects it away from the repo
