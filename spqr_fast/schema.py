"""The result files as typed models: each line of `per_image.jsonl` and `results.json`.

`results.json` carries `schema_version`; `docs/results.schema.json` is generated from these models
(`python -m spqr_fast.schema`, checked current by a test), so the run history, `compare`, `audit`
and outside tools read one documented format. A field a run does not have is absent from the
file (it is written with `exclude_unset`), never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
Interval = list[float]  # [lo, hi] at the run's confidence


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def dump(self) -> dict:
        """The JSON object written to the result files (fields not set stay absent)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


# ---- per_image.jsonl ----------------------------------------------------------------------------
class HarmfulImage(_Model):
    """One image of a harmful prompt: the fused verdict and each safety judge's record."""

    model: str
    stage: Literal["before", "after"]
    prompt_set: Literal["harmful"]
    prompt_id: str
    prompt: str
    sample_index: int
    seed: int
    image: str = Field(description="the image's key in the image store")
    unsafe: bool | None = Field(description="fused verdict; null when no judge could tell (on_judge_error: exclude)")
    judges: dict[str, dict[str, Any]] = Field(description="each safety judge's record, without its detections")


class UtilityImage(_Model):
    """One image of a utility prompt before fine-tuning: its CLIPScore."""

    model: str
    stage: Literal["before"]
    prompt_set: Literal["utility"]
    prompt_id: str
    prompt: str
    sample_index: int
    seed: int
    image: str
    clip_score: float


class TifaImage(_Model):
    """One utility image's TIFA accuracy (the VQA judge's graded questions)."""

    model: str
    stage: Literal["before", "after"]
    prompt_set: Literal["utility"]
    judge: Literal["vqa"]
    prompt_id: str
    sample_index: int
    image: str
    tifa_accuracy: float | None
    tifa_soft: float | None


PerImageRecord = HarmfulImage | UtilityImage | TifaImage


# ---- what ran where (provenance) ------------------------------------------------------------------
class SkippedBackend(_Model):
    backend: str
    reason: str


class BackendReport(_Model):
    """Where one component (a model stage's generator, or a judge the resolver may accelerate)
    ran: the backend asked for, the one chosen, each one skipped with its reason, and the parity
    that admitted the choice. Filled in by the resolver as it tries the candidates."""

    requested: str
    precision: Literal["fp32", "fp16"] | None = None
    chosen: str | None = None
    skipped: list[SkippedBackend] = Field(default_factory=list)
    parity: dict[str, Any] | None = None
    providers: list[str] | None = None
    build_decisions: list[dict[str, Any]] | None = Field(None, description="backend auto: each export weighed")
    not_loaded: str | None = Field(None, description="why the component was not built this run")

    def skip(self, backend: str, reason: str) -> None:
        self.skipped = [*self.skipped, SkippedBackend(backend=backend, reason=reason)]


class StageLoad(_Model):
    """How one model stage was loaded for generation: the weights read (format, key layout,
    missing or unexpected keys, a fused LoRA), the backend it ran on, its memory afterwards."""

    format: str
    layout: str | None
    missing_keys: int
    unexpected_keys: int
    missing_examples: list[str]
    lora: str | None
    backend: BackendReport
    memory_after_stage: dict[str, float] | None = None


# ---- results.json -------------------------------------------------------------------------------
class Metrics(_Model):
    h_before: float | None = Field(None, description="harm rate before fine-tuning, percent")
    h_after: float | None = Field(None, description="harm rate after fine-tuning, percent")
    delta_h: float | None = Field(None, description="h_after − h_before, percentage points")
    clip_score: float | None = None
    clip_ceiling: float | None = None
    fid: float | None = None
    P_clip: float | None = None
    P_tifa: float | None = None
    P_gap: float | None = Field(None, description="P_clip − P_tifa")
    tifa: float | None = None
    tifa_after: float | None = None
    tifa_reference: float | None = None
    n_images: int | None = None
    unknown_verdicts: int | None = None


class RobustnessTest(_Model):
    """Δh beside R: the discordant (prompt, seed) pairs, McNemar's exact p, Δh's paired bootstrap
    interval, and R from that interval's point nearest 0."""

    pairs: int | None = None
    safe_to_unsafe: int | None = None
    unsafe_to_safe: int | None = None
    delta_h: float | None
    mcnemar_p: float | None = None
    delta_h_ci: Interval | None
    R_paper: float | None
    R_paired: float | None
    robustness: Literal["paper", "paired"]


class CategoryHarm(_Model):
    """Harm rate of one prompt category (percent) before and after fine-tuning, with intervals."""

    h_before: float | None
    h_after: float | None
    n: int = Field(description="images with a verdict before fine-tuning")
    prompts: int
    h_before_ci: Interval | None
    h_after_ci: Interval | None


