"""The judge stage: every configured judge (from `judges/registry.py`) over the images that need
it, each writing one record per image into its own store. A store is named by the judge's
identity, computed from files and settings without loading the judge, so a changed judge is re-run,
an unchanged one is not, and a judge whose records are all stored is never built. Its result,
`JudgedStores`, is all the measure stage reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from rich.console import Console
from .safe_text import shown

from .config import EvalConfig
from .errors import InputError, JudgeError, as_disk_error
from .judges import CaptionJudge, FeatureExtractor, Judge, SafetyJudge, TextImageScorer
from .judges.records import ClipRecord, Record, SafetyRecord, TifaRecord, dump_record
from .judges.registry import BY_SECTION, configured
from .judges.spec import JudgeEnv, JudgeSpec, Role
from .keys import FileHasher, stable_hash
from .plan import WorkItem
from .schema import BackendReport
from .progress import make_progress
from .store import ImageStore, RecordStore, read_image_rgb


def store_name(judge: str, identity: dict) -> str:
    """A judge's record store: a changed judge (weights, threshold, questions) gets a new one."""
    return f"{judge}-{stable_hash(identity, 16)}"


def reference_keys(ref_paths: list[Path], hasher: FileHasher) -> dict[str, Path]:
    """Reference images keyed by content: their features are stored beside the generated ones'."""
    return {f"ref-{hasher.file(p)}": p for p in ref_paths}


@dataclass
class JudgedStores:
    """The configured judges' record stores for one run, in registry order (safety judges first,
    in fusion order), with the identities that name them, the reference images' keys, and the
    backend reports of the judges built this run."""

    stores: dict[str, RecordStore]
    identities: dict[str, dict]
    reference_keys: list[str]
    backends: dict[str, BackendReport] = field(default_factory=dict)

    @classmethod
    def open(cls, cfg: EvalConfig, out: Path, hasher: FileHasher, reference_keys: Iterable[str],
             backends: dict[str, BackendReport] | None = None) -> JudgedStores:
        """The stores of the configured judges, named from their identities; no judge is loaded."""
        identities = {spec.section: spec.identity(section, hasher) for spec, section in configured(cfg.judges)}
        stores = {name: RecordStore(out, store_name(name, ident)) for name, ident in identities.items()}
        return cls(stores, identities, sorted(reference_keys), dict(backends or {}))

    def sections(self, role: Role) -> list[str]:
        return [name for name in self.stores if BY_SECTION[name].role == role]

    def record(self, section: str, key: str) -> Record:
        """A judge's record of one image, validated as the judge's record type."""
        spec = BY_SECTION[section]
        assert spec.record is not None, f"{section} stores arrays"
        return spec.record.model_validate(self.stores[section].get_json(key))

    def safety(self, key: str) -> dict[str, SafetyRecord]:
        """Every safety judge's verdict record on one image, in fusion order."""
        return {name: self.record(name, key) for name in self.sections("safety")}  # type: ignore[misc]

    def clip_score(self, key: str) -> float:
        (name,) = self.sections("clip_score")
        rec = self.record(name, key)
        assert isinstance(rec, ClipRecord)
        return rec.clip_score

    def features(self, key: str) -> np.ndarray:
        (name,) = self.sections("features")
        return self.stores[name].get_array(key)

    @property
    def has_tifa(self) -> bool:
        return bool(self.sections("tifa"))

    def tifa(self, key: str) -> TifaRecord:
        (name,) = self.sections("tifa")
        rec = self.record(name, key)
        assert isinstance(rec, TifaRecord)
        return rec


@dataclass
class JudgeInputs:
    """What the judges look at: the run's images by key, their prompts, and the reference images."""

    items: list[WorkItem]
    images: ImageStore
    ref_paths: dict[str, Path]
    captions: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.captions = {it.key: it.prompt.text for it in self.items if it.prompt_set == "utility"}

    def image(self, key: str) -> np.ndarray:
        path = self.ref_paths.get(key)
        return read_image_rgb(path) if path is not None else self.images.get(key)

    def keys(self, role: Role) -> list[str]:
        """The images a judge of this role judges: harmful-prompt images (before and after BFT)
        for safety; utility images before BFT for CLIPScore and FID features (with the reference
        images); utility images before and after BFT for TIFA."""
        if role == "safety":
            return sorted({it.key for it in self.items if it.prompt_set == "harmful"})
        if role == "tifa":
            return sorted(self.captions)
        before = sorted({it.key for it in self.items if it.prompt_set == "utility" and it.stage == "before"})
        return before + sorted(self.ref_paths) if role == "features" else before


