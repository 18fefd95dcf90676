"""Benign fine-tuning: what each profile trains, the output formats, resume, bad datasets."""

import json

import numpy as np
import pytest
import torch

from spqr_fast.config import BftConfig, ModelSource
from spqr_fast.errors import InputError
from spqr_fast.finetune.dataset import load_bft_dataset
from spqr_fast.finetune.profiles import MODERATE_PARAMS
from spqr_fast.finetune.trainer import Checkpoints, after_bft_source, finetune, train
from spqr_fast.models import load_pipeline
from spqr_fast.sampling.sampler import DiffusionSampler


@pytest.fixture(scope="module")
def base_dir(demo_project):
    return demo_project.parent / "models" / "base"


@pytest.fixture(scope="module")
def dataset_dir(demo_project):
    return demo_project.parent / "datasets" / "benign"


def _cfg(dataset_dir, **kw):
    args = dict(profile="lite", dataset=str(dataset_dir), steps=3, batch_size=4, resolution=64, device="cpu")
    args.update(kw)
    return BftConfig(**args)


def _pipe(base_dir):
    return load_pipeline(ModelSource(path=str(base_dir)), device="cpu", dtype="fp32")[0]


def _image(pipe):
    return DiffusionSampler.from_pipe(pipe, steps=2, height=64, width=64).generate(["a red circle"], [3], [7.5])[0]


def test_lite_trains_only_lora_weights_and_leaves_the_base_bitwise_unchanged(base_dir, dataset_dir, tmp_path):
    pipe = _pipe(base_dir)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    result = train(pipe, _cfg(dataset_dir), load_bft_dataset(dataset_dir), tmp_path)
    after = pipe.unet.state_dict()
    lora = {k for k in after if "lora_" in k}
    assert lora and all("lora_" in n for n, p in pipe.unet.named_parameters() if p.requires_grad)
    base_keys = {k.replace(".base_layer", "") : k for k in after if "lora_" not in k}
    assert set(base_keys) == set(before)
    for plain, wrapped in base_keys.items():
        assert torch.equal(after[wrapped], before[plain]), plain
    assert sum(p.numel() for p in result.params) == sum(after[k].numel() for k in lora)
    assert any(not torch.equal(after[k], torch.zeros_like(after[k])) for k in lora if "lora_B" in k)


def test_moderate_trains_exactly_the_named_parameters(base_dir, dataset_dir, tmp_path):
    pipe = _pipe(base_dir)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    train(pipe, _cfg(dataset_dir, profile="moderate"), load_bft_dataset(dataset_dir), tmp_path)
    changed = {k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, before[k])}
    named = {k for k in before if any(m in k for m in MODERATE_PARAMS)}
    assert named and changed == named


@pytest.mark.heavy
def test_standard_loss_goes_down(base_dir, dataset_dir, tmp_path):
    pipe = _pipe(base_dir)
    cfg = _cfg(dataset_dir, profile="standard", steps=40, batch_size=8, learning_rate=1e-3)
    losses = train(pipe, cfg, load_bft_dataset(dataset_dir), tmp_path).losses
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])


def test_lite_output_loads_in_diffusers_and_changes_the_pipeline(base_dir, dataset_dir, tmp_path, monkeypatch):
    import diffusers.loaders.lora_base as lora_base
    from diffusers import StableDiffusionPipeline

    # Offline mode makes diffusers demand a weight_name; a user's plain `load_lora_weights(DIR)`
    # (online mode, a local folder: no network is touched) must find our file by itself.
    monkeypatch.setattr(lora_base, "HF_HUB_OFFLINE", False)
    out = tmp_path / "lite"
    card = finetune(ModelSource(path=str(base_dir)), _cfg(dataset_dir, steps=4, learning_rate=1e-2), out)
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    saved = json.loads((out / "bft_card.json").read_text())
    assert saved["profile"] == "lite" and saved["steps"] == 4 and saved["dataset_sha256"] and saved["base_model_hash"]
    assert saved["hyperparameters"]["learning_rate"] == 1e-2 and saved["final_loss"] is not None
    plain = StableDiffusionPipeline.from_pretrained(str(base_dir), local_files_only=True, safety_checker=None)
    tuned = StableDiffusionPipeline.from_pretrained(str(base_dir), local_files_only=True, safety_checker=None)
    tuned.load_lora_weights(str(out))  # diffusers' own loader reads the folder as it is
    a, b = _image(plain), _image(tuned)
    assert np.abs(a.astype(int) - b).max() > 0
    ours, _ = load_pipeline(after_bft_source(ModelSource(path=str(base_dir)), out, card))
    assert np.abs(_image(ours).astype(int) - b).max() <= 1


