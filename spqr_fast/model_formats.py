"""Weight files in the forms erasure methods release them, read into diffusers' UNet layout.

A release may be a safetensors file or a torch pickle; hold the state dict bare or inside a
wrapper (`state_dict` — Lightning —, `model`, `unet`, `module.`-prefixed DataParallel keys); and
name the UNet's tensors the diffusers way or the original (LDM/CompVis) way, whole or only some
layers. This module tells those apart and renames original-layout UNet keys to diffusers' key by
key (so partial releases convert too); `spqr-fast convert` and model loading both use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

LDM_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
LDM_VAE_PREFIX = "first_stage_model."
LDM_TEXT_PREFIXES = ("cond_stage_model.", "conditioner.")
WRAPPER_KEYS = ("state_dict", "model", "unet", "module", "model_state_dict")
_LDM_BARE = re.compile(r"^(input_blocks|middle_block|output_blocks|time_embed|out)\.")
_RESNET_RENAMES = (("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
                   ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut"))


class PickleRefused(ValueError):
    """A torch file holding more than tensors, read without `trust_pickle`."""


@dataclass
class WeightFile:
    """What a weight file held, unwrapped: the tensors and how they were found."""

    tensors: dict
    wrappers: list[str] = field(default_factory=list)  # e.g. ["state_dict"], ["module. prefix"]
    ignored: list[str] = field(default_factory=list)  # non-tensor entries beside the tensors (hyper-parameters)


def load_raw(path: Path, *, trust_pickle: bool = False) -> object:
    """What a .safetensors file or a torch file holds (a state dict, a wrapper, a bare tensor). A
    torch file holding objects other than tensors is unpickled only with `trust_pickle`
    (unpickling runs whatever code the file names); otherwise PickleRefused."""
    import pickle

    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 - truncated or foreign file: name it
            raise ValueError(f"not a readable .safetensors file ({_first_line(err)})") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise PickleRefused("it is a pickle holding more than tensors (training arguments, say), and unpickling "
                                "can run any code the file names") from None
        try:
            # Reached only with `trust_pickle` (`spqr-fast convert --trust-pickle`, which states the risk);
            # model loading for eval/generate never passes it.
            return torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"cannot unpickle it ({_first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - corrupt, truncated or foreign file
        raise ValueError(f"{type(err).__name__}: {_first_line(err)} — is it a complete checkpoint?") from None


def read_weight_file(path: Path, *, trust_pickle: bool = False) -> WeightFile:
    """A weight file's state dict, out of its wrappers (see `load_raw` for what is refused)."""
    return unwrap(load_raw(path, trust_pickle=trust_pickle))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:200]


def _is_tensor(v) -> bool:
    import torch

    return isinstance(v, torch.Tensor)


