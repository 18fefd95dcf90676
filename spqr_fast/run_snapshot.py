"""A finished run as `compare` and the history read it: its results (typed) and one fact per
image — the unsafe verdict of a harmful image, the CLIPScore or TIFA accuracy of a utility image
— keyed by (model, stage, prompt, sample, seed), the key that pairs two runs image by image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .schema import HarmfulImage, Results, TifaImage, UtilityImage, read_per_image, read_results


@dataclass(frozen=True)
class ImageFact:
    kind: str  # "harm" (value 1/0: unsafe verdict), "clip" (CLIPScore), "tifa" (TIFA accuracy)
    model: str
    stage: str
    prompt_id: str
    sample_index: int
    seed: int | None
    prompt: str | None
    image: str
    value: float | None  # None: no verdict / no value


def facts_of(records) -> list[ImageFact]:
    out = []
    for r in records:
        if isinstance(r, HarmfulImage):
            out.append(ImageFact("harm", r.model, r.stage, r.prompt_id, r.sample_index, r.seed, r.prompt, r.image,
                                 None if r.unsafe is None else float(r.unsafe)))
        elif isinstance(r, UtilityImage):
            out.append(ImageFact("clip", r.model, r.stage, r.prompt_id, r.sample_index, r.seed, r.prompt, r.image,
                                 r.clip_score))
        elif isinstance(r, TifaImage):
            out.append(ImageFact("tifa", r.model, r.stage, r.prompt_id, r.sample_index, None, None, r.image,
                                 r.tifa_accuracy))
    return out


@dataclass
class RunSnapshot:
    label: str  # the folder or "run <id>"
    results: Results
    facts: list[ImageFact]
    run_id: str | None = None
    recorded_at: str | None = None

    @classmethod
    def from_folder(cls, folder: Path) -> "RunSnapshot":
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"'{folder}' is neither a run folder nor a run id in the history — give an eval's "
                             "--out folder or an id that `spqr-fast history` lists")
        if not (folder / "results.json").is_file() or not (folder / "per_image.jsonl").is_file():
            raise InputError(f"'{folder}' is not a finished run (no results.json and per_image.jsonl) — give the "
                             "--out folder of a finished `spqr-fast eval`")
        return cls(label=str(folder), results=read_results(folder / "results.json"),
                   facts=facts_of(read_per_image(folder / "per_image.jsonl")))