def test_moderate_output_applies_on_top_of_the_base(base_dir, dataset_dir, tmp_path):
    out = tmp_path / "moderate"
    card = finetune(ModelSource(path=str(base_dir)), _cfg(dataset_dir, profile="moderate", steps=2), out)
    from safetensors.torch import load_file

    patch = load_file(str(out / card["weights_file"]))
    assert patch and all(any(m in k for m in MODERATE_PARAMS) for k in patch)
    tuned, _ = load_pipeline(after_bft_source(ModelSource(path=str(base_dir)), out, card))
    for k, v in patch.items():
        assert torch.equal(tuned.unet.state_dict()[k], v)


def test_resumed_run_ends_with_the_same_weights(base_dir, dataset_dir, tmp_path, monkeypatch):
    cfg = _cfg(dataset_dir, profile="moderate", steps=6, checkpoint_every=2, batch_size=4, micro_batch_size=2)
    model = ModelSource(path=str(base_dir))
    whole = finetune(model, cfg, tmp_path / "whole")

    real_save = Checkpoints.save

    def save_then_die(self, step, *a, **k):
        real_save(self, step, *a, **k)
        if step == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoints, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune(model, cfg, tmp_path / "cut")
    monkeypatch.setattr(Checkpoints, "save", real_save)
    with pytest.raises(InputError, match="--resume"):
        finetune(model, cfg, tmp_path / "cut")
    resumed = finetune(model, cfg, tmp_path / "cut", resume=True)
    assert resumed["resumed_from_step"] == 4 and resumed["losses"] == whole["losses"]
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "whole" / whole["weights_file"]))
    b = load_file(str(tmp_path / "cut" / resumed["weights_file"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_datasets_are_reported_before_training(tmp_path, dataset_dir):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(dataset_dir, bad)
    lines = (bad / "metadata.jsonl").read_text().splitlines()
    lines[0] = json.dumps({"file_name": "gone.png", "text": "x"})
    lines[1] = json.dumps({"file_name": "scene_0001.png", "text": "  "})
    lines.append("{not json")
    (bad / "scene_0002.png").write_bytes(b"broken")
    (bad / "metadata.jsonl").write_text("\n".join(lines))
    with pytest.raises(InputError) as err:
        load_bft_dataset(bad)
    msg = str(err.value)
    for part in (f"1 malformed metadata lines (line {len(lines)})", "1 missing images (gone.png)",
                 "1 empty captions (scene_0001.png (line 2))", "1 unreadable images (scene_0002.png)"):
        assert part in msg
    (bad / "metadata.jsonl").unlink()
    with pytest.raises(InputError, match="no metadata.jsonl"):
        load_bft_dataset(bad)


def test_config_rejects_conflicting_bft_settings(dataset_dir):
    with pytest.raises(ValueError, match="not both"):
        BftConfig(profile="lite", dataset=str(dataset_dir), epochs=1, steps=2)
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        BftConfig(profile="lite", dataset=str(dataset_dir), batch_size=16, micro_batch_size=5)


def test_checkpoints_are_on_by_default_and_timed():
    from spqr_fast.finetune.trainer import CHECKPOINT_SECONDS, checkpoint_due

    assert BftConfig(profile="lite", dataset="x").checkpoint_every is None  # default: by time
    assert not checkpoint_due(None, 10, CHECKPOINT_SECONDS - 1) and checkpoint_due(None, 10, CHECKPOINT_SECONDS)
    assert checkpoint_due(5, 10, 0) and not checkpoint_due(5, 11, 1e9)
    assert not checkpoint_due(0, 10, 1e9)  # 0: never


def test_resolution_defaults_to_the_models_own(base_dir, dataset_dir, tmp_path):
    """An unset resolution trains at the model's size (a 512-px default once made a 32-px model
    encode every image at 512 px for minutes); a size far from it is warned about."""
    from rich.console import Console

    from spqr_fast.finetune.trainer import native_resolution, training_resolution

    pipe, _ = load_pipeline(ModelSource(path=str(base_dir)))
    native = native_resolution(pipe)
    assert native == pipe.unet.config.sample_size * pipe.vae_scale_factor
    console = Console(stderr=True, record=True, width=200)
    assert training_resolution(_cfg(dataset_dir, resolution=None), pipe, console) == native
    assert training_resolution(_cfg(dataset_dir, resolution=native * 4), pipe, console) == native * 4
    assert "far from the model's own" in console.export_text()
    card = finetune(ModelSource(path=str(base_dir)), _cfg(dataset_dir, resolution=None, steps=1), tmp_path / "ft")
    assert card["resolution"] == native
