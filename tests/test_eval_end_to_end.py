"""`eval` end to end on small demo configs: outputs, resume, judge failures, reproducibility."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from spqr_fast.config import load_config
from spqr_fast.errors import JudgeError
from spqr_fast.evaluate import Evaluator
from spqr_fast.judges.onnx_image_net import ConceptDetectorJudge
from spqr_fast.schema import Results


def _run(config_path, out):
    """The run's results as results.json holds them."""
    return Evaluator(load_config(config_path), out).run().dump()


def _forbid_loading_any_model(monkeypatch):
    """Every judge class, the generator's pipeline loader and BFT fail the test if touched."""
    import spqr_fast.finetune.trainer as trainer
    import spqr_fast.sampling.stage_generator as sg
    from spqr_fast.judges.clip import ClipScorer
    from spqr_fast.judges.guards import Q16Judge, VlmGuardJudge
    from spqr_fast.judges.inception import InceptionFeatures
    from spqr_fast.judges.nudenet import NudeNetJudge
    from spqr_fast.judges.onnx_image_net import OnnxImageNet
    from spqr_fast.judges.vqa import VqaJudge

    for cls in (ClipScorer, Q16Judge, VlmGuardJudge, InceptionFeatures, NudeNetJudge, OnnxImageNet, VqaJudge):
        monkeypatch.setattr(cls, "__init__", lambda *a, _cls=cls, **k: pytest.fail(f"a cached run built {_cls.__name__}"))
    monkeypatch.setattr(sg, "load_pipeline", lambda *a, **k: pytest.fail("a cached run loaded a generator"))
    monkeypatch.setattr(trainer, "finetune", lambda *a, **k: pytest.fail("a cached run retrained"))


def test_eval_writes_every_output_with_provenance(small_config, tmp_path):
    out = tmp_path / "out"
    results = _run(small_config(), out)
    names = [m["name"] for m in results["models"]]
    assert sorted(names) == ["base", "esd", "uce"]
    row = next(m for m in results["models"] if m["name"] == "esd")
    assert set(row) >= {"name", "S", "P", "Q", "R", "SPQR", "ci", "metrics", "categories"}
    assert set(row["metrics"]) >= {"h_before", "h_after", "delta_h", "clip_score", "fid", "n_images", "unknown_verdicts"}
    assert row["metrics"]["n_images"] == 4 + 4 + 4 + 4  # harmful and utility (for the VQA judge), before + after
    assert set(row["categories"]) <= {"single", "multiple", "composition"} and row["categories"]
    prov = results["provenance"]
    bft = prov["bft"]  # every after-BFT stage comes from a real lite BFT
    assert set(bft) == {"base", "uce", "esd"} and bft["base"]["profile"] == "lite" and bft["base"]["steps"] == 3
    edited = next(m for m in results["models"] if m["name"] == "uce")
    assert edited["R"] is not None and edited["metrics"]["h_after"] is not None
    assert prov["config"]["generation"]["steps"] == 2
    assert prov["thresholds"]["concept_detector_threshold"] == 0.5 and prov["thresholds"]["concept"] == "cross"
    assert prov["judges"]["concept_detector"]["model_sha256"] and prov["judges"]["inception"]["judge"] == "onnx_features"
    assert prov["environment"]["packages"]["diffusers"] == "0.39.0"
    assert {m["weights_hash"] for m in prov["models"]} and len(prov["models"]) == 6
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["models"] == json.loads(json.dumps(results["models"]))
    with open(out / "leaderboard.csv") as fh:
        assert [r["model"] for r in csv.DictReader(fh)] == names
    html = (out / "report.html").read_text()
    assert "miniature world" in html and "<svg" in html and "data:image/png;base64," in html
    assert html.count("<svg") == 2 and "Harmfulness before and after benign fine-tuning" in html
    assert "<table class='samples'>" in html and "uce<br><small>after BFT</small>" in html  # models side by side
    assert "Showing the first 2 of 4 (prompt, sample) pairs in plan order" in html  # the grids say how they chose
    assert results["fid_features"] == "features of fid-features.onnx" and "FD (features of fid-features.onnx)" in html
    assert "<br><small>[" in html  # intervals written out, not only on hover
    # per model: harmful before + after, CLIP on utility before, VQA on utility before + after
    assert len((out / "per_image.jsonl").read_text().splitlines()) == 3 * (4 + 4 + 4 + 8)
    # how sure the leaderboard is: rank confidence and the paired test of Δh beside R
    assert results["rank_confidence"]["confidence"] == 0.95 and results["backend_fallbacks"] == []
    for r in (m for m in results["models"] if m["role"] == "aligned"):
        assert r["rank_interval"][0] <= r["rank"] <= r["rank_interval"][1] and set(r["win_probability"]) <= set(names)
        t = r["robustness_test"]
        assert t["pairs"] == 4 and t["R_paper"] == pytest.approx(r["R"]) and 0 <= t["mcnemar_p"] <= 1
        assert t["delta_h_ci"][0] <= t["delta_h"] <= t["delta_h_ci"][1]
    assert prov["executor"] == "local"
    # The stages talk only through the stores: the pipeline without its generate stage (planning,
    # then judging, measuring and scoring what is stored) gives the same leaderboard.
    from spqr_fast.distributed.local_executor import LocalExecutor
    from spqr_fast.pipeline import finetune, judge, measure, plan, read_inputs, run_steps, score

    ctx = Evaluator(load_config(small_config()), out).context(LocalExecutor())
    again = run_steps(ctx, (read_inputs, finetune, plan, judge, measure, score)).results
    assert again.dump()["models"] == results["models"]
    assert on_disk["schema_version"] == 1 and Results.model_validate(on_disk).dump() == on_disk
    assert "tied_with" in (out / "leaderboard.csv").read_text().splitlines()[0] and "Rank confidence" in html


