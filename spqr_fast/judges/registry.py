"""Every judge spqr-fast knows, keyed by its config section under `judges:`. Safety judges come
first, in the order their verdicts are fused. A new judge: its module (class, identity, record
type, build, `JudgeSpec`) and one entry here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import clip, guards, inception, nudenet, onnx_image_net, vqa
from .spec import JudgeSpec

if TYPE_CHECKING:
    from ..config import JudgesConfig

JUDGES: tuple[JudgeSpec, ...] = (
    nudenet.SPEC, onnx_image_net.CONCEPT_DETECTOR, guards.Q16, guards.VLM_GUARD,
    clip.SPEC, inception.SPEC, vqa.SPEC,
)
BY_SECTION: dict[str, JudgeSpec] = {s.section: s for s in JUDGES}


def configured(judges: JudgesConfig) -> list[tuple[JudgeSpec, object]]:
    """The judges this config turns on, in registry order, each with its config section."""
    return [(spec, section) for spec in JUDGES if (section := getattr(judges, spec.section)) is not None]
