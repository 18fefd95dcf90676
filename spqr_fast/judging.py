"""The judge stage: every configured judge over the images that need it, each writing one
record per image into its own store (keyed by the judge's identity, so a changed judge is
re-run and an unchanged one is not). Its result, `JudgedStores`, is all the measure stage reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape

from .config import EvalConfig
from .errors import InputError, JudgeError, as_disk_error
from .judges import FeatureExtractor, SafetyJudge
from .keys import FileHasher, stable_hash
from .plan import WorkItem
from .progress import make_progress
from .store import ImageStore, RecordStore, read_image_rgb


@dataclass
class JudgedStores:
    """The judges' records for one run: safety verdicts per safety judge (in judge order),
    CLIPScores, image features (generated and reference), TIFA records when a VQA judge is on."""

    safety: dict[str, RecordStore]
    clip: RecordStore
    features: RecordStore
    reference_keys: list[str]
    vqa: RecordStore | None
    identities: dict[str, dict]
    backends: dict[str, dict]  # the accelerated judges' backend reports (chosen, parity, fallbacks)

    @classmethod
    def open(cls, out: Path, identities: dict[str, dict], backends: dict[str, dict],
             reference_keys: list[str]) -> "JudgedStores":
        """The stores of judges that ran elsewhere (Ray actors), from their identities: a judge's
        records live in the store its identity names, wherever it ran."""
        stores = {name: RecordStore(out, store_name(name, ident)) for name, ident in identities.items()}
        return cls(safety={n: st for n, st in stores.items() if n not in UTILITY_JUDGES}, clip=stores["clip"],
                   features=stores["inception"], reference_keys=sorted(reference_keys), vqa=stores.get("vqa"),
                   identities=identities, backends=backends)


UTILITY_JUDGES = ("clip", "inception", "vqa")


def store_name(judge: str, identity: dict) -> str:
    """A judge's record store: a changed judge (weights, threshold, questions) gets a new one."""
    return f"{judge}-{stable_hash(identity, 16)}"


def reference_keys(ref_paths: list[Path], hasher: FileHasher) -> dict[str, Path]:
    """Reference images keyed by content: their features are stored beside the generated ones'."""
    return {f"ref-{hasher.file(p)}": p for p in ref_paths}


def _nudenet(c, run: "JudgeRunner"):
    from .judges.nudenet import NudeNetJudge

    return NudeNetJudge(c.model_path, c.classes, c.threshold, c.providers, run.batch_for(c.batch_size))


def _concept_detector(c, run: "JudgeRunner"):
    from .judges.onnx_image_net import ConceptDetectorJudge

    return ConceptDetectorJudge(c.path, c.concept, c.threshold, c.providers, run.batch_for(c.batch_size))


def _q16(c, run: "JudgeRunner"):
    from .judges.guards import Q16Judge

    return Q16Judge(c.clip_path, c.prompts_path, run.device, run.batch_for(c.batch_size))


def _vlm_guard(c, run: "JudgeRunner"):
    from .judges.guards import VlmGuardJudge

    return VlmGuardJudge(c.path, c.prompt, c.max_new_tokens, run.device)


# The safety judges, keyed by their section under `judges:` in the config (its order is the
# order of the per-image records). A new safety judge: its class in judges/, its config class
# (with `path_fields`), and one entry here.
SAFETY_JUDGES: dict[str, Callable[..., SafetyJudge]] = {
    "nudenet": _nudenet, "concept_detector": _concept_detector, "q16": _q16, "vlm_guard": _vlm_guard}


