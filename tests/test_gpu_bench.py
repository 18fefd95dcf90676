"""The GPU proof's logic, checked on the CPU: the CLI refuses without CUDA in one line, the whole
suite runs end to end at the tiny size and gives the documented JSON, and the paper-scale
projection adds up."""

import json
import subprocess
import sys

import pytest
import torch

from spqr_fast.bench.gpu_bench import GpuBenchPlan, PaperScale, project_paper_scale, run_gpu_bench, to_markdown


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the suite would run, not refuse")
def test_the_gpu_suite_refuses_in_one_line_without_cuda():
    proc = subprocess.run([sys.executable, "-m", "spqr_fast.cli", "bench", "--suite", "gpu"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: bench --suite gpu needs a CUDA GPU (torch sees none) — run it on a GPU machine; "
        "`bench --suite backends` measures this one"]


def test_paper_scale_projection_adds_up():
    scale = PaperScale(harmful_prompts=500, utility_prompts=424, bft_images=1000, bft_epochs=1, bft_batch=16,
                       questions_per_caption=5)
    p = project_paper_scale(scale, s_per_image=0.2, bft_s_per_step=0.5,
                            judge_rates={"nudenet": 100, "clip": 424, "fid_features": 212, "vqa_vision": 848,
                                         "vqa_answer": 4240})
    assert p["images"] == (500 + 424) + (500 + 424) and p["bft_steps"] == 63
    assert p["seconds"] == pytest.approx({"generation": 1848 * 0.2, "bft": 31.5, "nudenet": 10.0, "clip": 1.0,
                                          "fid_features": 4.0, "vqa": 1.0 + 5.0 * 848 / 4240})
    assert p["minutes"] == pytest.approx(sum(p["seconds"].values()) / 60)
    no_vqa = project_paper_scale(PaperScale(with_vqa=False), s_per_image=0.2, bft_s_per_step=0.5,
                                 judge_rates={"nudenet": 100, "clip": 424, "fid_features": 212, "vqa_vision": 1,
                                              "vqa_answer": 1})
    assert no_vqa["images"] == 924 + 500 and no_vqa["seconds"]["vqa"] == 0


@pytest.mark.heavy
def test_the_suite_runs_end_to_end_at_the_tiny_size(tmp_path):
    from rich.console import Console

    plan = GpuBenchPlan(preset="tiny", device="cpu", dtype="fp32", steps=3, batch=2, reps=1, parity_steps=2,
                        backends=("torch", "torch-compile"), bft_steps=1)
    result = run_gpu_bench(plan, Console(stderr=True), cache_root=str(tmp_path / "cache"))
    json.dumps(result, default=str)
    assert set(result) >= {"machine", "settings", "generation", "parity", "batch_effect", "bft", "judges",
                           "projection", "verdict", "skipped", "targets"}
    assert [r["backend"] for r in result["generation"]] == ["torch"]
    assert "CUDA" in result["skipped"]["torch-compile"]  # skipped with its reason, not fatal
    row = result["generation"][0]
    assert row["s_per_image_batch1"] > 0 and row["images_per_s_batch"] > 0 and row["speedup_batch1_vs_torch"] == 1
    assert result["batch_effect"]["batch"] == 2 and result["batch_effect"]["max_pixel_diff"] >= 0
    assert [r["profile"] for r in result["bft"]] == ["lite", "standard"]
    assert {"nudenet", "vqa", "clip_image_tower"} <= set(result["judges"])
    assert result["projection"]["minutes"] > 0 and result["verdict"]["best_backend_batch1"] == "torch"
    md = to_markdown(result)
    assert "| torch |" in md and "torch-compile | not measured" in md and "Projection" in md
