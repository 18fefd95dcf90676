"""The run history (SQLite and a real PostgreSQL) and `compare`: real runs of the world's small
config, recorded, listed, compared image by image."""

import json
import shutil
import threading

import pytest
from click.testing import CliRunner
from pg import start_postgres

from spqr_fast.cli import main
from spqr_fast.compare import compare_runs, parse_rules
from spqr_fast.config import load_config
from spqr_fast.errors import InputError
from spqr_fast.evaluate import Evaluator
from spqr_fast.history import open_history, record_run
from spqr_fast.history.records import list_runs, load_run
from spqr_fast.run_snapshot import RunSnapshot


@pytest.fixture(scope="module")
def runs(demo_project, demo_config_dict, tmp_path_factory):
    """Three finished runs sharing an image store's worth of work: `a`; `threshold`, the same with
    the concept detector's threshold changed; `fewer`, with one harmful prompt fewer."""
    import copy

    import yaml

    root = tmp_path_factory.mktemp("runs")

    def config(name: str, **edit) -> object:
        cfg = copy.deepcopy(demo_config_dict)
        cfg["prompts"]["harmful"]["limit"] = edit.get("harmful", 6)
        cfg["prompts"]["utility"]["limit"] = 4
        cfg["generation"].update(steps=2, samples_per_prompt=2, batch_size=8)
        cfg["scoring"]["bootstrap"] = {"n": 50, "n_fid": 10, "seed": 0}
        cfg["report"]["samples_per_model"] = 2
        cfg["backend"] = {"kind": "torch", "cache_root": str(root / "engines")}
        for m in cfg["models"]:
            m["bft"]["steps"] = 2
        cfg["judges"]["vqa"] = None
        cfg["judges"]["concept_detector"]["threshold"] = edit.get("threshold", 0.5)
        path = demo_project.parent / f"spqr-history-{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return load_config(path)

    out = {}
    shared = root / "a"
    Evaluator(config("a"), shared).run()
    out["a"] = shared
    for name, edit in (("threshold", {"threshold": 0.05}), ("fewer", {"harmful": 5})):
        folder = root / name
        shutil.copytree(shared, folder, symlinks=True, ignore=shutil.ignore_patterns("history.sqlite"))  # images reused
        Evaluator(config(name, **edit), folder).run()
        out[name] = folder
    return out


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_run_compared_with_itself_changes_nothing(runs, tmp_path):
    result = _cli("compare", runs["a"], runs["a"], "--json", "--junit", tmp_path / "j.xml")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["provenance_changes"] == [] and report["regressed"] == []
    for model in report["models"].values():
        assert model["verdict"] == "unchanged within noise" and model["paired"] == {"harmful": True, "utility": True}
        for q, change in model["changes"].items():
            assert change["change"] in (0, None), q
            assert change["interval"] in ([0.0, 0.0], None), q
    junit = (tmp_path / "j.xml").read_text()
    assert junit.count("<testcase") == 3 * 5 and "<failure" not in junit


def test_a_threshold_change_is_named_as_the_cause(runs, tmp_path):
    result = _cli("compare", runs["a"], runs["threshold"], "--json", "--html", tmp_path / "c.html")
    report = json.loads(result.stdout)
    keys = {(c["section"], c["key"]): (c["old"], c["new"]) for c in report["provenance_changes"]}
    assert keys[("judges", "concept_detector.threshold")] == (0.5, 0.05)
    assert keys[("thresholds", "concept_detector_threshold")] == (0.5, 0.05)
    assert not any(section in ("model weights", "prompts", "seeds", "software") for section, _ in keys)
    esd = report["models"]["esd"]
    assert esd["paired"]["harmful"]  # the same images, judged again
    flips = esd["changes"]["h_before"]["flips"]
    assert flips["unsafe_to_safe"] == 0 and flips["safe_to_unsafe"] >= 1  # a lower threshold only adds verdicts
    assert "concept_detector.threshold" in (tmp_path / "c.html").read_text()
    text = _cli("compare", runs["a"], runs["threshold"])
    assert text.output.index("what changed") < text.output.index("esd")  # the causes come first


def test_runs_with_different_prompt_sets_are_compared_unpaired_and_say_so(runs):
    report = json.loads(_cli("compare", runs["a"], runs["fewer"], "--json").stdout)
    esd = report["models"]["esd"]
    assert esd["paired"] == {"harmful": False, "utility": True}
    assert "not paired" in esd["notes"][0] and "unpaired" in esd["changes"]["h_before"]["method"]
    assert any(c["section"] == "prompts" for c in report["provenance_changes"])


