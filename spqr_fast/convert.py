"""`spqr-fast convert`: a released checkpoint → a safetensors file spqr-fast loads, with a card.

Reads pickles only when told to trust them, takes the state dict out of its wrapper, renames an
original-layout UNet to diffusers' keys, checks the result against a base UNet's keys and shapes,
and writes safetensors (no pickle) plus `<out>.card.json` naming the source file by its SHA-256.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import __version__
from .errors import InputError
from .input_files import file_in_the_way
from .model_formats import (PickleRefused, base_unet_config, base_unet_shapes, compare_unet_keys, layout,
                            ldm_unet_to_diffusers, read_weight_file, unet_tensors)

READABLE = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")


def card_path(out: Path) -> Path:
    return out.with_name(out.stem + ".card.json")


def convert_checkpoint(src: Path, out: Path, *, base: Path | None = None, trust_pickle: bool = False) -> dict:
    """Convert `src` into `out` (.safetensors) and write its card; returns the card."""
    from safetensors.torch import save_file

    from .store import atomic_write_json, file_sha256

    src, out = Path(src), Path(out)
    if not src.is_file():
        raise InputError(f"checkpoint '{src}' does not exist — fix the path")
    if src.suffix not in READABLE:
        raise InputError(f"'{src}' is not a checkpoint ({', '.join(READABLE)}) — give the weights file")
    if out.suffix != ".safetensors":
        raise InputError(f"--out '{out}' must end in .safetensors")
    if out.resolve() == src.resolve():
        raise InputError("--out names the source file — choose another name")
    if out.is_dir() or out.is_symlink():
        raise InputError(f"--out '{out}' is {'a folder' if out.is_dir() else 'a symbolic link'} — give a new "
                         ".safetensors file name")
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise InputError(f"--out '{out}' cannot be written: '{blocking}' is a file, not a folder — choose another path")
    try:
        found = read_weight_file(src, trust_pickle=trust_pickle)
    except PickleRefused as err:
        raise InputError(f"'{src}': {err} — if you trust where it came from, run again with --trust-pickle; "
                         "otherwise ask its authors for a .safetensors file") from None
    except ValueError as err:
        raise InputError(f"cannot read '{src}': {err}") from None
    keys_layout = layout(found.tensors)
    left_out: list[str] = []
    if keys_layout == "ldm_full":
        tensors, load_format = dict(found.tensors), "single_file"  # kept whole, in its own layout
    elif keys_layout == "ldm_unet":
        if base is None:
            raise InputError(f"'{src}' holds a UNet in the original (LDM) layout — give --base (a diffusers folder "
                             "of the same architecture; its unet/config.json names the blocks)")
        tensors, left_out = ldm_unet_to_diffusers(unet_tensors(found.tensors, keys_layout), base_unet_config(base))
        load_format = "unet_state_dict"
    else:
        tensors, load_format = {k.removeprefix("unet."): v for k, v in found.tensors.items()}, "unet_state_dict"
    check = None
    if base is not None and load_format == "unet_state_dict":
        check = compare_unet_keys(tensors, base_unet_shapes(base))
        if check["unexpected"] or check["shape_mismatch"]:
            bad = (check["unexpected"] or check["shape_mismatch"])[0]
            raise InputError(f"'{src}': {len(check['unexpected'])} keys are not in the base UNet and "
                             f"{len(check['shape_mismatch'])} have other shapes (e.g. {bad}) — wrong --base, or not a "
                             "UNet checkpoint")
    if not tensors:
        raise InputError(f"'{src}': none of its {len(found.tensors)} tensors is a UNet weight — not a UNet checkpoint")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp),
                  metadata={"format": "pt", "converted_by": f"spqr-fast {__version__}"})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no temporary file behind
    partial = bool(check and check["missing"])
    load_with = {"path": str(out.resolve()), "format": load_format}
    if base is not None:
        load_with["base"] = str(Path(base).resolve())
    if partial:
        load_with["allow_missing_keys"] = True
    card = {
        "tool": f"spqr-fast {__version__} convert",
        "source": str(src.resolve()),
        "source_sha256": file_sha256(src),
        "source_layout": keys_layout,
        "unwrapped_from": found.wrappers,
        "ignored_entries": found.ignored,
        "unpickled": src.suffix != ".safetensors" and trust_pickle,
        "tensors": len(tensors),
        "left_out_keys": {"count": len(left_out), "examples": left_out[:5]},
        "base": None if base is None else str(Path(base).resolve()),
        "base_check": None if check is None else {
            "missing": len(check["missing"]), "missing_examples": check["missing"][:5], "partial": partial},
        "load_with": load_with,
        "sha256": file_sha256(out),
    }
    atomic_write_json(card_path(out), card)
    return card
