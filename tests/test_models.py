"""Loading from local paths: folders, UNet state dicts on a base, LoRA; errors name the problem."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from spqr_fast.config import ModelSource
from spqr_fast.errors import ModelLoadError
from spqr_fast.models import detect_format, load_pipeline
from spqr_fast.keys import FileHasher, source_hash
from spqr_fast.sampling.sampler import DiffusionSampler


@pytest.fixture(scope="module")
def models_dir(demo_project):
    return demo_project.parent / "models"


def _image(pipe):
    return DiffusionSampler.from_pipe(pipe, steps=2, height=64, width=64).generate(["a red bus"], [5], [7.5])[0]


def test_partial_unet_state_dict_applies_on_base_and_is_reported(models_dir):
    src = ModelSource(path=str(models_dir / "uce-unet.safetensors"), base=str(models_dir / "base"),
                      allow_missing_keys=True)
    assert detect_format(src) == "unet_state_dict"
    pipe, report = load_pipeline(src)
    assert report.format == "unet_state_dict"
    assert report.missing_keys and not report.unexpected_keys
    key = next(k for k in pipe.unet.state_dict() if ".attn2.to_k." in k)
    base, _ = load_pipeline(ModelSource(path=str(models_dir / "base")))
    from safetensors.torch import load_file

    edit = load_file(str(models_dir / "uce-unet.safetensors"))
    torch.testing.assert_close(pipe.unet.state_dict()[key], edit[key])
    assert not torch.equal(edit[key], base.unet.state_dict()[key])
    other = next(k for k in base.unet.state_dict() if k not in edit)
    torch.testing.assert_close(pipe.unet.state_dict()[other], base.unet.state_dict()[other])


def test_partial_state_dict_without_permission_is_refused(models_dir):
    src = ModelSource(path=str(models_dir / "uce-unet.safetensors"), base=str(models_dir / "base"))
    with pytest.raises(ModelLoadError, match="UNet keys missing .* allow_missing_keys"):
        load_pipeline(src)


def test_unexpected_keys_and_missing_base_are_refused(models_dir, tmp_path):
    bad = tmp_path / "bad.safetensors"
    save_file({"not.a.unet.key": torch.zeros(2)}, str(bad))
    with pytest.raises(ModelLoadError, match="do not belong to the base UNet"):
        load_pipeline(ModelSource(path=str(bad), base=str(models_dir / "base"), allow_missing_keys=True))
    with pytest.raises(ModelLoadError, match="give its base .*--base"):
        load_pipeline(ModelSource(path=str(bad)))


def test_corrupt_and_foreign_files_are_named(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match="cannot read weights file"):
        detect_format(ModelSource(path=str(broken)))
    with pytest.raises(ModelLoadError, match="without model_index.json"):
        detect_format(ModelSource(path=str(tmp_path)))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="is not a model"):
        detect_format(ModelSource(path=str(tmp_path / "notes.txt")))


def test_lora_folder_is_fused_like_diffusers_loads_it(models_dir, esd_lora):
    base_src = ModelSource(path=str(models_dir / "base"))
    fused, report = load_pipeline(base_src.model_copy(update={"lora": str(esd_lora)}))
    assert report.lora
    plain, _ = load_pipeline(base_src)
    reference, _ = load_pipeline(base_src)
    reference.load_lora_weights(str(esd_lora), weight_name="pytorch_lora_weights.safetensors")
    a, b, ref = _image(fused), _image(plain), _image(reference)
    assert np.abs(a.astype(int) - b).max() > 0  # the LoRA changes the output
    assert np.abs(a.astype(int) - ref).max() <= 1  # fused equals diffusers' unfused LoRA (to rounding)


def test_source_hash_tracks_weights(models_dir, esd_lora, tmp_path):
    hasher = FileHasher(tmp_path / "h.json")
    a = source_hash(ModelSource(path=str(models_dir / "base")), hasher)
    b = source_hash(ModelSource(path=str(models_dir / "base"), lora=str(esd_lora)), hasher)
    c = source_hash(ModelSource(path=str(models_dir / "esd")), hasher)
    assert len({a, b, c}) == 3
    assert a == source_hash(ModelSource(path=str(models_dir / "base")), FileHasher(tmp_path / "h.json"))


def test_the_same_weights_saved_from_another_place_hash_the_same(models_dir, tmp_path):
    """A re-saved folder differs only in the `_name_or_path` of its configs: same model, same keys."""
    import json
    import shutil

    copies = []
    for name in ("here", "there"):
        folder = shutil.copytree(models_dir / "base", tmp_path / name)
        for cfg in folder.rglob("*.json"):
            data = json.loads(cfg.read_text())
            if isinstance(data, dict):
                cfg.write_text(json.dumps({**data, "_name_or_path": f"/somewhere/{name}"}))
        copies.append(folder)
    hashes = [source_hash(ModelSource(path=str(c)), FileHasher(None)) for c in copies]
    assert hashes[0] == hashes[1]
    unet_cfg = copies[1] / "unet" / "config.json"
    unet_cfg.write_text(json.dumps({**json.loads(unet_cfg.read_text()), "sample_size": 7}))  # a real change
    assert source_hash(ModelSource(path=str(copies[1])), FileHasher(None)) != hashes[0]
