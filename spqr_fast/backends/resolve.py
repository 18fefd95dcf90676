"""One resolver for generation and the judges: the candidates for the requested backend on this
machine (`selection.py`), each built through the artefact cache and admitted by a parity gate
against torch, falling back in order with one line per skipped option and its reason; the choice
and its parity are recorded in a report that lands in results.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import BackendConfig, ModelSource
from ..export.cache import ArtefactCache, ArtefactGone
from ..export.onnx_export import cached_onnx_export, missing_components
from ..keys import FileHasher
from .parity import ScalarParity, check_parity
from .selection import JUDGE_CANDIDATES, ORT_PROVIDERS, REQUEST_ORDER, MachineOffer, detect_offer, plan_candidates
from ..runtime import release_memory
from ..schema import BackendReport
from .torch_backend import TorchComponents


class BackendResolver:
    """Candidates → build through the cache → parity gate, for a model (`resolve`) or a judge
    (`resolve_judge`); one instance per run part logs each machine-wide skip once."""

    def __init__(self, cfg: BackendConfig, hasher: FileHasher, log=print, offer: MachineOffer | None = None,
                 threads: int | None = None):
        """`threads`: intra-op threads of the ONNX Runtime sessions it opens (None: ORT's own)."""
        self.cfg = cfg
        self.hasher = hasher
        self.threads = threads
        self.log = log
        self.offer = offer or detect_offer()
        self.cache = ArtefactCache(cfg.cache_root)
        self._sessions: dict[tuple, object] = {}  # the current artefact's sessions only (see _ort)
        self._logged: set[tuple[str, str]] = set()

    def release(self) -> None:
        """Close the open artefact's sessions (before the next stage loads and exports)."""
        self._sessions.clear()
        release_memory()

    def _ort(self, folder: Path, providers: list[str]):
        from .ort_backend import OrtComponents

        key = (str(folder), tuple(providers))
        if key not in self._sessions:
            # Stages load one after another: an earlier artefact's sessions (gigabytes at SD 1.5
            # size) are dropped before the next is opened, so memory does not grow with the cohort.
            self.release()
            self._sessions[key] = OrtComponents(folder, providers, self.threads)
        return self._sessions[key]

    def _attention(self, candidate: str) -> str:
        # ONNX Runtime gets fused attention (its contrib op); TensorRT parses only standard ops.
        return self.cfg.ort_attention if candidate.startswith("ort-") else "plain"

    def _build(self, candidate: str, src: ModelSource, precision: str, device: str, height: int, width: int,
               torch_pipe=None):
        # the reference pipeline is lent to the exporter when it is what the export loads anyway
        lend = torch_pipe if precision == "fp32" and device == "cpu" else None
        for attempt in (1, 2):
            folder = cached_onnx_export(src, self.cache, self.hasher, precision=precision, opset=self.cfg.opset,
                                        device=device, attention=self._attention(candidate), log=self.log,
                                        loaded=lend)
            try:
                with self.cache.reading(folder):  # `engines clear` waits while the sessions open
                    if candidate.startswith("ort-"):
                        return self._ort(folder, ORT_PROVIDERS[candidate])
                    return self._tensorrt(folder, precision, height, width)
            except ArtefactGone as gone:
                if attempt == 2:
                    raise
                self.log(f"{gone} (removed while this run was using the cache) — building it again")
        raise AssertionError("unreachable")

    def _tensorrt(self, folder: Path, precision: str, height: int, width: int):
        from .ort_backend import PipelineInfo
        from .tensorrt_backend import (ENGINE_COMPONENTS, TrtComponents, build_component_engine, engine_key_inputs,
                                       pipeline_recipe)

        info = PipelineInfo(folder)
        recipe = pipeline_recipe(info, height, width)
        engines = {}
        for component in ENGINE_COMPONENTS:
            def build(target: Path, component: str = component) -> dict:
                build_component_engine(folder, component, recipe, precision, target / "model.engine")
                return {"recipe": recipe["family"], "model": str(folder)}

            target = self.cache.get_or_build("tensorrt", engine_key_inputs(folder.name, component, recipe, precision),
                                             build, label="TensorRT engine", log=self.log)
            engines[component] = target / "model.engine"
        return TrtComponents(info, engines)

    def resolve(self, src: ModelSource, torch_pipe, *, height: int, width: int, label: str = "",
                planned: tuple[int, int] | None = None, earlier: str | None = None,
                within_seconds: float | None = None):
        """(components, report) for generating with `src`; `torch_pipe` is the reference.
        `planned` = (images the stage needs, steps per image): with `backend: auto`, an
        accelerated backend whose export would cost more than it saves on them (within
        `within_seconds` of wall clock, when a budget limits the run) is not built.
        `earlier` is the backend an interrupted run chose for this stage: it is tried first, so
        a resumed stage's images all come from one backend."""
        reference = TorchComponents(torch_pipe)
        device = reference.device.type
        precision = "fp16" if str(reference.dtype) == "torch.float16" else "fp32"
        tolerance = self.cfg.fp16_tolerance if precision == "fp16" else self.cfg.fp32_tolerance
        tryable, skipped = plan_candidates(self.cfg.kind, self.offer)
        report = BackendReport(requested=self.cfg.kind, precision=precision, skipped=[], parity=None)
        for name, reason in skipped:
            self._skip(report, label, name, reason)
        if earlier in tryable and earlier != tryable[0]:
            for name in tryable[:tryable.index(earlier)]:
                self._skip(report, label, name, f"the interrupted run this one resumes chose {earlier}", per_model=True)
            tryable = tryable[tryable.index(earlier):]
        step_seconds = None
        for candidate in tryable:
            if candidate == "torch":
                report.chosen = "torch"
                self._chose(label, "torch")
                return reference, report
            if self.cfg.kind == "auto" and planned is not None and earlier is None:
                missing = missing_components(src, self.cache, self.hasher, torch_pipe, precision=precision,
                                             opset=self.cfg.opset, attention=self._attention(candidate))
                if missing:
                    from .build_cost import decide, time_unet_step

                    step_seconds = step_seconds or time_unet_step(torch_pipe, height, width)
                    decision = decide(candidate, images=planned[0], steps=planned[1],
                                      parity_steps=self.cfg.parity_steps, step_seconds=step_seconds,
                                      components=missing, cache_root=self.cache.root,
                                      within_seconds=within_seconds)
                    report.build_decisions = [*(report.build_decisions or []), decision.as_dict()]
                    if not decision.build:
                        self._skip(report, label, candidate, f"not worth building: {decision.reason()}", per_model=True)
                        continue
                    self.log(f"backend {candidate}{f' for {label}' if label else ''}: {decision.reason()}")
            admitted = self._admit(
                report, label, candidate,
                lambda c=candidate: self._build(c, src, precision, device, height, width, torch_pipe),
                lambda components: check_parity(reference, components, height=height, width=width,
                                                steps=self.cfg.parity_steps, tolerance=tolerance))
            if admitted is not None:
                return admitted, report
        raise AssertionError("torch is always a candidate")

    def resolve_judge(self, name: str, build: Callable[[list[str]], object], parity_error: Callable[[object], float],
                      tolerance: float) -> tuple[object | None, BackendReport]:
        """(ONNX Runtime graphs, or None for torch; report) for a judge. `build(providers)` makes
        the graphs (through the cache), `parity_error(graphs)` their largest error against torch.
        Judges try only ONNX Runtime (`JUDGE_CANDIDATES`): an engine build costs more than a judge
        saves."""
        tryable, skipped = plan_candidates(self.cfg.kind, self.offer)
        report = BackendReport(requested=self.cfg.kind, chosen="torch", precision="fp32", skipped=[], parity=None)
        # machine-wide absences are recorded here and said once by the run's generation lines
        for c, why in skipped:
            if c in JUDGE_CANDIDATES:
                report.skip(c, why)
        candidates = [c for c in tryable if c in JUDGE_CANDIDATES]
        if not candidates and any(c in JUDGE_CANDIDATES for c in REQUEST_ORDER[self.cfg.kind]):
            self._skip(report, name, "onnxruntime", "no ONNX Runtime provider on this machine", per_model=True)
        for candidate in candidates:
            graphs = self._admit(report, name, candidate, lambda c=candidate: build(list(ORT_PROVIDERS[c])),
                                 lambda g: ScalarParity(float(parity_error(g)), tolerance))
            if graphs is not None:
                return graphs, report
        return None, report

    def _admit(self, report: BackendReport, label: str, candidate: str, build: Callable[[], object],
               parity: Callable[[object], object]):
        """Build `candidate` and pass it through the parity gate: its components, recorded as the
        choice, or None with one line saying why."""
        try:
            components = build()
        except Exception as err:  # noqa: BLE001 - any failure means: try the next backend
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            self._skip(report, label, candidate, f"build failed: {why}", per_model=True)
            return None
        result = parity(components)
        if not result.passed:
            self._skip(report, label, candidate, result.reason(), per_model=True)
            return None
        report.chosen, report.parity = candidate, result.as_dict()
        report.providers = getattr(components, "providers", None)
        self._chose(label, candidate, result)
        return components

    def _chose(self, label: str, chosen: str, parity=None) -> None:
        """One line per stage naming the backend it runs on, with the parity that admitted it."""
        detail = f" (parity: {parity.measure} {parity.worst:.1e} ≤ {parity.tolerance:.0e})" if parity else ""
        self.log(f"backend for {label or 'this model'}: {chosen}{detail}")

    def _skip(self, report: BackendReport, label: str, name: str, reason: str, per_model: bool = False) -> None:
        """Recorded for every stage; logged once per run for machine-wide reasons, per model for
        build and parity failures."""
        report.skip(name, reason)
        if self.cfg.kind == "torch" or (name, reason) in self._logged:
            return
        if not per_model:
            self._logged.add((name, reason))
        self.log(f"backend {name} skipped{f' for {label}' if per_model and label else ''}: {reason}")
