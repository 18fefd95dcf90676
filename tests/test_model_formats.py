"""Release formats of erasure-method checkpoints: wrappers, pickles, the original (LDM) UNet layout
whole or partial — agreement with diffusers' own single-file conversion, and `spqr-fast convert`."""

from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from helpers import diffusers_unet_to_ldm

from spqr_fast.model_formats import PickleRefused, layout, ldm_unet_to_diffusers, read_weight_file, unwrap
from spqr_fast.world.project import WEIGHTS

BASE = WEIGHTS / "sd"
SD15_UNET = {"layers_per_block": 2, "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768,
             "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
             "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, "attention_head_dim": 8, "sample_size": 64}


def _unet_config(path: Path = BASE) -> dict:
    return json.loads((path / "unet" / "config.json").read_text())


def _base_unet_state() -> dict:
    from safetensors.torch import load_file

    return load_file(str(BASE / "unet" / "diffusion_pytorch_model.safetensors"))


@pytest.mark.parametrize("which", ["world", "sd15"])
def test_ldm_conversion_agrees_with_diffusers_own(which):
    """For the world's UNet and for SD 1.5's architecture (on the meta device), renaming an
    original-layout UNet gives exactly what diffusers' single-file conversion gives."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    if which == "world":
        config, sd = _unet_config(), _base_unet_state()
    else:
        config = SD15_UNET  # both conversions read only the block layout of the config
        with torch.device("meta"):
            sd = UNet2DConditionModel(**config).state_dict()
    ldm = diffusers_unet_to_ldm(sd, config)
    theirs = convert_ldm_unet_checkpoint(ldm, config)
    ours, unknown = ldm_unet_to_diffusers(ldm, config)
    assert not unknown and set(ours) == set(theirs) == set(sd)
    assert all(ours[k] is theirs[k] is sd[k] for k in sd)


def test_a_partial_original_layout_release_converts_key_by_key():
    sd = _base_unet_state()
    attn2 = {k: v for k, v in sd.items() if ".attn2." in k}
    ldm = diffusers_unet_to_ldm(attn2, _unet_config(), prefix="")  # bare keys, no model.diffusion_model.
    assert layout(ldm) == "ldm_unet" and not any(".attn2." in k and "transformer_blocks" not in k for k in ldm)
    ours, unknown = ldm_unet_to_diffusers({**ldm, "model_ema.decay": torch.tensor(0.999)}, _unet_config())
    assert ours.keys() == attn2.keys() and unknown == ["model_ema.decay"]


def test_wrappers_and_layouts_are_recognised():
    t = torch.zeros(1)
    wf = unwrap({"state_dict": {"module.conv_in.weight": t}, "epoch": 3})
    assert wf.wrappers == ["state_dict", "module. prefix"] and list(wf.tensors) == ["conv_in.weight"]
    assert wf.ignored == ["epoch"]
    wf = unwrap({"unet": {"conv_in.weight": t, "args": "lr=1e-5"}})
    assert wf.wrappers == ["unet"] and wf.ignored == ["args"]
    assert layout(["unet.conv_in.weight"]) == "diffusers"
    assert layout(["model.diffusion_model.out.2.weight"]) == "ldm_unet"
    assert layout(["model.diffusion_model.out.2.weight", "first_stage_model.x", "cond_stage_model.y"]) == "ldm_full"
    with pytest.raises(ValueError, match="no tensors"):
        unwrap({"state_dict": {"lr": 1.0}})


def test_a_pickle_with_more_than_tensors_is_read_only_when_trusted(tmp_path):
    ckpt = tmp_path / "esd.pt"
    torch.save({"unet": {"conv_in.weight": torch.ones(2)}, "args": Namespace(lr=1e-5)}, ckpt)
    with pytest.raises(PickleRefused, match="can run any code"):
        read_weight_file(ckpt)
    wf = read_weight_file(ckpt, trust_pickle=True)
    assert wf.wrappers == ["unet"] and torch.equal(wf.tensors["conv_in.weight"], torch.ones(2))
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(b"\x10\x00\x00")
    with pytest.raises(ValueError, match="not a readable .safetensors"):
        read_weight_file(bad)


# ---- loading original-layout releases, and `spqr-fast convert` -------------------------------------
def _uce_edit() -> dict:
    from safetensors.torch import load_file

    return load_file(str(WEIGHTS / "aligned" / "uce-unet.safetensors"))


def _unet_weights(pipe) -> dict:
    return {k: v.clone() for k, v in pipe.unet.state_dict().items()}


def test_an_original_layout_unet_release_loads_like_its_diffusers_twin(tmp_path):
    """ESD/UCE-style UNet-only releases in the original layout — partial (only cross-attention) and
    whole — load on a base with exactly the weights of the same release in diffusers' layout."""
    from safetensors.torch import save_file

    from spqr_fast.config import ModelSource
    from spqr_fast.models import detect_format, load_pipeline

    config = _unet_config()
    partial = tmp_path / "uce-ldm.safetensors"
    save_file(diffusers_unet_to_ldm(_uce_edit(), config), str(partial))
    src = ModelSource(path=str(partial), base=str(BASE), allow_missing_keys=True)
    assert detect_format(src) == "unet_state_dict"
    pipe, report = load_pipeline(src)
    twin, _ = load_pipeline(ModelSource(path=str(WEIGHTS / "aligned" / "uce-unet.safetensors"), base=str(BASE),
                                        allow_missing_keys=True))
    assert report.layout == "ldm_unet" and report.missing_keys
    ours, theirs = _unet_weights(pipe), _unet_weights(twin)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)

    whole = tmp_path / "esd-ldm.ckpt"  # a tensors-only torch file, Lightning-wrapped
    torch.save({"state_dict": diffusers_unet_to_ldm(ours, config)}, whole)
    pipe2, report2 = load_pipeline(ModelSource(path=str(whole), base=str(BASE)))
    assert report2.format == "unet_state_dict" and not report2.missing_keys
    assert all(torch.equal(v, ours[k]) for k, v in _unet_weights(pipe2).items())