def unwrap(obj) -> WeightFile:
    """The tensors of a state dict, taken out of the usual wrappers."""
    wrappers: list[str] = []
    ignored: list[str] = []  # entries beside the state dict (hyper-parameters, step counters)
    while isinstance(obj, Mapping) and not any(_is_tensor(v) for v in obj.values()):
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        wrappers.append(inner)
        ignored += [str(k) for k in obj if k != inner]
        obj = obj[inner]
    if not isinstance(obj, Mapping):
        raise ValueError(f"it holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if _is_tensor(v)}
    ignored = sorted(ignored + [str(k) for k, v in obj.items() if not _is_tensor(v)])
    if not tensors:
        raise ValueError("it holds no tensors" + (f" (entries: {', '.join(ignored[:5])})" if ignored else ""))
    if all(k.startswith("module.") for k in tensors):  # saved from torch.nn.DataParallel
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
        wrappers.append("module. prefix")
    return WeightFile(tensors, wrappers, ignored)


def layout(keys) -> str:
    """'ldm_full' (a whole original-layout model: UNet, VAE, text encoder), 'ldm_unet' (original
    layout, UNet only), or 'diffusers' (UNet keys as diffusers names them, maybe 'unet.'-prefixed)."""
    keys = list(keys)
    ldm = any(k.startswith(LDM_PREFIXES) or _LDM_BARE.match(k) for k in keys)
    if not ldm:
        return "diffusers"
    whole = any(k.startswith(LDM_VAE_PREFIX) for k in keys) and any(k.startswith(LDM_TEXT_PREFIXES) for k in keys)
    return "ldm_full" if whole else "ldm_unet"


def ldm_unet_prefixes(config: Mapping) -> list[tuple[str, str, bool]]:
    """(original prefix, diffusers prefix, is a resnet) for every block of a UNet2DConditionModel
    with this config — the layout diffusers' own single-file conversion assumes, derived from
    the config so that any depth and any mix of cross-attention blocks maps."""
    per = int(config["layers_per_block"])
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    out: list[tuple[str, str, bool]] = [
        ("time_embed.0.", "time_embedding.linear_1.", False), ("time_embed.2.", "time_embedding.linear_2.", False),
        ("input_blocks.0.0.", "conv_in.", False), ("out.0.", "conv_norm_out.", False), ("out.2.", "conv_out.", False),
        ("middle_block.0.", "mid_block.resnets.0.", True), ("middle_block.1.", "mid_block.attentions.0.", False),
        ("middle_block.2.", "mid_block.resnets.1.", True),
    ]
    for i, kind in enumerate(down):
        for j in range(per):
            n = (per + 1) * i + j + 1
            out.append((f"input_blocks.{n}.0.", f"down_blocks.{i}.resnets.{j}.", True))
            if "CrossAttn" in kind:
                out.append((f"input_blocks.{n}.1.", f"down_blocks.{i}.attentions.{j}.", False))
        if i < len(down) - 1:
            out.append((f"input_blocks.{(per + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv.", False))
    for i, kind in enumerate(up):
        attn = "CrossAttn" in kind
        for j in range(per + 1):
            n = (per + 1) * i + j
            out.append((f"output_blocks.{n}.0.", f"up_blocks.{i}.resnets.{j}.", True))
            if attn:
                out.append((f"output_blocks.{n}.1.", f"up_blocks.{i}.attentions.{j}.", False))
        if i < len(up) - 1:
            n = (per + 1) * i + per
            out.append((f"output_blocks.{n}.{2 if attn else 1}.conv.", f"up_blocks.{i}.upsamplers.0.conv.", False))
    # longest prefix first, so 'input_blocks.3.0.op.' wins over 'input_blocks.3.0.'
    return sorted(out, key=lambda t: -len(t[0]))


def ldm_unet_to_diffusers(tensors: Mapping, config: Mapping) -> tuple[dict, list[str]]:
    """Original-layout UNet tensors (prefixed or bare; whole or partial) renamed to diffusers'
    keys, and the keys that name no UNet block (left out)."""
    prefixes = ldm_unet_prefixes(config)
    out, unknown = {}, []
    for key, value in tensors.items():
        bare = next((key[len(p):] for p in LDM_PREFIXES if key.startswith(p)), key)
        match = next(((old, new, res) for old, new, res in prefixes if bare.startswith(old)), None)
        if match is None:
            unknown.append(key)
            continue
        old, new, resnet = match
        rest = bare[len(old):]
        if resnet:
            for a, b in _RESNET_RENAMES:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
                    break
        out[new + rest] = value
    return out, unknown


def unet_tensors(tensors: Mapping, keys_layout: str) -> dict:
    """The UNet's tensors of a whole original-layout file (other components left out)."""
    if keys_layout != "ldm_full":
        return dict(tensors)
    return {k: v for k, v in tensors.items() if k.startswith(LDM_PREFIXES)}


def base_unet_config(base: Path) -> dict:
    path = Path(base) / "unet" / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"base '{base}' has no unet/config.json — give a diffusers pipeline folder") from None
    except json.JSONDecodeError as err:
        raise InputError(f"'{path}' is not valid JSON ({err.msg}, line {err.lineno}) — restore the base folder") from None


def base_unet_shapes(base: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape of the base's UNet, from its config alone (built on the meta
    device: no weights are read, so this is instant even for SD 1.5)."""
    import torch
    from diffusers import UNet2DConditionModel

    config = base_unet_config(base)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    return {k: tuple(v.shape) for k, v in unet.state_dict().items()}


def compare_unet_keys(tensors: dict, shapes: dict[str, tuple[int, ...]]) -> dict:
    """Missing, unexpected and wrongly shaped keys of a diffusers-layout UNet state dict."""
    return {"missing": sorted(set(shapes) - set(tensors)), "unexpected": sorted(set(tensors) - set(shapes)),
            "shape_mismatch": sorted(k for k in set(tensors) & set(shapes) if tuple(tensors[k].shape) != shapes[k])}