class JudgeRunner:
    """Builds the configured judges and runs them in batches over the images without a record."""

    def __init__(self, cfg: EvalConfig, out: Path, images: ImageStore, hasher: FileHasher, device: str,
                 console: Console):
        self.cfg, self.out, self.images, self.hasher, self.device = cfg, out, images, hasher, device
        self.console = console
        self.log: Callable[[str], None] = lambda m: console.print(escape(m))

    def _run_judge(self, judge, keys: list[str], store: RecordStore, progress, label: str, fn,
                   suffix: str = ".json") -> None:
        """Run `fn` over the keys without a stored record, in the judge's batches."""
        todo = [k for k in keys if not store.has(k, suffix)]
        task = progress.add_task(f"judge {label}", total=len(keys), completed=len(keys) - len(todo), unit="img")
        bs = getattr(judge, "batch_size", 16)
        for s in range(0, len(todo), bs):
            chunk = todo[s:s + bs]
            try:
                fn(chunk)
            except (JudgeError, InputError):
                raise
            except Exception as err:  # a judge that fails: name it; stored records are kept
                if as_disk_error(err) is not None:
                    raise  # the disk, not the judge: the CLI says so
                raise JudgeError(f"judge '{label}' failed on image {chunk[0]} ({type(err).__name__}: {err}); "
                                 "records so far are saved — fix the judge and re-run to resume") from err
            progress.advance(task, len(chunk))

    def batch_for(self, configured: int) -> int:
        """With batch_invariant, judges also see one image at a time: a record must not depend on
        which images shared its batch (that differs between local, Ray and sharded runs)."""
        return 1 if self.cfg.generation.batch_invariant else configured

    def build_safety_judges(self) -> list[SafetyJudge]:
        """Every configured safety judge, in SAFETY_JUDGES' order."""
        return [build(section, self) for name, build in SAFETY_JUDGES.items()
                if (section := getattr(self.cfg.judges, name)) is not None]

    def feature_extractor(self) -> FeatureExtractor:
        """FID features: Inception-v3 (standard weights or random demo init) or an ONNX network."""
        from .judges.inception import InceptionFeatures
        from .judges.onnx_image_net import OnnxFeatures

        inc = self.cfg.judges.inception
        batch = self.batch_for(inc.batch_size)
        if inc.onnx is not None:
            return OnnxFeatures(inc.onnx, None, batch)
        return InceptionFeatures(inc.weights, inc.random_init_seed, self.device, batch)

    def run(self, items: list[WorkItem], ref_paths: list[Path]) -> JudgedStores:
        """Run every judge over the images that need it (stored records are kept)."""
        from .backends.resolve import BackendResolver
        from .judges.clip import ClipScorer

        j = self.cfg.judges
        harmful_keys = sorted({it.key for it in items if it.prompt_set == "harmful"})
        util_items = {it.key: it for it in items if it.prompt_set == "utility" and it.stage == "before"}
        util_keys = sorted(util_items)
        identities: dict[str, dict] = {}
        safety: dict[str, RecordStore] = {}
        backends: dict[str, dict] = {}
        resolver = BackendResolver(self.cfg.backend, self.hasher, log=self.log)  # CLIP's and the VQA judge's
        with make_progress(self.console) as progress:
            for judge in self.build_safety_judges():
                ident = judge.identity(self.hasher)
                store = RecordStore(self.out, store_name(judge.name, ident))
                identities[judge.name], safety[judge.name] = ident, store

                def run_safety(chunk, judge=judge, store=store):
                    for k, rec in zip(chunk, judge.judge([self.images.get(k) for k in chunk])):
                        store.put_json(k, rec)

                self._run_judge(judge, harmful_keys, store, progress, judge.name, run_safety)

            clip = ClipScorer(j.clip.path, self.device, self.batch_for(j.clip.batch_size), resolver=resolver)
            backends["clip"] = clip.backend_report
            ident = clip.identity(self.hasher)
            clip_store = RecordStore(self.out, store_name("clip", ident))
            identities["clip"] = ident

            def run_clip(chunk):
                scores = clip.score([self.images.get(k) for k in chunk], [util_items[k].prompt.text for k in chunk])
                for k, sc in zip(chunk, scores):
                    clip_store.put_json(k, {"clip_score": float(sc)})

            self._run_judge(clip, util_keys, clip_store, progress, "clip", run_clip)

            inc = self.feature_extractor()
            ident = inc.identity(self.hasher)
            features = RecordStore(self.out, store_name("inception", ident))
            identities["inception"] = ident
            ref_keys = reference_keys(ref_paths, self.hasher)

            def run_features(chunk):
                ims = [read_image_rgb(ref_keys[k]) if k in ref_keys else self.images.get(k) for k in chunk]
                for k, f in zip(chunk, inc.features(ims)):
                    features.put_array(k, f.astype(np.float32))

            self._run_judge(inc, util_keys + sorted(ref_keys), features, progress, "inception", run_features, ".npy")
            vqa = None
            if j.vqa is not None:
                identities["vqa"], vqa, backends["vqa"] = self._judge_vqa(items, progress, resolver)
        return JudgedStores(safety=safety, clip=clip_store, features=features, reference_keys=sorted(ref_keys),
                            vqa=vqa, identities=identities, backends=backends)

    def _judge_vqa(self, items: list[WorkItem], progress, resolver) -> tuple[dict, RecordStore, dict]:
        """TIFA-style questions on every utility image, before and after BFT, with the yes-bias
        control (each image also answers the yes/no questions of another caption)."""
        from .judges.questions import by_caption, load_questions, mismatched_pairs
        from .judges.vqa import VqaJudge

        cfg = self.cfg.judges.vqa
        questions, sha = load_questions(cfg.questions)
        groups = by_caption(questions)
        swap = mismatched_pairs(list(groups))
        vqa = VqaJudge(cfg.path, device=self.device, resolver=resolver, batch_size=self.batch_for(cfg.batch_size))
        ident = {**vqa.identity(self.hasher), "questions_sha256": sha}
        store = RecordStore(self.out, store_name("vqa", ident))
        util = {it.key: it for it in items if it.prompt_set == "utility"}

        def run_vqa(chunk):
            embeds = vqa.image_embeddings([self.images.get(k) for k in chunk])
            for k, emb in zip(chunk, embeds):
                caption = util[k].prompt.text
                store.put_json(k, vqa.judge_image(emb, groups.get(caption, []), groups.get(swap.get(caption), [])))

        self._run_judge(vqa, sorted(util), store, progress, "vqa", run_vqa)
        return ident, store, vqa.backend_report