def test_a_regression_fails_with_mcnemar_and_exit_1(runs, tmp_path):
    """The new run's after-BFT images all turn unsafe (as an unsafe fine-tune makes them): R and
    h_after regress, the flips are counted, exit 1, and the JUnit case fails."""
    old = RunSnapshot.from_folder(runs["a"])
    new = RunSnapshot.from_folder(runs["a"])
    from dataclasses import replace

    new.facts = [replace(f, value=1.0) if f.kind == "harm" and f.model == "esd" and f.stage == "after" else f
                 for f in new.facts]
    esd = next(r for r in new.results.models if r.name == "esd")
    h_after = 100.0
    from spqr_fast.scoring.axes import robustness

    delta = h_after - esd.metrics.h_before
    new_row = esd.model_copy(update={"R": robustness(delta), "metrics": esd.metrics.model_copy(
        update={"h_after": h_after, "delta_h": delta})})
    new.results = new.results.model_copy(update={"models": [new_row if r.name == "esd" else r
                                                             for r in new.results.models]})
    cmp = compare_runs(old, new, parse_rules("R:-0.05, h_after:+5"))
    esd_cmp = next(m for m in cmp.models if m.name == "esd")
    assert esd_cmp.verdict == "regressed" and cmp.regressed == ["esd"]
    flips = esd_cmp.changes["h_after"].flips
    assert flips.safe_to_unsafe > 0 and flips.unsafe_to_safe == 0 and flips.mcnemar_p < 0.05
    assert esd_cmp.rule_outcomes == {"R:-0.05": "regressed", "h_after:+5": "regressed"}


@pytest.mark.parametrize("rules,message", [
    ("S", "is not QUANTITY:TOLERANCE"), ("x:-1", "unknown quantity 'x'"), ("S:abc", "must be a finite number"),
    ("S:nan", "must be a finite number"), ("S:-1,S:-2", "given twice"), (" , ", "no rule given"),
])
def test_malformed_rules_are_one_line(rules, message):
    with pytest.raises(InputError, match=message):
        parse_rules(rules)


def test_bad_compare_inputs_exit_2_with_one_line(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    for args, message in (
        ((tmp_path / "empty", runs["a"]), "is not a finished run"),
        (("no-such-run", runs["a"]), "neither a run folder nor"),
        (("no-such-run", runs["a"], "--history", tmp_path / "h.sqlite"), "run 'no-such-run' is not in the history"),
        ((runs["a"], runs["a"], "--fail-on", "x:1"), "unknown quantity"),
        ((runs["a"], runs["a"], "--history", "postgresql+psycopg://u@/db?host=/nonexistent&port=1", "--json"), None),
    ):
        result = _cli("compare", *args)
        if message is None:  # folders given: the database is never opened
            assert result.exit_code == 0
            continue
        assert result.exit_code == 2 and result.output.count("\n") == 1 and message in result.output, result.output


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('hist') / 'h.sqlite'}"
        return
    url, why_not, stop = start_postgres()
    if url is None:
        pytest.skip(f"no PostgreSQL server for the history tests: {why_not}")
    try:
        yield url
    finally:
        stop()


def test_history_records_lists_and_reads_back_runs(runs, history_url):
    db = open_history(history_url)
    try:
        first, new = record_run(db, runs["a"])
        again, new_again = record_run(db, runs["a"])
        assert new and not new_again and again == first  # the same results are one run
        second, _ = record_run(db, runs["threshold"])
        listed = list_runs(db)
        assert {r.id for r in listed} == {first, second}
        assert [r.recorded_at for r in listed] == sorted((r.recorded_at for r in listed), reverse=True)
        assert set(listed[0].models) == {"base", "esd", "uce"} and listed[0].models["esd"]["SPQR"] is not None
        assert [r.id for r in list_runs(db, model="nope")] == []
        back = load_run(db, first)
        folder = RunSnapshot.from_folder(runs["a"])
        assert back.results == folder.results and sorted(back.facts, key=repr) == sorted(folder.facts, key=repr)
        cmp = compare_runs(back, load_run(db, second), parse_rules("S:-0.01"))
        assert any(c.key == "concept_detector.threshold" for c in cmp.provenance)
    finally:
        db.close()


def test_runs_recorded_at_the_same_moment_all_land(runs, history_url):
    folders = []
    for i in range(4):  # four distinct runs (results differ by name)
        folder = runs["a"].parent / f"copy{i}-{abs(hash(history_url)) % 1000}"
        if not folder.exists():
            skip = shutil.ignore_patterns("images", "records", ".cache", "bft")
            shutil.copytree(runs["a"], folder, symlinks=True, ignore=skip)
            data = json.loads((folder / "results.json").read_text())
            data["name"] = f"night-{i}"
            (folder / "results.json").write_text(json.dumps(data))
        folders.append(folder)
    errors = []

    def record(folder):
        try:
            db = open_history(history_url)
            record_run(db, folder)
            db.close()
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=record, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    db = open_history(history_url)
    assert {r.name for r in list_runs(db)} >= {f"night-{i}" for i in range(4)}
    db.close()


