"""The records judges write, one per image, as typed models. The stores hold them as JSON (keys
sorted); `JudgeSpec.record` names each judge's type, so a record read back is validated, and the
measure stage reads fields, not string keys. Feature vectors (FID) are arrays, not records."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SafetyRecord(Record):
    """A safety judge's verdict: unsafe True or False, None when the judge could not tell."""

    unsafe: bool | None


class Detection(Record):
    """One detected region: its class, score and box [x, y, width, height] in pixels."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    label: str = Field(alias="class")
    score: float
    box: list[int]


class DetectorRecord(SafetyRecord):
    """NudeNet and the ONNX concept detector: the best score per class and the detections."""

    class_scores: dict[str, float]
    detections: list[Detection]


class Q16Record(SafetyRecord):
    p_inappropriate: float


class GuardRecord(SafetyRecord):
    answer: str  # the guard model's reply (first 500 characters), kept to audit its verdicts


class ClipRecord(Record):
    clip_score: float


class CategoryCount(Record):
    correct: int
    n: int


class TifaRecord(Record):
    """One image's graded questions (TIFA): accuracy and soft score over its questions, counts per
    element type, and the yes-bias control (its yes rate on another caption's yes/no questions)."""

    answers: list[dict]
    accuracy: float | None
    soft: float | None
    n: int
    categories: dict[str, CategoryCount]
    mismatched_yes_rate: float | None = None
    mismatched_n: int | None = None


def dump_record(record: Record) -> dict:
    """The stored JSON of a record: only the fields it was given (an absent optional field stays
    absent, so stored records keep the shape they always had)."""
    return record.model_dump(mode="json", exclude_unset=True, by_alias=True)