def test_cached_rerun_loads_no_judge_and_no_generator(small_config, tmp_path, monkeypatch):
    """Judges are named by identities computed from files and settings: a re-run whose images and
    records are all stored opens the stores and scores without building a single network."""
    cfg = small_config()
    out = tmp_path / "out"
    first = _run(cfg, out)
    _forbid_loading_any_model(monkeypatch)
    second = _run(cfg, out)
    assert first["models"] == second["models"]
    assert first["provenance"]["judges"] == second["provenance"]["judges"]
    judges = second["provenance"]["backend"]["judges"]
    assert judges["clip"]["not_loaded"] and judges["vqa"]["not_loaded"]  # said, not left as the first run's


@pytest.mark.heavy
def test_killed_run_resumes_and_matches_an_uninterrupted_one(small_config, tmp_path, monkeypatch):
    cfg = small_config(generation__batch_size=2)
    reference = _run(cfg, tmp_path / "ref")
    out = tmp_path / "resumed"
    from spqr_fast.store import ImageStore

    real_put = ImageStore.put
    calls = {"n": 0}

    def dying_put(self, key, image, meta):
        calls["n"] += 1
        if calls["n"] > 9:
            raise KeyboardInterrupt  # killed mid-run
        real_put(self, key, image, meta)

    monkeypatch.setattr(ImageStore, "put", dying_put)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, out)
    monkeypatch.setattr(ImageStore, "put", real_put)
    stored = len(list((out / "images").rglob("*.png")))
    assert stored == 9
    resumed = _run(cfg, out)
    assert resumed["models"] == reference["models"]
    for png in (tmp_path / "ref" / "images").rglob("*.png"):
        assert (out / "images" / png.parent.name / png.name).read_bytes() == png.read_bytes()


@pytest.mark.heavy
def test_batch_size_does_not_change_results(small_config, tmp_path):
    a = _run(small_config(generation__batch_size=1), tmp_path / "a")
    b = _run(small_config(generation__batch_size=4), tmp_path / "b")
    assert a["models"] == b["models"]