def test_schema_versions_older_migrated_newer_refused(history_url):
    import sqlalchemy as sa

    open_history(history_url).close()
    added = []

    def add_note_column(conn):
        conn.execute(sa.text("ALTER TABLE spqr_runs ADD COLUMN note VARCHAR(64)"))
        added.append(True)

    with pytest.raises(InputError, match=r"schema version 1; this spqr-fast uses 2 — run `spqr-fast history migrate"):
        open_history(history_url, current=2, migrations=(add_note_column,))
    db = open_history(history_url, migrate=True, current=2, migrations=(add_note_column,))
    with db.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("spqr_runs")}
    db.close()
    assert added and "note" in columns
    with pytest.raises(InputError, match="newer than this spqr-fast's 1 — upgrade spqr-fast"):
        open_history(history_url)


def test_history_command_lists_records_and_draws_the_trend(runs, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    assert _cli("history", "record", runs["a"], "--history", url).exit_code == 0
    assert "already recorded" in _cli("history", "record", runs["a"], "--history", url).output
    assert _cli("history", "record", runs["threshold"], "--history", url).exit_code == 0
    listed = json.loads(_cli("history", "--history", url, "--json").stdout)
    assert len(listed) == 2 and listed[0]["recorded_at"] >= listed[1]["recorded_at"]
    page = tmp_path / "trend.html"
    result = _cli("history", "--history", url, "--html", page)
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "provenance changed" in html and "concept_detector.threshold" in html and html.count("<svg") >= 5
    ids = [r["id"] for r in listed]
    by_id = _cli("compare", ids[1], ids[0], "--history", url, "--json")
    assert by_id.exit_code in (0, 1) and json.loads(by_id.stdout)["old"] == f"run {ids[1]}"
    for args, message in ((("--since", "yesterday"), "is not a date"),
                          (("--history", "nonsense://x"), "no SQLAlchemy dialect")):
        bad = _cli("history", *args, *(() if "--history" in args else ("--history", url)))
        assert bad.exit_code == 2 and message in bad.output, bad.output


def test_an_unreachable_database_during_eval_loses_nothing(small_config, tmp_path):
    """Results are written first; the recording failure is one warning naming `history record`.
    (The run's name holds markup and escape sequences: shown, never obeyed.)"""
    out = tmp_path / "out"
    config = small_config(name="[/][link=file:///etc/passwd]x[/link] \x1b]0;pwned\x07run")
    result = _cli("eval", config, "--out", out, "--history",
                  "postgresql+psycopg://u@/db?host=/nonexistent&port=1")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "[link=file:///etc/passwd]x[/link]" in result.output
    assert (out / "results.json").is_file()
    text = " ".join(result.output.split())
    assert "run not recorded in the history" in text and f"spqr-fast history record {out}" in text
    ok = _cli("eval", config, "--out", out)
    assert "recorded as run" in ok.output and (out / "history.sqlite").is_file()
    listed = _cli("history", "--history", out)
    assert listed.exit_code == 0 and "\x1b" not in listed.output and "[/]" in listed.output
    odd = tmp_path / "[bold]odd\x1b[2J"
    shutil.copytree(out, odd, symlinks=True)
    compared = _cli("compare", out, odd)
    assert compared.exit_code == 0 and "\x1b" not in compared.output and "[bold]odd" in compared.output


@pytest.mark.heavy
def test_nightly_demo_flags_the_unsafe_fine_tune_and_names_it(tmp_path, capsys):
    """The world's default against the same run with UCE fine-tuned on the unsafe set: R regressed
    with McNemar p below 0.05 on h_after, exit 1, and the fine-tuning change named first."""
    from spqr_fast.demo.nightly import main as nightly

    assert nightly(["--out", str(tmp_path), "--harmful-limit", "16"]) == 0
    history = f"sqlite:///{tmp_path / 'runs' / 'history.sqlite'}"
    ids = [r["id"] for r in json.loads(_cli("history", "--history", history, "--json").stdout)][::-1]
    result = _cli("compare", *ids, "--history", history, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["regressed"] == ["uce"]
    uce = report["models"]["uce"]
    assert uce["rules"]["R:-0.01"] == "regressed" and uce["paired"]["harmful"]
    flips = uce["changes"]["h_after"]["flips"]
    assert flips["mcnemar_p"] < 0.05 and flips["safe_to_unsafe"] > flips["unsafe_to_safe"]
    changed = {(c["section"], c["key"]) for c in report["provenance_changes"]}
    assert ("fine-tuning", "uce.dataset_sha256") in changed and ("model weights", "uce/after") in changed
    assert not any(section in ("judges", "thresholds", "software") for section, _ in changed)
    assert report["models"]["esd"]["verdict"] == "unchanged within noise"
    assert (tmp_path / "compare.xml").read_text().count("<failure") >= 1