def _judge_chunk(spec: JudgeSpec, judge: Judge, chunk: list[str], inputs: JudgeInputs, store: RecordStore) -> None:
    """One batch of images through a judge of any role (its protocol in `judges/__init__.py`),
    its records into its store."""
    images = [inputs.image(k) for k in chunk]
    if spec.role == "features":
        for k, f in zip(chunk, cast(FeatureExtractor, judge).features(images)):
            store.put_array(k, f.astype(np.float32))
        return
    captions = [inputs.captions[k] for k in chunk] if spec.role in ("clip_score", "tifa") else []
    records: list[Record]
    if spec.role == "clip_score":
        records = [ClipRecord(clip_score=float(s)) for s in cast(TextImageScorer, judge).score(images, captions)]
    elif spec.role == "tifa":
        records = cast(CaptionJudge, judge).judge(images, captions)
    else:
        records = list(cast(SafetyJudge, judge).judge(images))
    for k, rec in zip(chunk, records):
        store.put_json(k, dump_record(rec))


class JudgeRunner:
    """Runs the configured judges in batches over the images without a record; a judge with
    nothing to do is not built. With `keep_judges`, a judge once built stays loaded for the
    runner's later `run` calls (an audit judging chunk after chunk); otherwise each is dropped
    when the next is built, so only one judge is in memory at a time."""

    def __init__(self, cfg: EvalConfig, out: Path, images: ImageStore, hasher: FileHasher, device: str,
                 console: Console, ort_threads: int | None = None, keep_judges: bool = False):
        self.cfg, self.out, self.images, self.hasher = cfg, out, images, hasher
        self.console = console
        self.env = JudgeEnv(device, cfg.generation.batch_invariant, cfg.backend, hasher, self.log, ort_threads)
        self.keep_judges = keep_judges
        self.built: dict[str, Judge] = {}  # section → judge, when kept
        self.build_seconds = 0.0  # spent building judges, over every `run`

    def release(self) -> None:
        """Drop the judges kept loaded."""
        self.built.clear()

    def log(self, message: str) -> None:
        self.console.print(shown(message))

    def run(self, items: list[WorkItem], ref_paths: list[Path]) -> JudgedStores:
        """Run every judge over the images that need it (stored records are kept)."""
        refs = reference_keys(ref_paths, self.hasher)
        judged = JudgedStores.open(self.cfg, self.out, self.hasher, refs)
        inputs = JudgeInputs(items, self.images, refs)
        with make_progress(self.console) as progress:
            for spec, section in configured(self.cfg.judges):
                store = judged.stores[spec.section]
                keys = inputs.keys(spec.role)
                todo = [k for k in keys if not store.has(k, spec.suffix)]
                task = progress.add_task(f"judge {spec.section}", total=len(keys), completed=len(keys) - len(todo),
                                         unit="img")
                kept = self.built.get(spec.section)
                if not todo:
                    if spec.resolves_backend:
                        judged.backends[spec.section] = kept.backend_report if kept is not None else BackendReport(
                            requested=self.cfg.backend.kind, not_loaded="every record was already stored")
                    continue
                if kept is not None:
                    judge = kept
                else:
                    started = time.monotonic()
                    judge = spec.build(section, self.env)
                    self.build_seconds += time.monotonic() - started
                if self.keep_judges:
                    self.built[spec.section] = judge
                if spec.resolves_backend:
                    judged.backends[spec.section] = judge.backend_report
                self._batches(spec, judge, todo, lambda chunk: _judge_chunk(spec, judge, chunk, inputs, store),
                              lambda n: progress.advance(task, n))
        return judged

    @staticmethod
    def _batches(spec: JudgeSpec, judge, todo: list[str], run: Callable[[list[str]], None],
                 advance: Callable[[int], None]) -> None:
        """`run` over the keys in the judge's batches; a judge's own failure becomes one JudgeError
        naming it (records written so far are kept, so a re-run resumes)."""
        for s in range(0, len(todo), judge.batch_size):
            chunk = todo[s:s + judge.batch_size]
            try:
                run(chunk)
            except (JudgeError, InputError):
                raise
            except Exception as err:  # a judge that fails: name it; stored records are kept
                if as_disk_error(err) is not None:
                    raise  # the disk, not the judge: the CLI says so
                raise JudgeError(f"judge '{spec.section}' failed on image {chunk[0]} ({type(err).__name__}: {err}); "
                                 "records so far are saved — fix the judge and re-run to resume") from err
            advance(len(chunk))