@pytest.mark.heavy
def test_failing_judge_is_one_clear_error_and_keeps_records(small_config, tmp_path, monkeypatch):
    cfg = small_config()
    out = tmp_path / "out"
    real = ConceptDetectorJudge.judge
    state = {"n": 0}

    def flaky(self, images):
        state["n"] += 1
        if state["n"] > 1:
            raise RuntimeError("CUDA error: device lost")
        return real(self, images)

    monkeypatch.setattr(ConceptDetectorJudge, "judge", flaky)
    monkeypatch.setattr(ConceptDetectorJudge, "__init__", _small_batches(ConceptDetectorJudge.__init__))
    with pytest.raises(JudgeError, match="judge 'concept_detector' failed .* re-run to resume"):
        _run(cfg, out)
    kept = list((out / "records").rglob("*.json"))
    assert len(kept) == 2  # the first batch's records survived
    monkeypatch.setattr(ConceptDetectorJudge, "judge", real)
    assert _run(cfg, out)["models"]


def _small_batches(init):
    def wrapped(self, *a, **k):
        init(self, *a, **k)
        self.batch_size = 2
    return wrapped


@pytest.mark.heavy
def test_on_judge_error_policies(small_config, tmp_path, monkeypatch):
    """Unreadable verdicts are unknown: excluded by default, or counted as configured."""
    from spqr_fast.judges.records import DetectorRecord

    monkeypatch.setattr(ConceptDetectorJudge, "judge", lambda self, images: [
        DetectorRecord(unsafe=None, class_scores={}, detections=[]) for _ in images])
    excl = _run(small_config(), tmp_path / "x")
    row = next(m for m in excl["models"] if m["name"] == "esd")
    assert row["metrics"]["unknown_verdicts"] == 8 and row["metrics"]["h_before"] is None and row["S"] is None
    unsafe = _run(small_config(judges__on_judge_error="unsafe"), tmp_path / "u")
    row = next(m for m in unsafe["models"] if m["name"] == "esd")
    assert row["metrics"]["h_before"] == 100.0 and row["S"] == 0.0


@pytest.mark.heavy
def test_corrupt_stored_image_is_named(small_config, tmp_path):
    cfg = small_config()
    out = tmp_path / "out"
    _run(cfg, out)
    victim = sorted((out / "images").rglob("*.png"))[0]
    victim.write_bytes(b"not a png")
    shutil.rmtree(out / "records")
    with pytest.raises(Exception) as err:
        _run(cfg, out)
    assert str(victim) in str(err.value) and "delete or replace it" in str(err.value)


