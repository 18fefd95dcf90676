"""Nothing runs that should not: no pickle is loaded from a run's files, `engines clear` removes
only cache artefacts, user-given text reaches the HTML report only as text, and a BFT dataset
cannot name files outside its folder."""

from __future__ import annotations

import json
import pickle

import pytest
from conftest import run_cli

from spqr_fast.errors import InputError


class _Payload:
    """Unpickling this writes a marker file: proof that a pickle was loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant_old_checkpoint(out, marker) -> None:
    step = out / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    (step / "optimizer.pt").write_bytes(pickle.dumps({"optimizer": _Payload(str(marker))}))
    (step / "trainable.safetensors").write_bytes(b"")
    (step / "state.json").write_text(json.dumps({"step": 2, "losses": [1.0, 1.0]}))


def test_a_planted_optimizer_pickle_is_refused_not_loaded(demo_project, tmp_path):
    out, marker = tmp_path / "ft", tmp_path / "payload-ran"
    _plant_old_checkpoint(out, marker)
    world = demo_project.parent
    proc = run_cli("finetune", "--model", world / "models" / "base", "--dataset", world / "datasets" / "benign",
                   "--profile", "lite", "--steps", "3", "--resolution", "32", "--out", out, "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "never loaded" in proc.stderr.splitlines()[-1]
    assert not marker.exists()


def test_checkpoints_hold_no_pickle_and_restore_the_optimizer_exactly(tmp_path):
    import torch

    from spqr_fast.finetune.checkpoints import optimizer_from_safe, optimizer_to_safe

    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.8, 0.95))
    for _ in range(3):
        sum((p ** 2).sum() for p in params).backward()
        opt.step()
    tensors, rest = optimizer_to_safe(opt)
    json.dumps(rest)  # the non-tensor part is plain JSON
    fresh = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], lr=1e-3, betas=(0.8, 0.95))
    fresh.load_state_dict(optimizer_from_safe(tensors, json.loads(json.dumps(rest))))
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i in a["state"]:
        for k in a["state"][i]:
            assert torch.equal(a["state"][i][k], b["state"][i][k])


def test_engines_clear_removes_only_artefacts(tmp_path):
    from spqr_fast.export.cache import ArtefactCache

    root = tmp_path / "cache"
    cache = ArtefactCache(root)
    built = cache.get_or_build("onnx", {"x": 1}, lambda folder: {"size": (folder / "model.onnx").write_bytes(b"g")})
    (root / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("mine")
    (root / "onnx" / "my-folder").mkdir()
    (root / "onnx" / "my-folder" / "keep.bin").write_bytes(b"k")
    killed = root / "onnx" / f".building-{'ab' * 12}-x7k2q"  # a killed build: tempfile's name for one
    killed.mkdir()
    (root / "onnx" / ".building-assets").mkdir()  # a user's folder that merely starts the same way
    proc = run_cli("engines", "clear", "--root", root)
    assert proc.returncode == 0, proc.stderr
    assert "removed 1 artefact(s)" in proc.stdout and "left 3 path(s)" in proc.stdout
    assert not built.exists() and not killed.exists() and (root / "onnx" / ".building-assets").is_dir()
    assert (root / "notes.txt").read_text() == "mine" and (root / "onnx" / "my-folder" / "keep.bin").is_file()


HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def test_user_given_text_reaches_the_report_as_text(complete_run):
    """Every string a user or a prompt file gives — run name, model names, prompts, prompt ids,
    categories — rendered with markup in it, bypassing the config's name check."""
    from spqr_fast.config import load_config
    from spqr_fast.report.html_report import render_html
    from spqr_fast.store import ImageStore

    config, out = complete_run
    results = json.loads((out / "results.json").read_text())
    per_image = [json.loads(x) for x in (out / "per_image.jsonl").read_text().splitlines()]
    cfg = load_config(config)
    names = {m.name: f"{m.name}{HOSTILE}" for m in cfg.models}
    for m in cfg.models:
        m.__dict__["name"] = names[m.name]
    results["name"] = HOSTILE
    for row in results["models"]:
        row["name"] = names[row["name"]]
        row["categories"] = {HOSTILE: v for v in row["categories"].values()}
    ill = results.get("illusion") or {}
    for key in ("ranking_by_P_clip", "ranking_by_P_tifa"):
        ill[key] = [names.get(n, n) for n in ill.get(key, [])]
    ill["disagreeing_pairs"] = [[names.get(a, a), names.get(b, b)] for a, b in ill.get("disagreeing_pairs", [])]
    for m in ill.get("models", []):
        m["name"] = names.get(m["name"], m["name"])
    for r in per_image:
        r.update(model=names[r["model"]], prompt_id=HOSTILE, **({"prompt": HOSTILE} if "prompt" in r else {}))
    from pydantic import TypeAdapter

    from spqr_fast.schema import PerImageRecord, Results

    typed = TypeAdapter(list[PerImageRecord]).validate_python(per_image)  # the hostile text, as readers type it
    page = render_html(Results.model_validate(results), typed, ImageStore(out), cfg)
    assert "<img src=x" not in page and "<script" not in page
    assert "&lt;img src=x" in page


def test_a_dataset_cannot_name_files_outside_its_folder(tmp_path):
    from spqr_fast.finetune.dataset import load_bft_dataset

    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"file_name": "../secret.png", "text": "a"}, {"file_name": str(secret), "text": "b"}]
    (data / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(InputError, match="2 file names outside the dataset folder"):
        load_bft_dataset(data)
