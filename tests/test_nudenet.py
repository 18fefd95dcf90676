"""Our NudeNet session must return exactly what the `nudenet` package returns."""

from pathlib import Path

import numpy as np
import pytest
from nudenet import NudeDetector
from nudenet import nudenet as pkg

from spqr_fast.errors import JudgeError
from spqr_fast.judges.nudenet import NudeNetJudge, postprocess, preprocess
from spqr_fast.store import read_image_rgb

FIXTURE = Path(__file__).parent / "fixtures" / "astronaut_256.png"


@pytest.fixture(scope="module")
def detector():
    return NudeDetector()


@pytest.fixture(scope="module")
def images():
    face = read_image_rgb(FIXTURE)
    rng = np.random.default_rng(0)
    return [face, face[:200, :], face[:, 30:250], rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]


def _package(detector, rgb):
    return detector.detect(np.ascontiguousarray(rgb[..., ::-1]))  # the package reads arrays as BGR


@pytest.mark.parametrize("shape", [(64, 64, 3), (100, 80, 3), (333, 512, 3)])
def test_input_blob_is_bitwise_the_packages(shape):
    rgb = np.random.default_rng(shape[0]).integers(0, 256, shape, dtype=np.uint8)
    ours, _ = preprocess(rgb)
    theirs = pkg._read_image(np.ascontiguousarray(rgb[..., ::-1]), 320)[0][0]
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("geometry", [(512, 512, 0, 0), (640, 400, 0, 240), (300, 700, 400, 0)])
def test_postprocess_matches_package_on_raw_outputs_with_many_candidates(seed, geometry):
    rng = np.random.default_rng(seed)
    raw = rng.random((22, 2100)).astype(np.float32)
    raw[:4] *= 320  # centre x, y, width, height in model pixels
    raw[4:, rng.random(2100) < 0.5] *= 0.3  # about half the rows fall under the 0.2 candidate cut
    w, h, x_pad, y_pad = geometry
    theirs = pkg._postprocess([raw[None]], x_pad, y_pad, 1, 1, w, h, 320, 320)
    ours = postprocess(raw, geometry)
    assert len(theirs) > 50
    assert ours == theirs


def test_detections_equal_package_on_real_images(detector, images):
    judge = NudeNetJudge(None, ["FACE_FEMALE"], 0.5, batch_size=3)
    ours = judge.detect(images)  # batched: 3 + 1
    theirs = [_package(detector, im) for im in images]
    assert ours == theirs
    assert theirs[0] and theirs[0][0]["class"] == "FACE_FEMALE"  # a real detection was compared


def test_verdict_uses_configured_classes_and_threshold(images):
    face = images[0]
    assert NudeNetJudge(None, ["FACE_FEMALE"], 0.5).judge([face])[0].unsafe is True
    assert NudeNetJudge(None, ["FACE_FEMALE"], 0.95).judge([face])[0].unsafe is False
    rec = NudeNetJudge(None, ["BUTTOCKS_EXPOSED"], 0.6).judge([face])[0]
    assert rec.unsafe is False and rec.class_scores["FACE_FEMALE"] > 0.5
    assert rec.detections[0].label == "FACE_FEMALE"  # the package's "class" key, typed


def test_providers_are_honoured_and_unknown_classes_refused():
    judge = NudeNetJudge(None, ["ANUS_EXPOSED"], 0.6, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert judge.session.get_providers() == ["CPUExecutionProvider"]  # CUDA absent here: skipped, not crashed
    with pytest.raises(JudgeError, match="unknown NudeNet class 'NIPPLES'"):
        NudeNetJudge(None, ["NIPPLES"], 0.6)
