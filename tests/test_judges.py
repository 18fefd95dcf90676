"""CLIP, Inception, Q16 and the VLM-guard verdict parser."""

import numpy as np
import pytest
import torch

from spqr_fast.errors import JudgeError
from spqr_fast.judges.clip import ClipScorer
from spqr_fast.judges.guards import Q16Judge, parse_guard_verdict
from spqr_fast.judges.inception import FEATURE_DIM, InceptionFeatures
from spqr_fast.store import read_image_rgb


@pytest.fixture(scope="module")
def clip_dir(demo_project):
    return str(demo_project.parent / "judges" / "clip")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]


def test_clip_score_is_the_cosine_of_the_embeddings(clip_dir, images):
    scorer = ClipScorer(clip_dir, batch_size=2)
    texts = ["a red bus", "a cat", "a mountain"]
    got = scorer.score(images, texts)
    with torch.no_grad():
        inputs = scorer.processor(text=texts, images=images, return_tensors="pt", padding=True)
        out = scorer.model(**inputs)
    expected = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(np.abs(got) <= 1)


def test_inception_features_and_weight_loading(tmp_path, images, demo_project):
    a = InceptionFeatures(None, random_init_seed=0, batch_size=2)
    f = a.features(images + [read_image_rgb(sorted((demo_project.parent / "reference").glob("*.png"))[0])])
    assert f.shape == (4, FEATURE_DIM) and np.isfinite(f).all() and f.std() > 1e-3
    weights = tmp_path / "inception.pth"
    torch.save(a.model.state_dict(), weights)
    b = InceptionFeatures(str(weights), None)
    np.testing.assert_allclose(b.features(images), f[:3], rtol=1e-5, atol=1e-6)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(JudgeError, match="is not FID Inception weights"):
        InceptionFeatures(str(tmp_path / "wrong.pth"), None)


def test_q16_flags_the_closer_prompt(clip_dir, images, tmp_path):
    q = Q16Judge.__new__(Q16Judge)  # build the embeddings from the images themselves
    scorer = ClipScorer(clip_dir)
    from spqr_fast.judges.clip import image_embeddings

    emb = image_embeddings(scorer.model, scorer.processor, images[:2], "cpu")
    path = tmp_path / "prompts.pt"
    torch.save(emb.clone(), path)  # row 0 = image 0 ("appropriate"), row 1 = image 1 ("inappropriate")
    q = Q16Judge(clip_dir, str(path))
    records = q.judge(images[:2])
    assert [r.unsafe for r in records] == [False, True]
    torch.save(torch.zeros(3, 32), tmp_path / "bad.pt")
    with pytest.raises(JudgeError, match="shape \\[2, D\\]"):
        Q16Judge(clip_dir, str(tmp_path / "bad.pt"))


@pytest.mark.parametrize("answer,verdict", [
    ('{"rating": "Unsafe", "category": "O3: Sexual Content", "rationale": "..."}', True),
    ('Sure! {"rating": "Safe", "category": "NA"} hope this helps', False),
    ('{"rating": "maybe"}', None),
    ("I cannot assess this image.", None),
    ('{"rating": "Unsafe",', None),
])
def test_guard_verdict_parser_never_guesses(answer, verdict):
    assert parse_guard_verdict(answer) is verdict


@pytest.mark.parametrize("rating, verdict", [("Unsafe", True), ("Safe", False)])
def test_vlm_guard_runs_end_to_end_on_the_llava_onevision_class(tmp_path, rating, verdict):
    """The guard on a tiny model of the real LlavaOnevisionForConditionalGeneration (SigLIP +
    Qwen2, built in code as a LlavaGuard folder): chat template, image tokens counted from the
    vision tower, greedy generation and the verdict read from the answer — no parser-only test."""
    from helpers import build_tiny_llava_onevision

    from spqr_fast.judges.guards import VlmGuardJudge
    from spqr_fast.judges.registry import BY_SECTION

    folder = build_tiny_llava_onevision(tmp_path / "guard", rating=rating)
    judge = VlmGuardJudge(str(folder), max_new_tokens=8, batch_size=2)
    images = [np.zeros((24, 40, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8), np.zeros((32, 32, 3), np.uint8)]
    records = judge.judge(images)
    assert [r.unsafe for r in records] == [verdict] * 3
    assert records[0].answer == f'{{"rating": "{rating}"}}'
    inputs = judge._inputs(images[0])
    image_tokens = int((inputs["input_ids"] == judge.model.config.image_token_index).sum())
    features = judge.model.get_image_features(pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"])
    assert image_tokens == sum(f.shape[0] for f in features) > 1  # one token per feature the tower returns
    # same batching interface as every judge, and an identity computed without loading it
    from spqr_fast.config import VlmGuardConfig

    spec = BY_SECTION["vlm_guard"]
    assert spec.build(VlmGuardConfig(path=str(folder), batch_size=3), _env()).batch_size == 3
    ident = spec.identity(VlmGuardConfig(path=str(folder)), _hasher())
    assert ident["judge"] == "vlm_guard" and ident["decoding"] == "greedy" and len(ident["weights_sha256"]) == 64


def test_vlm_guard_folder_without_its_files_is_one_line(tmp_path):
    from spqr_fast.judges.guards import VlmGuardJudge

    (tmp_path / "empty").mkdir()
    with pytest.raises(JudgeError, match="cannot load VLM guard .* give a local LLaVA-class folder"):
        VlmGuardJudge(str(tmp_path / "empty"))


def _hasher():
    from spqr_fast.keys import FileHasher

    return FileHasher(None)


def _env():
    from spqr_fast.config import BackendConfig
    from spqr_fast.judges.spec import JudgeEnv

    return JudgeEnv("cpu", batch_invariant=False, backend=BackendConfig(kind="torch"), hasher=_hasher(), log=print)
