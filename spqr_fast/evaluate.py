"""`spqr-fast eval`: config → plan → generate → judge → measure → score → report.

Every stage reads what the previous one stored (images, per-image records) and skips what
already exists, so a killed run resumes where it stopped and re-scoring never regenerates.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .config import EvalConfig, ModelSource
from .errors import SpqrError
from .keys import FileHasher, source_hash
from .models import pick_device
from .plan import Stage, WorkItem, build_plan, group_by_stage, plan_stages, sampler_settings
from .progress import make_progress
from .runtime import apply_threads, memory_snapshot
from .prompts import Prompt, distinct_ids, list_reference_images, load_prompt_set
from .provenance import backend_fallbacks, environment
from .planning import unresolved_r
from .judging import JudgedStores, JudgeRunner
from .measure import measure_cohort
from .scoring.leaderboard import ScoringParams, score_cohort, tied_within_noise
from .store import ImageStore, file_lock, prepare_output_dir, read_json, remove_temp_files


class Evaluator:
    def __init__(self, cfg: EvalConfig, out_dir: Path, console: Console | None = None):
        self.cfg = cfg
        self.out = prepare_output_dir(Path(out_dir))
        self.console = console or Console(stderr=True)
        self.hasher = FileHasher(self.out / ".cache" / "file-hashes.json")
        self.images = ImageStore(self.out)
        self.device = pick_device(cfg.generation.device)
        self.threads = apply_threads(cfg.threads)

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
        before = [s for s in stages if s.stage == "before"]
        after = [s for s in stages if s.stage == "after"]
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
                load_reports = ray_generate(self.cfg, self.out, stages, work, address=ray_address, progress=progress,
                                            log=self.console.print)
        else:
            load_reports = self.generate(stages, work)
        judged = JudgeRunner(self.cfg, self.out, self.images, self.hasher, self.device, self.console).run(work, ref_paths)
        if shard is not None:
            write_manifest(self.out, self.cfg, shard[0], shard[1], len(work))
            self.console.print(f"shard {shard[0]}/{shard[1]} done — merge with `spqr-fast report --merge DIR...`")
            return {"shard": list(shard), "items": len(work)}
        measured = measure_cohort(self.cfg, items, prompt_sets, judged)
        s = self.cfg.scoring
        rows = score_cohort(measured.models, measured.reference_features, ScoringParams.from_config(s))
        results = {
            "name": self.cfg.name,
            "demo": self.cfg.demo,
            "models": rows,
            "fid_features": self._fid_features(),
            **self._vqa_sections(rows, measured.vqa_summary),
            "rank_confidence": {"confidence": s.bootstrap.confidence, "tied_within_noise": tied_within_noise(rows),
                                "robustness": s.robustness},
            "resolution_warnings": unresolved_r(rows, len(prompt_sets["harmful"])),
            "backend_fallbacks": backend_fallbacks(load_reports, judged.backends),
            "provenance": {**self.provenance(stages, load_reports, judged, len(ref_paths)), "bft": bft_cards},
        }
        if self.cfg.demo:
            from .world.known_answers import cohort_checks

            results["known_answers"] = cohort_checks(rows)
        write_outputs(results, measured.per_image, self.images, self.cfg, self.out)
        return results

    def _fid_features(self) -> str:
        """What the Fréchet distance is computed over: 'inception' (standard FID) or else named."""
        inc = self.cfg.judges.inception
        if inc.weights is not None:
            return "inception"
        return f"features of {Path(inc.onnx).name}" if inc.onnx is not None else "randomly initialised Inception"

    def _vqa_sections(self, rows: list[dict], vqa_summary: dict[str, dict]) -> dict:
        if self.cfg.judges.vqa is None:
            return {}
        from .scoring.illusion import illusion_report

        for r in rows:
            r["vqa"] = vqa_summary.get(r["name"], {})
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

    def provenance(self, stages: list[Stage], load_reports: dict, judged: JudgedStores, n_ref: int) -> dict:
        return {
            "config": json.loads(self.cfg.model_dump_json()),
            "seeds": {"run": self.cfg.seed, "bootstrap": self.cfg.scoring.bootstrap.seed,
                      "harmful_sample": self.cfg.prompts.harmful.sample_seed,
                      "rule": "sha256(run seed | prompt id | sample index)[:8] & (2^63-1)"},
            "models": [{"name": s.model, "stage": s.stage, "weights_hash": s.weights_hash,
                        "source": json.loads(s.source.model_dump_json()),
                        "load": load_reports.get((s.model, s.stage), "cached images (not loaded this run)")}
                       for s in stages],
            "judges": judged.identities,
            "thresholds": self._thresholds(),
            "scoring": {"clip_ceiling": self.cfg.scoring.clip_ceiling, "epsilon": self.cfg.scoring.epsilon,
                        "fid_bounds": self.cfg.scoring.fid_bounds, "delta_h_units": "percentage points",
                        "bootstrap": self.cfg.scoring.bootstrap.model_dump(), "reference_images": n_ref},
            "backend": {"requested": self.cfg.backend.kind, "device": self.device,
                        "dtype": self.cfg.generation.dtype, "batch_invariant": self.cfg.generation.batch_invariant,
                        "tolerances": {"fp32": self.cfg.backend.fp32_tolerance, "fp16": self.cfg.backend.fp16_tolerance},
                        "per_stage": "see models[].load.backend (chosen backend, skipped options, parity)",
                        "judges": {**{name: "onnxruntime" for name in ("nudenet", "concept_detector")
                                               if getattr(self.cfg.judges, name) is not None}, **judged.backends}},
            "environment": environment(),
            "memory_at_end": memory_snapshot(),
            "threads": self.threads,  # CPU float results depend on the thread count in the last bits  # per stage: models[].load.memory_after_stage
        }
