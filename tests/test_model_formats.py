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
