"""`spqr-fast audit` on the world: PASS, FAIL and INCONCLUSIVE with their exit codes, resume
after a kill, an audit after an eval reusing its images, the LoRA (hub) form; bad criteria and
budgets one line each."""

import json

import pytest
import yaml
from click.testing import CliRunner

from spqr_fast.audit.criteria import parse_budget, parse_criteria
from spqr_fast.cli import main
from spqr_fast.errors import InputError


def _cli(*args):
    try:  # stdout alone, whatever click: before 8.2 CliRunner mixes stderr into stdout unless told
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click ≥ 8.2 keeps them apart and has no such parameter
        runner = CliRunner()
    return runner.invoke(main, [str(a) for a in args])


def _said(result) -> str:
    """Everything the command printed, stdout then stderr."""
    return result.stdout + result.stderr


@pytest.fixture
def audit_config(small_config):
    """The small world config with the full harmful set (48 prompts × 2 samples) to audit over."""
    path = small_config(generation__samples_per_prompt=2)
    cfg = yaml.safe_load(path.read_text())
    cfg["prompts"]["harmful"].pop("limit")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize("text,message", [
    ("h<=", "is not QUANTITY<=VALUE"), ("x>=3", "unknown quantity 'x'"), ("h<=150", "lies in [0, 100]"),
    ("tifa>=1", "lies in [0, 1]"), ("dh<=1", "needs a fine-tune"), ("h<=5, h<=6", "given twice"), ("", "no criterion"),
])
def test_bad_criteria_are_one_line(text, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        parse_criteria(text, has_fine_tune=False)


@pytest.mark.parametrize("text,expected", [("15m", (900.0, None)), ("1h30m", (5400.0, None)), ("90s", (90.0, None)),
                                           ("2000img", (None, 2000))])
def test_budgets(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["soon", "0s", "m", "-5m", "0img"])
def test_bad_budgets(text):
    with pytest.raises(InputError, match="--budget"):
        parse_budget(text)


def test_audit_command_refuses_bad_input_before_any_work(audit_config, tmp_path):
    cfg = yaml.safe_load(audit_config.read_text())
    cfg["models"][1].pop("bft")  # uce without a fine-tune
    no_bft = audit_config.with_name(f"no-bft-{tmp_path.name}.yaml")  # beside it: relative paths resolve
    no_bft.write_text(yaml.safe_dump(cfg))
    for args, message in (
        ((audit_config, "--model", "nope", "--criteria", "h<=5", "--budget", "10img"), "--model 'nope' is not in"),
        ((audit_config, "--model", "base", "--criteria", "x>=3", "--budget", "10img"), "unknown quantity"),
        ((audit_config, "--model", "base", "--criteria", "h<=5", "--budget", "soon"), "--budget: 'soon'"),
        ((audit_config, "--model", "base", "--budget", "10img"), "--criteria is required"),
        ((no_bft, "--model", "uce", "--criteria", "dh<=1", "--budget", "10img"), "needs a fine-tune"),
        (("--model", "base"), "need a CONFIG"),
    ):
        result = _cli("audit", *args, "--out", tmp_path / "out")
        said = _said(result)
        assert result.exit_code == 2 and said.count("\n") == 1 and message in said, said
    assert not (tmp_path / "out" / "images").exists()


@pytest.mark.heavy
def test_fail_pass_and_inconclusive_with_their_exit_codes(audit_config, tmp_path):
    out = tmp_path / "out"
    # (this config's 2-step images: the base is about 50% harmful, ESD far less)
    fail = _cli("audit", audit_config, "--model", "base", "--criteria", "h<=15", "--budget", "400img", "--out", out,
                "--json", "--junit", tmp_path / "fail.xml")
    assert fail.exit_code == 1, _said(fail)
    record = json.loads(fail.stdout)
    assert record["verdict"] == "FAIL" and record["criteria"][0]["interval"][0] > 15
    assert record["used"]["images"] < record["full_plan_images"]  # decided before the whole plan
    assert "<failure" in (tmp_path / "fail.xml").read_text()
    assert (out / "audit.html").read_text().count("<svg") == 1
    passed = _cli("audit", audit_config, "--model", "esd", "--criteria", "h<=90", "--budget", "400img", "--out", out,
                  "--json")
    assert passed.exit_code == 0, _said(passed)
    assert json.loads(passed.stdout)["criteria"][0]["interval"][1] < 90
    tiny = _cli("audit", audit_config, "--model", "uce", "--criteria", "h<=45", "--budget", "12img", "--out", out,
                "--json")
    assert tiny.exit_code == 3, _said(tiny)
    record = json.loads(tiny.stdout)
    assert record["verdict"] == "INCONCLUSIVE" and record["used"]["images"] <= 12
    assert "h<=45" in record["more_prompts_to_decide"]
    assert record["order"]["prompts"]["harmful"][:3] == json.loads(_cli(
        "audit", audit_config, "--model", "uce", "--criteria", "h<=45", "--budget", "12img", "--out", out,
        "--json").stdout)["order"]["prompts"]["harmful"][:3]  # the same config gives the same order


@pytest.mark.heavy
def test_a_killed_audit_resumes_and_an_audit_after_an_eval_generates_nothing(audit_config, tmp_path, monkeypatch):
    from spqr_fast.store import ImageStore

    args = [audit_config, "--model", "base", "--criteria", "h<=15", "--budget", "400img", "--json"]
    reference = json.loads(_cli("audit", *args, "--out", tmp_path / "ref").stdout)
    real_put = ImageStore.put
    calls = {"n": 0}

    def dying_put(self, key, image, meta):
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt  # killed mid-chunk
        real_put(self, key, image, meta)

    monkeypatch.setattr(ImageStore, "put", dying_put)
    killed = _cli("audit", *args, "--out", tmp_path / "resumed")
    assert killed.exit_code == 130
    monkeypatch.setattr(ImageStore, "put", real_put)
    resumed = json.loads(_cli("audit", *args, "--out", tmp_path / "resumed").stdout)
    assert resumed["verdict"] == reference["verdict"] == "FAIL"
    assert resumed["criteria"][0]["trace"][-1] == reference["criteria"][0]["trace"][-1]
    # an eval first, then an audit of the same model: every image is already there
    out = tmp_path / "eval-first"
    assert _cli("eval", audit_config, "--out", out).exit_code == 0
    import spqr_fast.sampling.stage_generator as sg

    monkeypatch.setattr(sg, "load_pipeline", lambda *a, **k: pytest.fail("the audit generated an image"))
    after_eval = _cli("audit", *args, "--out", out)
    assert after_eval.exit_code == 1 and json.loads(after_eval.stdout)["verdict"] == "FAIL"


@pytest.mark.heavy
def test_the_hub_case_audits_an_uploaded_lora_by_its_paired_change(audit_config, esd_lora, tmp_path):
    result = _cli("audit", audit_config, "--model", "esd", "--lora", esd_lora, "--criteria", "dh<=40, h<=80",
                  "--budget", "200img", "--out", tmp_path / "out", "--json")
    assert result.exit_code in (0, 3), _said(result)
    record = json.loads(result.stdout)
    assert record["after"]["lora"] == str(esd_lora) and {s["stage"] for s in record["stages"]} == {"before", "after"}
    dh = next(c for c in record["criteria"] if c["quantity"] == "dh")
    assert -100 <= dh["interval"][0] <= dh["estimate"] <= dh["interval"][1] <= 100


def test_audits_are_recorded_in_the_history_and_listed(audit_config, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    args = [audit_config, "--model", "base", "--criteria", "h<=45", "--budget", "12img", "--out", tmp_path / "out"]
    result = _cli("audit", *args, "--history", url)
    assert result.exit_code == 3, _said(result)
    assert "recorded as audit" in _said(result)
    listed = _cli("history", "--history", url, "--audits", "--json")
    assert listed.exit_code == 0, _said(listed)
    (audit,) = json.loads(listed.stdout)
    assert (audit["model"], audit["verdict"], audit["criteria"], audit["images"]) == ("base", "INCONCLUSIVE", "h<=45", 12)
    assert "INCONCLUSIVE" in _cli("history", "--history", url, "--audits").stdout
    # an unreachable database costs one warning; the verdict and audit.json stand
    unreachable = _cli("audit", *args, "--history", "postgresql+psycopg://u@/db?host=/nonexistent&port=1")
    assert unreachable.exit_code == 3 and "audit not recorded in the history" in " ".join(_said(unreachable).split())
    assert (tmp_path / "out" / "audit.json").is_file()


def test_an_audit_loads_its_stage_and_each_judge_once_however_many_chunks(audit_config, tmp_path, monkeypatch):
    """The stages and judges stay loaded across chunks: looking again costs no reload (nor a
    second backend decision), and audit.json names the backend that made the images."""
    import dataclasses

    import spqr_fast.judging as judging
    import spqr_fast.sampling.stage_generator as sg

    loads, builds = [], []
    real_load = sg.load_pipeline
    monkeypatch.setattr(sg, "load_pipeline", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    real_configured = judging.configured

    def counting(judges):
        for spec, section in real_configured(judges):
            build = spec.build
            yield dataclasses.replace(spec, build=lambda s, env, b=build, n=spec.section: builds.append(n) or b(s, env)), section

    monkeypatch.setattr(judging, "configured", counting)
    result = _cli("audit", audit_config, "--model", "base", "--criteria", "h<=45", "--budget", "40img",
                  "--out", tmp_path / "out", "--json")
    assert result.exit_code in (1, 3), _said(result)
    record = json.loads(result.stdout)
    assert record["used"]["chunks"] >= 3, record["used"]
    assert len(loads) == 1, loads
    assert builds and len(builds) == len(set(builds)), builds
    (stage,) = record["stages"]
    assert stage["stage"] == "before" and stage["backend"]["chosen"] == "torch"
    # --low-memory frees them after each chunk: a load per chunk, the same images and decisions
    loads.clear()
    low = _cli("audit", audit_config, "--model", "base", "--criteria", "h<=45", "--budget", "40img",
               "--out", tmp_path / "low", "--json", "--low-memory")
    low_record = json.loads(low.stdout)
    assert low.exit_code == result.exit_code and low_record["low_memory"] and len(loads) == low_record["used"]["chunks"]
    assert low_record["criteria"][0]["trace"] == record["criteria"][0]["trace"]
