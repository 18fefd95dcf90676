"""Resumable BFT checkpoints, stored without pickle.

out/checkpoints/step-NNNNNNNN/ holds `trainable.safetensors` (the trained tensors),
`optimizer.safetensors` (the optimizer's per-parameter tensors) and `state.json` (step, losses,
the optimizer's param groups and scalars, the AMP grad scaler). A folder is complete once renamed
into place. Nothing here is unpickled: a checkpoint folder is data a planted file could reach (a
shared BFT cache), so it must never be able to run code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import InputError
from .profiles import trainable_state

FORMAT = "spqr-checkpoint/2"
TENSORS = "trainable.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"


def optimizer_to_safe(optimizer) -> tuple[dict, dict]:
    """(tensors for safetensors, JSON-able rest) of an optimizer's state dict."""
    import torch

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, per_param in sd["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_safe(tensors: dict, rest: dict) -> dict:
    """The inverse of `optimizer_to_safe`: a state dict `load_state_dict` accepts."""
    state: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *rest["scalars"].items()]:
        idx, name = flat.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


class Checkpoints:
    """The checkpoints of one BFT output folder; the newest two are kept."""

    def __init__(self, out: Path):
        self.root = Path(out) / "checkpoints"

    def latest(self) -> Path | None:
        done = sorted(p for p in self.root.glob("step-*") if (p / STATE).is_file())
        return done[-1] if done else None

    def save(self, step: int, unet, optimizer, scaler, losses: list[float]) -> None:
        from safetensors.torch import save_file

        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".tmp-step-{step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(trainable_state(unet), str(tmp / TENSORS))
        opt_tensors, opt_rest = optimizer_to_safe(optimizer)
        save_file(opt_tensors, str(tmp / OPTIMIZER))
        state = {"format": FORMAT, "step": step, "losses": losses, "optimizer": opt_rest,
                 "scaler": scaler.state_dict() if scaler is not None else None}
        (tmp / STATE).write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(p for p in self.root.glob("step-*") if p != final)[:-1]:
            shutil.rmtree(old, ignore_errors=True)

    def load(self, path: Path, unet, optimizer, scaler) -> tuple[int, list[float]]:
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = json.loads((path / STATE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"checkpoint '{path}' has an unreadable {STATE} ({type(err).__name__}) — "
                             "delete that folder to resume from the one before, or restart the fine-tune") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT or not (path / OPTIMIZER).is_file():
            raise InputError(f"checkpoint '{path}' is not a {FORMAT} checkpoint (older spqr-fast checkpoints kept "
                             "optimizer state as a pickle, which is never loaded: it can run code) — delete "
                             f"'{path.parent}' and restart the fine-tune")
        try:
            saved = load_file(str(path / TENSORS))
            opt_tensors = load_file(str(path / OPTIMIZER))
        except (OSError, SafetensorError) as err:
            raise InputError(f"checkpoint '{path}' is corrupt ({err}) — delete it and re-run to resume "
                             "from the one before") from None
        params = dict(unet.named_parameters())
        unknown = sorted(set(saved) - {n for n, p in params.items() if p.requires_grad})
        if unknown:
            raise InputError(f"checkpoint '{path}' does not match this profile/model (e.g. {unknown[0]}) — "
                             "use a fresh --out or drop --resume")
        with torch.no_grad():
            for n, t in saved.items():
                params[n].copy_(t)
        try:
            optimizer.load_state_dict(optimizer_from_safe(opt_tensors, state["optimizer"]))
        except (KeyError, ValueError, TypeError) as err:
            raise InputError(f"checkpoint '{path}': optimizer state does not fit this run ({err}) — "
                             "use a fresh --out or drop --resume") from None
        step, losses = state.get("step"), state.get("losses")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0 or not isinstance(losses, list) \
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in losses):
            raise InputError(f"checkpoint '{path}' has a tampered {STATE} (step {str(step)[:20]!r}) — delete that "
                             "folder to resume from the one before, or restart the fine-tune")
        if scaler is not None and state.get("scaler") is not None:
            try:
                scaler.load_state_dict(state["scaler"])
            except (KeyError, ValueError, TypeError, AttributeError) as err:
                raise InputError(f"checkpoint '{path}': its loss-scaler state is unreadable ({err}) — delete that "
                                 "folder to resume from the one before") from None
        return step, [float(x) for x in losses]
