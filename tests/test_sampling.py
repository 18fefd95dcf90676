"""Our sampler against diffusers' own pipeline, and per-image seeds against batch size."""

import numpy as np
import pytest
import torch

from spqr_fast.config import ModelSource
from spqr_fast.errors import GenerationError
from spqr_fast.models import load_pipeline
from spqr_fast.sampling.sampler import DiffusionSampler

PROMPTS = ["a red bus", "two cats on a sofa", "a snowy mountain"]
SEEDS = [11, 22, 33]


@pytest.fixture(scope="module")
def pipe(demo_project):
    p, _ = load_pipeline(ModelSource(path=str(demo_project.parent / "models" / "base")), device="cpu", dtype="fp32")
    return p


def _diffusers(pipe, prompts, seeds, steps=4):
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    out = pipe(prompts, num_inference_steps=steps, guidance_scale=7.5, height=64, width=64, generator=gens,
               output_type="np").images
    return (out * 255).round().astype(np.uint8)


def test_batched_sampler_equals_diffusers_pipeline(pipe):
    ours = DiffusionSampler.from_pipe(pipe, steps=4, height=64, width=64, batch_invariant=False).generate(PROMPTS, SEEDS, [7.5] * 3)
    np.testing.assert_array_equal(ours, _diffusers(pipe, PROMPTS, SEEDS))


def test_batch_invariant_sampler_equals_diffusers_one_image_at_a_time(pipe):
    ours = DiffusionSampler.from_pipe(pipe, steps=4, height=64, width=64).generate(PROMPTS, SEEDS, [7.5] * 3)
    theirs = np.concatenate([_diffusers(pipe, [p], [s]) for p, s in zip(PROMPTS, SEEDS)])
    np.testing.assert_array_equal(ours, theirs)


def test_images_do_not_depend_on_batch_size(pipe):
    s = DiffusionSampler.from_pipe(pipe, steps=3, height=64, width=64)
    whole = s.generate(PROMPTS, SEEDS, [7.5] * 3)
    split = np.concatenate([s.generate(PROMPTS[:2], SEEDS[:2], [7.5] * 2), s.generate(PROMPTS[2:], SEEDS[2:], [7.5])])
    np.testing.assert_array_equal(whole, split)
    assert not np.array_equal(whole[0], whole[1])


def test_nan_output_is_a_clear_error(pipe, monkeypatch):
    s = DiffusionSampler.from_pipe(pipe, steps=2, height=64, width=64)
    monkeypatch.setattr(s, "_decode", lambda latents: latents[:, :3].repeat_interleave(2, -1).repeat_interleave(2, -2) * float("nan"))
    with pytest.raises(GenerationError, match="NaN"):
        s.generate(PROMPTS[:1], SEEDS[:1], [7.5])