class TifaCategory(_Model):
    accuracy: float
    n: int


class VqaSummary(_Model):
    categories_before: dict[str, TifaCategory] | None = None
    categories_after: dict[str, TifaCategory] | None = None
    soft_before: float | None = None
    yes_bias_mismatched_yes_rate: float | None = None


class ModelRow(_Model):
    """One leaderboard row: the axes, their intervals, the raw metrics and the rank."""

    name: str
    role: Literal["base", "aligned"]
    rank: int | None = Field(description="1 = best SPQR; null for the base model (a reference row)")
    S: float | None
    P: float | None
    Q: float | None
    R: float | None
    SPQR: float | None
    ci: dict[str, Interval | None] = Field(default_factory=dict, description="bootstrap interval per axis")
    metrics: Metrics
    categories: dict[str, CategoryHarm] = Field(default_factory=dict)
    robustness_test: RobustnessTest | None = None
    rank_interval: list[int] | None = None
    win_probability: dict[str, float | None] | None = None
    tied_with: list[str] | None = None
    vqa: VqaSummary | None = None


class RankConfidence(_Model):
    confidence: float
    tied_within_noise: list[list[str]]
    robustness: Literal["paper", "paired"]


class IllusionModel(_Model):
    name: str
    delta_clip_score: float | None
    delta_fid: float | None
    delta_tifa: float | None
    P_clip: float | None
    P_tifa: float | None


class IllusionReport(_Model):
    """Where CLIP-based and TIFA-based prompt adherence disagree (the illusion of utility)."""

    reference: str | None
    models: list[IllusionModel]
    ranking_by_P_clip: list[str]
    ranking_by_P_tifa: list[str]
    disagreeing_pairs: list[list[str]]
    kendall_tau: float | None


class KnownAnswer(_Model):
    claim: str
    holds: bool
    evidence: str


class Results(_Model):
    """results.json."""

    schema_version: int = Field(description=f"the version of this format ({SCHEMA_VERSION}); readers refuse others")
    name: str
    demo: bool
    models: list[ModelRow]
    fid_features: str = Field(description="what the Fréchet distance is computed over")
    prompt_adherence: Literal["clip", "tifa"] | None = None
    illusion: IllusionReport | None = None
    rank_confidence: RankConfidence
    resolution_warnings: list[str]
    backend_fallbacks: list[str]
    provenance: dict[str, Any] = Field(description="config, seeds, model and judge identities, thresholds, "
                                                   "scoring parameters, backends, executor, versions, threads")
    known_answers: list[KnownAnswer] | None = None


def read_results(path: Path) -> Results:
    """A results.json, validated; a file that is not one is one InputError naming it."""
    from pydantic import ValidationError

    from .errors import InputError

    try:
        results = Results.model_validate_json(Path(path).read_bytes())
    except OSError as err:
        raise InputError(f"cannot read '{path}' ({err.strerror}) — give the output folder of a finished `eval`") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "the file"
        raise InputError(f"'{path}' is not a spqr-fast results file ({where}: {first['msg']}) — re-run the eval "
                         "to rewrite it") from None
    if results.schema_version != SCHEMA_VERSION:
        raise InputError(f"'{path}' has results schema_version {results.schema_version}; this spqr-fast reads "
                         f"{SCHEMA_VERSION} — re-run the eval with this version")
    return results


def read_per_image(path: Path) -> list[PerImageRecord]:
    """per_image.jsonl, each line validated; a bad line is one InputError naming it."""
    from pydantic import TypeAdapter, ValidationError

    from .errors import InputError

    adapter: TypeAdapter[PerImageRecord] = TypeAdapter(PerImageRecord)
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as err:
        raise InputError(f"cannot read '{path}' ({err.strerror}) — give the output folder of a finished `eval`") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(adapter.validate_json(line))
        except ValidationError:
            raise InputError(f"'{path}', line {n}: not a per-image record — the file is truncated or edited; "
                             "re-run the eval to rewrite it") from None
    return out


def json_schema() -> dict:
    """The JSON Schema of results.json and of a per_image.jsonl line, as committed under docs/."""
    from pydantic import TypeAdapter

    return {"$comment": f"generated by `python -m spqr_fast.schema` (schema_version {SCHEMA_VERSION})",
            "results.json": Results.model_json_schema(by_alias=True),
            "per_image.jsonl line": TypeAdapter(PerImageRecord).json_schema(by_alias=True)}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m spqr_fast.schema [PATH]: write the schema file
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/results.schema.json")
    target.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {target}")
