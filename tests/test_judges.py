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