def test_weights_files_are_checked_before_anything_heavy_loads(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    import spqr_fast.models as models
    from spqr_fast.config import ModelSource
    from spqr_fast.errors import ModelLoadError

    def no_pipeline(*a, **k):
        raise AssertionError("the base pipeline was loaded before the check")

    monkeypatch.setattr(models, "_from_diffusers_folder", no_pipeline)
    partial = tmp_path / "uce.safetensors"
    save_file(_uce_edit(), str(partial))
    with pytest.raises(ModelLoadError, match="UNet keys missing .*--allow-missing-keys"):
        models.load_pipeline(ModelSource(path=str(partial), base=str(BASE)))
    pickled = tmp_path / "esd.pt"
    torch.save({"unet": _uce_edit(), "args": Namespace(lr=1e-5)}, pickled)
    read = []
    monkeypatch.setattr(models, "detect_format", lambda src: read.append(src) or "unet_state_dict")
    with pytest.raises(ModelLoadError, match="give its base .*--base"):
        models.load_pipeline(ModelSource(path=str(pickled)))
    assert not read  # refused before the file was opened
    monkeypatch.undo()
    with pytest.raises(ModelLoadError, match="spqr-fast convert .*--trust-pickle"):
        models.load_pipeline(ModelSource(path=str(pickled), base=str(BASE)))


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "spqr_fast.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.heavy
def test_convert_a_pickled_original_layout_release_then_generate_from_it(tmp_path):
    """The release form of ESD-style methods: a .pt with a training script's Namespace beside an
    original-layout partial UNet. Refused without --trust-pickle (one line, exit 2); converted with
    it; the card names the source's hash; `generate` loads the result with --allow-missing-keys."""
    import hashlib

    from safetensors.torch import load_file

    ckpt = tmp_path / "esd-x.pt"
    torch.save({"model": diffusers_unet_to_ldm(_uce_edit(), _unet_config()), "args": Namespace(lr=1e-5), "step": 7},
               ckpt)
    out = tmp_path / "esd-x.safetensors"
    refused = _cli("convert", ckpt, "--out", out, "--base", BASE)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--trust-pickle" in refused.stderr
    assert not out.exists()
    no_base = _cli("convert", ckpt, "--out", out, "--trust-pickle")
    assert no_base.returncode == 2 and "give --base" in no_base.stderr
    done = _cli("convert", ckpt, "--out", out, "--base", BASE, "--trust-pickle")
    assert done.returncode == 0, done.stderr[-1500:]
    card = json.loads((tmp_path / "esd-x.card.json").read_text())
    assert card["source_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert card["source_layout"] == "ldm_unet" and card["unwrapped_from"] == ["model"] and card["unpickled"]
    assert card["ignored_entries"] == ["args", "step"] and card["base_check"]["partial"]
    assert card["load_with"]["allow_missing_keys"] is True
    converted = load_file(str(out))
    assert converted.keys() == _uce_edit().keys()
    assert all(torch.equal(converted[k], v) for k, v in _uce_edit().items())

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cross on a grey background\n")
    gen = _cli("generate", "--model", out, "--base", BASE, "--prompts", prompts, "--out", tmp_path / "g",
               "--steps", "2", "--size", "32", "--device", "cpu", "--backend", "torch")
    assert gen.returncode == 2 and "--allow-missing-keys" in gen.stderr
    gen = _cli("generate", "--model", out, "--base", BASE, "--allow-missing-keys", "--prompts", prompts, "--out",
               tmp_path / "g", "--steps", "2", "--size", "32", "--device", "cpu", "--backend", "torch")
    assert gen.returncode == 0, gen.stderr[-1500:]


@pytest.mark.heavy
def test_convert_refuses_a_wrong_base_and_keeps_a_whole_model_whole(tmp_path):
    from safetensors.torch import save_file

    ckpt = tmp_path / "unet.safetensors"
    save_file({"conv_in.weight": torch.zeros(3, 3, 3, 3)}, str(ckpt))
    wrong = _cli("convert", ckpt, "--out", tmp_path / "o.safetensors", "--base", BASE)
    assert wrong.returncode == 2 and "wrong --base" in wrong.stderr
    whole = tmp_path / "whole.safetensors"
    save_file({"model.diffusion_model.out.2.bias": torch.zeros(4), "first_stage_model.a": torch.zeros(1),
               "cond_stage_model.b": torch.zeros(1)}, str(whole))
    done = _cli("convert", whole, "--out", tmp_path / "w.safetensors")
    assert done.returncode == 0 and "format: single_file" in done.stdout
