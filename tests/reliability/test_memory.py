"""Memory does not grow with the cohort: each model stage's ONNX Runtime sessions are closed
before the next stage loads, so a 3-model eval peaks where a 1-model eval does."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def mid_size_models(demo_project, tmp_path_factory):
    """Three pipelines with the world's text encoder and VAE and a ~70 M-parameter UNet (a 280 MB
    fp32 UNet, large enough for a leaked stage to show), each from its own seed."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    root = tmp_path_factory.mktemp("mid")
    pipe = StableDiffusionPipeline.from_pretrained(str(demo_project.parent / "models" / "base"), local_files_only=True)
    for i in range(3):
        torch.manual_seed(i)
        pipe.unet = UNet2DConditionModel(
            sample_size=16, layers_per_block=2, block_out_channels=(128, 256, 512), cross_attention_dim=64,
            attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D",) * 2 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 2)
        pipe.save_pretrained(root / f"m{i}")
    weights = (root / "m0" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    return root, weights


def test_peak_memory_of_a_cohort_does_not_grow_with_its_size(write_config, mid_size_models, tmp_path):
    root, unet_bytes = mid_size_models
    peaks = {}
    for n in (1, 3):
        def edit(cfg, n=n):
            cfg["models"] = [{"name": f"m{i}", "role": "base" if i == 0 else "aligned",
                              "model": {"path": str(root / f"m{i}")}} for i in range(n)]
            cfg["backend"] = {"kind": "ort", "cache_root": str(tmp_path / f"engines{n}")}
            cfg["judges"]["vqa"] = None
            cfg["scoring"]["clip_ceiling"] = 0.3
            cfg["prompts"]["harmful"]["limit"] = cfg["prompts"]["utility"]["limit"] = 2

        proc = run_cli("eval", write_config(f"memory-{n}", edit), "--out", tmp_path / f"out{n}", timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        prov = json.loads((tmp_path / f"out{n}" / "results.json").read_text())["provenance"]
        stages = [m["load"]["memory_after_stage"] for m in prov["models"]]
        assert len(stages) == n and all(s["peak_rss_gib"] > 0 for s in stages)
        assert {m["load"]["backend"]["chosen"] for m in prov["models"]} == {"ort-cpu"}
        peaks[n] = prov["memory_at_end"]["peak_rss_gib"] * 2**30
    # before sessions were released, each further model added its UNet and its session (≈ 2 UNets)
    assert peaks[3] - peaks[1] < unet_bytes, (peaks, unet_bytes)