@pytest.mark.heavy
def test_default_eval_and_init_then_eval_agree(tmp_path):
    """`eval` with no config runs the embedded default; `init DIR` writes the same project, and
    `eval DIR/spqr.yaml` reproduces the default's results exactly."""
    import os

    cli = [sys.executable, "-m", "spqr_fast.cli"]
    out = tmp_path / "default"
    env = {**os.environ, "SPQR_ENGINE_CACHE": str(tmp_path / "engines")}
    proc = subprocess.run(cli + ["eval", "--out", str(out)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SPQR leaderboard" in proc.stdout and "uce" in proc.stdout
    default = json.loads((out / "results.json").read_text())
    assert default["demo"] is True
    # the world's known answers come out with 95% intervals apart (not only as point values)
    checks = default["known_answers"]
    assert len(checks) == 3 and all(c["holds"] for c in checks), checks
    assert proc.stderr.count("known answer holds") == 3

    proj = tmp_path / "proj"
    assert subprocess.run(cli + ["init", str(proj)], capture_output=True, timeout=300, env=env).returncode == 0
    for rel in ("models/base/unet/diffusion_pytorch_model.safetensors", "models/uce-unet.safetensors",
                "models/esd/unet/diffusion_pytorch_model.safetensors", "judges/clip/model.safetensors",
                "datasets/benign/metadata.jsonl", "prompts/questions.json"):
        assert (proj / rel).read_bytes() == (out / "embedded-project" / rel).read_bytes()
    shutil.copytree(out / "images", tmp_path / "again" / "images")  # generation is checked elsewhere; reuse
    proc = subprocess.run(cli + ["eval", str(proj / "spqr.yaml"), "--out", str(tmp_path / "again")],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["models"] == default["models"]
    assert not np.isnan([m["SPQR"] for m in default["models"] if m["SPQR"] is not None]).any()


@pytest.mark.heavy
def test_eval_on_onnx_runtime_agrees_with_torch(small_config, tmp_path):
    torch_run = _run(small_config(), tmp_path / "torch")
    ort_run = _run(small_config(backend__kind="ort"), tmp_path / "ort")  # auto would keep torch for 12 images
    chosen = {m["load"]["backend"]["chosen"] for m in ort_run["provenance"]["models"]}
    assert chosen == {"ort-cpu"}
    assert ort_run["provenance"]["backend"]["judges"]["clip"]["chosen"] == "ort-cpu"
    for a, b in zip(torch_run["models"], ort_run["models"]):
        assert a["name"] == b["name"]
        assert b["metrics"]["clip_score"] == pytest.approx(a["metrics"]["clip_score"], abs=2e-3)
        assert b["metrics"]["fid"] == pytest.approx(a["metrics"]["fid"], rel=0.05)
        assert b["metrics"]["h_before"] == a["metrics"]["h_before"]


@pytest.mark.heavy
def test_vqa_judge_adds_tifa_and_the_illusion_section(small_config, tmp_path):
    out = tmp_path / "out"
    results = _run(small_config(scoring__prompt_adherence="tifa"), out)
    assert results["prompt_adherence"] == "tifa"
    rows = {r["name"]: r for r in results["models"]}
    for r in rows.values():
        m = r["metrics"]
        assert 0 <= m["tifa"] <= 1 and 0 <= m["tifa_after"] <= 1 and r["ci"]["tifa"] is not None
        assert r["vqa"]["categories_before"] and r["vqa"]["yes_bias_mismatched_yes_rate"] is not None
    assert rows["base"]["metrics"]["P_tifa"] == 1.0  # the base model is the TIFA reference
    for name in ("uce", "esd"):
        m = rows[name]["metrics"]
        assert rows[name]["P"] == m["P_tifa"] == pytest.approx(min(m["tifa"] / rows["base"]["metrics"]["tifa"], 1))
        assert m["P_gap"] == pytest.approx(m["P_clip"] - m["P_tifa"])
    ill = results["illusion"]
    assert ill["reference"] == "base" and {m["name"] for m in ill["models"]} == {"uce", "esd"}
    assert sorted(ill["ranking_by_P_clip"]) == sorted(ill["ranking_by_P_tifa"])
    html = (out / "report.html").read_text()
    assert "Illusion of utility" in html and "TIFA accuracy by question category" in html
    vqa_lines = [json.loads(x) for x in (out / "per_image.jsonl").read_text().splitlines() if '"judge": "vqa"' in x]
    assert {r["stage"] for r in vqa_lines} == {"before", "after"}


@pytest.mark.heavy
def test_a_vlm_guard_judges_in_an_eval_and_a_cached_rerun_builds_it_not(small_config, tmp_path, monkeypatch):
    """The VLM guard as the registry runs any safety judge: a tiny model of the real LLaVA-OneVision
    class (answering "Unsafe" to every image) beside the world's concept detector."""
    from helpers import build_tiny_llava_onevision

    guard = build_tiny_llava_onevision(tmp_path / "guard", rating="Unsafe")
    cfg = small_config(judges__vlm_guard={"path": str(guard), "max_new_tokens": 8, "batch_size": 3})
    results = _run(cfg, tmp_path / "out")
    for row in results["models"]:  # any judge saying unsafe makes the image unsafe
        assert row["metrics"]["h_before"] == 100.0 and row["metrics"]["h_after"] == 100.0
    assert results["provenance"]["judges"]["vlm_guard"]["decoding"] == "greedy"
    harmful = [json.loads(x) for x in (tmp_path / "out" / "per_image.jsonl").read_text().splitlines()
               if json.loads(x)["prompt_set"] == "harmful"]
    assert harmful and all(r["judges"]["vlm_guard"] == {"unsafe": True, "answer": '{"rating": "Unsafe"}'}
                           for r in harmful)
    assert list(harmful[0]["judges"]) == ["concept_detector", "vlm_guard"]  # the registry's fusion order
    _forbid_loading_any_model(monkeypatch)
    assert _run(cfg, tmp_path / "out")["models"] == results["models"]
