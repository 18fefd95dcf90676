"""`spqr-fast eval`: config → plan → generate → judge → measure → score → report.

Every stage reads what the previous one stored (images, per-image records) and skips what
already exists, so a killed run resumes where it stopped and re-scoring never regenerates.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape

from .config import EvalConfig, ModelSource
from .errors import InputError, JudgeError, SpqrError, as_disk_error
from .models import FileHasher, pick_device, source_hash
from .plan import ModelStage, WorkItem, build_plan, stable_hash
from .progress import make_progress
from .runtime import apply_threads, memory_snapshot
from .prompts import Prompt, distinct_ids, list_reference_images, load_prompt_set
from .provenance import backend_fallbacks, environment
from .planning import unresolved_r
from .scoring.leaderboard import HarmCounts, ModelMeasurements, ScoringParams, score_cohort, tied_within_noise
from .store import (ImageStore, RecordStore, file_lock, prepare_output_dir, read_image_rgb, read_json,
                    remove_temp_files)


def configured_after_bft(model: ModelSource, after: ModelSource) -> ModelSource:
    """`after_bft: {lora: DIR}` alone means: this model with that LoRA fused."""
    if after.path is not None:
        return after
    return model.model_copy(update={"lora": after.lora, "lora_scale": after.lora_scale})


@dataclass
class Stage:
    model: str
    stage: str
    source: ModelSource
    weights_hash: str


def plan_stages(cfg: EvalConfig, hasher: FileHasher, fine_tuned: dict[str, ModelSource]) -> list[Stage]:
    """The generators to run: each model before BFT, and after it where there is an after stage
    (given as `after_bft`, or produced by `bft` and passed in `fine_tuned`)."""
    stages = []
    for entry in cfg.models:
        stages.append(Stage(entry.name, "before", entry.model, source_hash(entry.model, hasher)))
        after = fine_tuned.get(entry.name)
        if after is None and entry.after_bft is not None:
            after = configured_after_bft(entry.model, entry.after_bft)
        if after is not None:
            stages.append(Stage(entry.name, "after", after, source_hash(after, hasher)))
    return stages


def group_by_stage(items: list[WorkItem]) -> dict[tuple[str, str], list[WorkItem]]:
    by_stage: dict[tuple[str, str], list[WorkItem]] = defaultdict(list)
    for it in items:
        by_stage[(it.model, it.stage)].append(it)
    return by_stage


def sampler_settings(cfg: EvalConfig, device: str) -> dict:
    g = cfg.generation
    return {
        "steps": g.steps, "guidance_scale": g.guidance_scale, "height": g.height, "width": g.width,
        "negative_prompt": g.negative_prompt, "batch_invariant": g.batch_invariant, "dtype": g.dtype,
        "device": device, "backend": cfg.backend.kind,
    }


class Evaluator:
    def __init__(self, cfg: EvalConfig, out_dir: Path, console: Console | None = None):
        self.cfg = cfg
        self.out = prepare_output_dir(Path(out_dir))
        self.console = console or Console(stderr=True)
        self.hasher = FileHasher(self.out / ".cache" / "file-hashes.json")
        self.images = ImageStore(self.out)
        self.device = pick_device(cfg.generation.device)
        self.threads = apply_threads(cfg.threads)
        self.judge_backends: dict[str, dict] = {}
        self.vqa_summary: dict[str, dict] = {}
        self.safety_judge_names: list[str] = []

    # ---- plan -------------------------------------------------------------------------------
    def load_inputs(self) -> tuple[dict[str, list[Prompt]], list[Path]]:
        p = self.cfg.prompts
        warn = lambda m: self.console.print(f"[yellow]warning[/]: {escape(m)}")  # noqa: E731
        harmful = load_prompt_set(p.harmful, warn, id_prefix="h")
        prompt_sets = {"harmful": harmful,
                       "utility": distinct_ids(harmful, load_prompt_set(p.utility, warn, id_prefix="u"), warn)}
        return prompt_sets, list_reference_images(p.reference_images)

    def make_plan(self, stages: list[Stage], prompt_sets: dict[str, list[Prompt]]) -> list[WorkItem]:
        # Utility prompts feed CLIPScore and FID (before BFT only) and, with a VQA judge, TIFA
        # before and after BFT.
        before = [ModelStage(s.model, s.stage, s.weights_hash) for s in stages if s.stage == "before"]
        after = [ModelStage(s.model, s.stage, s.weights_hash) for s in stages if s.stage == "after"]
        common = dict(run_seed=self.cfg.seed, samples_per_prompt=self.cfg.generation.samples_per_prompt,
                      sampler_settings=sampler_settings(self.cfg, self.device),
                      use_file_seeds={"harmful": self.cfg.prompts.harmful.use_file_seeds})
        after_sets = prompt_sets if self.cfg.judges.vqa is not None else {"harmful": prompt_sets["harmful"]}
        return build_plan(before, prompt_sets, **common) + build_plan(after, after_sets, **common)

    # ---- benign fine-tuning ----------------------------------------------------------------
    def finetune_all(self, allow_training: bool = True) -> tuple[dict[str, ModelSource], dict[str, dict]]:
        """Run each configured BFT, or find its cached result by key (re-runs do not retrain).
        A merge of shards passes `allow_training=False`: its BFT results must come from the shards."""
        from .finetune.dataset import load_bft_dataset
        from .finetune.trainer import CARD_FILE, after_bft_source, bft_key, finetune

        cache = Path(self.cfg.finetune_cache) if self.cfg.finetune_cache else self.out / "bft"
        sources, cards = {}, {}
        for entry in self.cfg.models:
            if entry.bft is None:
                continue
            dataset = load_bft_dataset(entry.bft.dataset)
            key = bft_key(source_hash(entry.model, self.hasher), dataset, entry.bft)
            folder = cache / key
            card_path = folder / CARD_FILE
            # Runs sharing a BFT cache take turns per key: the second finds the first's result.
            with file_lock(cache / f".{key}.lock", on_wait=lambda: self.console.print(
                    f"BFT {entry.name}: waiting for another run training key {key}")):
                if card_path.is_file():
                    card = read_json(card_path, "BFT card")
                    self.console.print(f"BFT {entry.name}: cached ({entry.bft.profile}, key {key})")
                elif not allow_training:
                    raise SpqrError(f"BFT of '{entry.name}' (key {key}) is in no shard — merge the shards' folders "
                                    "as written, with their bft/ folders")
                else:
                    self.console.print(f"BFT {entry.name}: {entry.bft.profile} on {dataset.root.name} "
                                       f"({len(dataset)} images)")
                    card = finetune(entry.model, entry.bft, folder, resume=True, console=self.console,
                                    hasher=self.hasher, dataset=dataset)
            sources[entry.name] = after_bft_source(entry.model, folder, card)
            cards[entry.name] = {k: v for k, v in card.items() if k != "losses"}
        return sources, cards

    # ---- generate -----------------------------------------------------------------------------
    def generate(self, stages: list[Stage], items: list[WorkItem]) -> dict[tuple[str, str], dict]:
        """Every missing image, stage by stage (each model loads once); returns load reports."""
        from .sampling.stage_generator import StageGenerator

        generator = StageGenerator(self.cfg, self.out, self.device, log=lambda m: self.console.print(escape(m)))
        by_stage = group_by_stage(items)
        load_reports = {}
        with make_progress(self.console) as progress:
            for st in stages:
                stage_items = by_stage[(st.model, st.stage)]
                todo = sum(not self.images.has(it.key) for it in stage_items)
                task = progress.add_task(escape(f"generate {st.model} [{st.stage} BFT]"), total=len(stage_items),
                                         completed=len(stage_items) - todo, unit="img")
                if todo:
                    load_reports[(st.model, st.stage)] = dict(generator.load(st, todo))
                    generator.run(st, stage_items, on_batch=lambda n, task=task: progress.advance(task, n))
                    load_reports[(st.model, st.stage)]["memory_after_stage"] = memory_snapshot()
        return load_reports

    # ---- judge --------------------------------------------------------------------------------
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

    def _judge_batch(self, configured: int) -> int:
        """With batch_invariant, judges also see one image at a time: a record must not depend on
        which images shared its batch (that differs between local, Ray and sharded runs)."""
        return 1 if self.cfg.generation.batch_invariant else configured

    def build_safety_judges(self) -> list:
        from .judges.guards import Q16Judge, VlmGuardJudge
        from .judges.nudenet import NudeNetJudge
        from .judges.onnx_image_net import ConceptDetectorJudge

        j = self.cfg.judges
        judges: list = []
        if j.nudenet is not None:
            judges.append(NudeNetJudge(j.nudenet.model_path, j.nudenet.classes, j.nudenet.threshold,
                                       j.nudenet.providers, self._judge_batch(j.nudenet.batch_size)))
        if j.concept_detector is not None:
            c = j.concept_detector
            judges.append(ConceptDetectorJudge(c.path, c.concept, c.threshold, c.providers, self._judge_batch(c.batch_size)))
        if j.q16 is not None:
            judges.append(Q16Judge(j.q16.clip_path, j.q16.prompts_path, self.device, self._judge_batch(j.q16.batch_size)))
        if j.vlm_guard is not None:
            judges.append(VlmGuardJudge(j.vlm_guard.path, j.vlm_guard.prompt, j.vlm_guard.max_new_tokens, self.device))
        return judges

    def feature_extractor(self):
        """FID features: Inception-v3 (standard weights or random demo init) or an ONNX network."""
        from .judges.inception import InceptionFeatures
        from .judges.onnx_image_net import OnnxFeatures

        inc = self.cfg.judges.inception
        batch = self._judge_batch(inc.batch_size)
        if inc.onnx is not None:
            return OnnxFeatures(inc.onnx, None, batch)
        return InceptionFeatures(inc.weights, inc.random_init_seed, self.device, batch)

    def judge(self, items: list[WorkItem], ref_paths: list[Path]) -> tuple[dict, dict]:
        """Run every judge over the images that need it; returns (judge identities, record stores)."""
        from .judges.clip import ClipScorer

        j = self.cfg.judges
        harmful_keys = sorted({it.key for it in items if it.prompt_set == "harmful"})
        util_items = {it.key: it for it in items if it.prompt_set == "utility" and it.stage == "before"}
        util_keys = sorted(util_items)
        identities, stores = {}, {}
        with make_progress(self.console) as progress:
            for judge in self.build_safety_judges():
                ident = judge.identity(self.hasher)
                store = RecordStore(self.out, f"{judge.name}-{stable_hash(ident, 16)}")
                identities[judge.name], stores[judge.name] = ident, store
                self.safety_judge_names.append(judge.name)

                def run_safety(chunk, judge=judge, store=store):
                    for k, rec in zip(chunk, judge.judge([self.images.get(k) for k in chunk])):
                        store.put_json(k, rec)

                self._run_judge(judge, harmful_keys, store, progress, judge.name, run_safety)

            from .export.cache import ArtefactCache

            clip = ClipScorer(j.clip.path, self.device, self._judge_batch(j.clip.batch_size), backend=self.cfg.backend.kind,
                              cache=ArtefactCache(self.cfg.backend.cache_root), hasher=self.hasher,
                              log=lambda m: self.console.print(escape(m)))
            self.judge_backends["clip"] = clip.backend_report
            ident = clip.identity(self.hasher)
            store = RecordStore(self.out, f"clip-{stable_hash(ident, 16)}")
            identities["clip"], stores["clip"] = ident, store

            def run_clip(chunk):
                scores = clip.score([self.images.get(k) for k in chunk], [util_items[k].prompt.text for k in chunk])
                for k, sc in zip(chunk, scores):
                    store.put_json(k, {"clip_score": float(sc)})

            self._run_judge(clip, util_keys, store, progress, "clip", run_clip)

            inc = self.feature_extractor()
            ident = inc.identity(self.hasher)
            fstore = RecordStore(self.out, f"inception-{stable_hash(ident, 16)}")
            identities["inception"], stores["inception"] = ident, fstore
            ref_keys = {f"ref-{self.hasher.file(p)}": p for p in ref_paths}

            def run_features(chunk):
                ims = [read_image_rgb(ref_keys[k]) if k in ref_keys else self.images.get(k) for k in chunk]
                for k, f in zip(chunk, inc.features(ims)):
                    fstore.put_array(k, f.astype(np.float32))

            self._run_judge(inc, util_keys + sorted(ref_keys), fstore, progress, "inception", run_features, ".npy")
            stores["reference_keys"] = sorted(ref_keys)
            if j.vqa is not None:
                identities["vqa"], stores["vqa"] = self._judge_vqa(items, progress)
        return identities, stores

    def _judge_vqa(self, items: list[WorkItem], progress) -> tuple[dict, RecordStore]:
        """TIFA-style questions on every utility image, before and after BFT, with the yes-bias
        control (each image also answers the yes/no questions of another caption)."""
        from .export.cache import ArtefactCache
        from .judges.questions import by_caption, load_questions, mismatched_pairs
        from .judges.vqa import VqaJudge

        cfg = self.cfg.judges.vqa
        questions, sha = load_questions(cfg.questions)
        groups = by_caption(questions)
        swap = mismatched_pairs(list(groups))
        vqa = VqaJudge(cfg.path, device=self.device, backend=self.cfg.backend.kind,
                       cache=ArtefactCache(self.cfg.backend.cache_root), hasher=self.hasher,
                       log=lambda m: self.console.print(escape(m)), batch_size=self._judge_batch(cfg.batch_size))
        self.judge_backends["vqa"] = vqa.backend_report
        ident = {**vqa.identity(self.hasher), "questions_sha256": sha}
        store = RecordStore(self.out, f"vqa-{stable_hash(ident, 16)}")
        util = {it.key: it for it in items if it.prompt_set == "utility"}

        def run_vqa(chunk):
            embeds = vqa.image_embeddings([self.images.get(k) for k in chunk])
            for k, emb in zip(chunk, embeds):
                caption = util[k].prompt.text
                store.put_json(k, vqa.judge_image(emb, groups.get(caption, []), groups.get(swap.get(caption), [])))

        self._run_judge(vqa, sorted(util), store, progress, "vqa", run_vqa)
        return ident, store

    # ---- measure ------------------------------------------------------------------------------
    def _verdict(self, key: str, stores: dict, safety_judges: list[str]) -> bool | None:
        verdicts = [stores[name].get_json(key)["unsafe"] for name in safety_judges]
        if any(v is True for v in verdicts):
            return True
        if any(v is None for v in verdicts):
            return {"exclude": None, "safe": False, "unsafe": True}[self.cfg.judges.on_judge_error]
        return False

    def measure(self, stages: list[Stage], items: list[WorkItem], prompt_sets, stores) -> tuple[list, list[dict]]:
        safety_judges = self.safety_judge_names
        harm_ids = [p.id for p in prompt_sets["harmful"]]
        harm_index = {pid: i for i, pid in enumerate(harm_ids)}
        harm_categories = tuple(p.categories for p in prompt_sets["harmful"])
        util_index = {p.id: i for i, p in enumerate(prompt_sets["utility"])}
        by_stage = group_by_stage(items)
        per_image: list[dict] = []
        vqa_summary: dict[str, dict] = {}

        def harm_counts(model: str, stage: str) -> tuple[HarmCounts, dict]:
            unsafe = np.zeros(len(harm_ids))
            known = np.zeros(len(harm_ids))
            unknown = 0
            verdicts: dict[tuple[str, int], bool] = {}  # (prompt, sample) → unsafe, for the paired test
            for it in by_stage[(model, stage)]:
                if it.prompt_set != "harmful":
                    continue
                v = self._verdict(it.key, stores, safety_judges)
                rec = {"model": model, "stage": stage, "prompt_set": "harmful", "prompt_id": it.prompt.id,
                       "prompt": it.prompt.text, "sample_index": it.sample_index, "seed": it.seed, "image": it.key, "unsafe": v,
                       "judges": {n: stores[n].get_json(it.key) for n in safety_judges}}
                rec["judges"] = {n: {k: r[k] for k in r if k != "detections"} for n, r in rec["judges"].items()}
                per_image.append(rec)
                if v is None:
                    unknown += 1
                    continue
                verdicts[(it.prompt.id, it.sample_index)] = v
                i = harm_index[it.prompt.id]
                unsafe[i] += v
                known[i] += 1
            return HarmCounts(unsafe, known, unknown), verdicts

        measurements = []
        for entry in self.cfg.models:
            before, verdicts_b = harm_counts(entry.name, "before")
            has_after = (entry.name, "after") in by_stage
            after, verdicts_a = harm_counts(entry.name, "after") if has_after else (None, {})
            pairs = np.array([(verdicts_b[k], verdicts_a[k]) for k in sorted(verdicts_b) if k in verdicts_a],
                             dtype=bool).reshape(-1, 2) if has_after else None
            util = [it for it in by_stage[(entry.name, "before")] if it.prompt_set == "utility"]
            clip = np.array([stores["clip"].get_json(it.key)["clip_score"] for it in util])
            feats = np.stack([stores["inception"].get_array(it.key) for it in util]).astype(np.float64)
            for it, c in zip(util, clip):
                per_image.append({"model": entry.name, "stage": "before", "prompt_set": "utility",
                                  "prompt_id": it.prompt.id, "prompt": it.prompt.text, "sample_index": it.sample_index,
                                  "seed": it.seed, "image": it.key, "clip_score": float(c)})
            tifa = {}
            if "vqa" in stores:
                from .judges.questions import pooled_categories

                after_util = [it for it in by_stage[(entry.name, "after")] if it.prompt_set == "utility"]
                recs = [stores["vqa"].get_json(it.key) for it in util]
                recs_after = [stores["vqa"].get_json(it.key) for it in after_util]
                acc = lambda rs: np.array([np.nan if r["accuracy"] is None else r["accuracy"] for r in rs])  # noqa: E731
                yes = [r["mismatched_yes_rate"] for r in recs if "mismatched_yes_rate" in r]
                tifa = dict(tifa=acc(recs), tifa_after=acc(recs_after) if after_util else None,
                            tifa_after_prompt=np.array([util_index[it.prompt.id] for it in after_util]) if after_util else None)
                vqa_summary[entry.name] = {
                    "categories_before": pooled_categories([r for r in recs if r["n"]]),
                    "categories_after": pooled_categories([r for r in recs_after if r["n"]]) if after_util else None,
                    "soft_before": float(np.mean([r["soft"] for r in recs if r["n"]])) if any(r["n"] for r in recs) else None,
                    "yes_bias_mismatched_yes_rate": float(np.mean(yes)) if yes else None,
                }
                for it, r in zip(util + after_util, recs + recs_after):
                    per_image.append({"model": entry.name, "stage": it.stage, "prompt_set": "utility", "judge": "vqa",
                                      "prompt_id": it.prompt.id, "sample_index": it.sample_index, "image": it.key,
                                      "tifa_accuracy": r["accuracy"], "tifa_soft": r["soft"]})
            measurements.append(ModelMeasurements(
                name=entry.name, role=entry.role, harm_before=before, harm_after=after, clip=clip,
                util_prompt=np.array([util_index[it.prompt.id] for it in util]), features=feats,
                harm_categories=harm_categories, n_images=len(by_stage[(entry.name, "before")]) + len(by_stage[(entry.name, "after")]),
                harm_pairs=pairs, **tifa))
        self.vqa_summary = vqa_summary
        return measurements, per_image

    # ---- whole run --------------------------------------------------------------------------
    def run(self, *, executor: str = "local", ray_address: str | None = None,
            shard: tuple[int, int] | None = None, require_complete: bool = False) -> dict:
        """The whole evaluation, holding the output folder's lock: a second run into the same
        folder waits for this one, then finds its work done. With `shard=(i, n)` only that slice
        is generated and judged (no scores); with `require_complete` (merging shards) nothing may
        be left to train or generate."""
        waiting = lambda: self.console.print(f"waiting for another spqr-fast run writing to {self.out}")  # noqa: E731
        with file_lock(self.out / ".lock", on_wait=waiting):
            removed = remove_temp_files(self.out)
            if removed:
                self.console.print(f"removed {removed} temporary file(s) left by an interrupted run")
            return self._run(executor, ray_address, shard, require_complete)

    def _run(self, executor: str, ray_address: str | None, shard: tuple[int, int] | None,
             require_complete: bool) -> dict:
        from .report.writers import write_outputs

        prompt_sets, ref_paths = self.load_inputs()
        fine_tuned, bft_cards = self.finetune_all(allow_training=not require_complete)
        stages = plan_stages(self.cfg, self.hasher, fine_tuned)
        items = self.make_plan(stages, prompt_sets)
        self.console.print(f"[bold]plan[/]: {len(stages)} model stages, {len(items)} images "
                           f"({len(prompt_sets['harmful'])} harmful, {len(prompt_sets['utility'])} utility prompts), "
                           f"device {self.device}")
        if require_complete:
            missing = [it for it in items if not self.images.has(it.key)]
            if missing:
                raise SpqrError(f"{len(missing)} images of the plan are in no shard (e.g. {missing[0].model} "
                                f"[{missing[0].stage}] {missing[0].prompt.id}) — re-run that shard")
        work = items
        if shard is not None:
            from .distributed.shards import shard_slice, write_manifest

            work = shard_slice(items, *shard)
            self.console.print(f"shard {shard[0]}/{shard[1]}: {len(work)} of {len(items)} images")
        if executor == "ray":
            from .distributed.ray_executor import ray_generate

            with make_progress(self.console) as progress:
                load_reports = ray_generate(self, stages, work, address=ray_address, progress=progress)
        else:
            load_reports = self.generate(stages, work)
        identities, stores = self.judge(work, ref_paths)
        if shard is not None:
            write_manifest(self.out, self.cfg, shard[0], shard[1], len(work))
            self.console.print(f"shard {shard[0]}/{shard[1]} done — merge with `spqr-fast report --merge DIR...`")
            return {"shard": list(shard), "items": len(work)}
        measurements, per_image = self.measure(stages, items, prompt_sets, stores)
        ref_feats = np.stack([stores["inception"].get_array(k) for k in stores["reference_keys"]]).astype(np.float64)
        s = self.cfg.scoring
        params = ScoringParams(clip_ceiling=s.clip_ceiling, epsilon=s.epsilon, fid_bounds=s.fid_bounds,
                               n_boot=s.bootstrap.n, n_boot_fid=s.bootstrap.n_fid, seed=s.bootstrap.seed,
                               confidence=s.bootstrap.confidence, prompt_adherence=s.prompt_adherence,
                               tifa_reference=s.tifa_reference, robustness=s.robustness)
        rows = score_cohort(measurements, ref_feats, params)
        results = {
            "name": self.cfg.name,
            "demo": self.cfg.demo,
            "models": rows,
            "fid_features": self._fid_features(),
            **self._vqa_sections(rows),
            "rank_confidence": {"confidence": s.bootstrap.confidence, "tied_within_noise": tied_within_noise(rows),
                                "robustness": s.robustness},
            "resolution_warnings": unresolved_r(rows, len(prompt_sets["harmful"])),
            "backend_fallbacks": backend_fallbacks(load_reports, self.judge_backends),
            "provenance": {**self.provenance(stages, load_reports, identities, len(ref_paths)), "bft": bft_cards},
        }
        if self.cfg.demo:
            from .world.known_answers import cohort_checks

            results["known_answers"] = cohort_checks(rows)
        write_outputs(results, per_image, self.images, self.cfg, self.out)
        return results

    def _fid_features(self) -> str:
        """What the Fréchet distance is computed over: 'inception' (standard FID) or else named."""
        inc = self.cfg.judges.inception
        if inc.weights is not None:
            return "inception"
        return f"features of {Path(inc.onnx).name}" if inc.onnx is not None else "randomly initialised Inception"

    def _vqa_sections(self, rows: list[dict]) -> dict:
        if self.cfg.judges.vqa is None:
            return {}
        from .scoring.illusion import illusion_report

        for r in rows:
            r["vqa"] = self.vqa_summary.get(r["name"], {})
            if r["metrics"].get("P_clip") is not None and r["metrics"].get("P_tifa") is not None:
                r["metrics"]["P_gap"] = r["metrics"]["P_clip"] - r["metrics"]["P_tifa"]
        return {"prompt_adherence": self.cfg.scoring.prompt_adherence, "illusion": illusion_report(rows)}

    def _thresholds(self) -> dict:
        j = self.cfg.judges
        out: dict = {"on_judge_error": j.on_judge_error}
        if j.nudenet is not None:
            out.update(nudenet_threshold=j.nudenet.threshold, nudenet_classes=j.nudenet.classes)
        if j.concept_detector is not None:
            out.update(concept_detector_threshold=j.concept_detector.threshold, concept=j.concept_detector.concept)
        return out

    def provenance(self, stages: list[Stage], load_reports: dict, identities: dict, n_ref: int) -> dict:
        return {
            "config": json.loads(self.cfg.model_dump_json()),
            "seeds": {"run": self.cfg.seed, "bootstrap": self.cfg.scoring.bootstrap.seed,
                      "harmful_sample": self.cfg.prompts.harmful.sample_seed,
                      "rule": "sha256(run seed | prompt id | sample index)[:8] & (2^63-1)"},
            "models": [{"name": s.model, "stage": s.stage, "weights_hash": s.weights_hash,
                        "source": json.loads(s.source.model_dump_json()),
                        "load": load_reports.get((s.model, s.stage), "cached images (not loaded this run)")}
                       for s in stages],
            "judges": identities,
            "thresholds": self._thresholds(),
            "scoring": {"clip_ceiling": self.cfg.scoring.clip_ceiling, "epsilon": self.cfg.scoring.epsilon,
                        "fid_bounds": self.cfg.scoring.fid_bounds, "delta_h_units": "percentage points",
                        "bootstrap": self.cfg.scoring.bootstrap.model_dump(), "reference_images": n_ref},
            "backend": {"requested": self.cfg.backend.kind, "device": self.device,
                        "dtype": self.cfg.generation.dtype, "batch_invariant": self.cfg.generation.batch_invariant,
                        "tolerances": {"fp32": self.cfg.backend.fp32_tolerance, "fp16": self.cfg.backend.fp16_tolerance},
                        "per_stage": "see models[].load.backend (chosen backend, skipped options, parity)",
                        "judges": {**{name: "onnxruntime" for name in ("nudenet", "concept_detector")
                                               if getattr(self.cfg.judges, name) is not None}, **self.judge_backends}},
            "environment": environment(),
            "memory_at_end": memory_snapshot(),
            "threads": self.threads,  # CPU float results depend on the thread count in the last bits  # per stage: models[].load.memory_after_stage
        }
