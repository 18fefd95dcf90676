"""Turn a requested backend into working components for one model, falling back in order and
logging one line per skipped option with its reason; the choice and its parity are recorded."""

from __future__ import annotations

from pathlib import Path

from ..config import BackendConfig, ModelSource
from ..export.cache import ArtefactCache
from ..export.onnx_export import cached_onnx_export
from ..models import FileHasher
from .parity import check_parity
from .selection import ORT_PROVIDERS, MachineOffer, detect_offer, plan_candidates
from ..runtime import release_memory
from .torch_backend import TorchComponents


class BackendResolver:
    def __init__(self, cfg: BackendConfig, hasher: FileHasher, log=print, offer: MachineOffer | None = None):
        self.cfg = cfg
        self.hasher = hasher
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
            self._sessions[key] = OrtComponents(folder, providers)
        return self._sessions[key]

    def _build(self, candidate: str, src: ModelSource, precision: str, device: str, height: int, width: int):
        # ONNX Runtime gets fused attention (its contrib op); TensorRT parses only standard ops.
        attention = self.cfg.ort_attention if candidate.startswith("ort-") else "plain"
        folder = cached_onnx_export(src, self.cache, self.hasher, precision=precision, opset=self.cfg.opset,
                                    device=device, attention=attention, log=self.log)
        if candidate.startswith("ort-"):
            return self._ort(folder, ORT_PROVIDERS[candidate])
        return self._tensorrt(folder, precision, height, width)

    def _tensorrt(self, folder: Path, precision: str, height: int, width: int):
        import json

        from .ort_backend import OrtComponents
        from .tensorrt_backend import TrtComponents, build_engine, engine_key_inputs, recipe_for

        unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
        info = OrtComponents(folder, ["CPUExecutionProvider"], sessions=False)
        recipe = recipe_for(unet_cfg, unet_cfg["cross_attention_dim"], height, width, info.vae_scale_factor)
        engines = {}
        for component in ("text_encoder", "unet", "vae_decoder"):
            inputs = engine_key_inputs(folder.name, component, recipe, precision)

            def build(target: Path, component: str = component) -> dict:
                build_engine(folder / component / "model.onnx", target / "model.engine", recipe["profiles"][component],
                             fp16=precision == "fp16", workspace_gib=recipe.get("workspace_gib", 4))
                return {"recipe": recipe["family"]}

            target = self.cache.get_or_build("tensorrt", inputs, build, label="TensorRT engine", log=self.log)
            engines[component] = target / "model.engine"
        return TrtComponents(info, engines)

    def resolve(self, src: ModelSource, torch_pipe, *, height: int, width: int, label: str = ""):
        """(components, report) for generating with `src`; `torch_pipe` is the reference."""
        reference = TorchComponents(torch_pipe)
        device = reference.device.type
        precision = "fp16" if str(reference.dtype) == "torch.float16" else "fp32"
        tolerance = self.cfg.fp16_tolerance if precision == "fp16" else self.cfg.fp32_tolerance
        tryable, skipped = plan_candidates(self.cfg.kind, self.offer)
        report = {"requested": self.cfg.kind, "precision": precision, "skipped": [], "parity": None}
        for name, reason in skipped:
            self._skip(report, label, name, reason)
        for candidate in tryable:
            if candidate == "torch":
                report["chosen"] = "torch"
                return reference, report
            try:
                components = self._build(candidate, src, precision, device, height, width)
            except Exception as err:  # noqa: BLE001 - any failure means: try the next backend
                why = str(err).splitlines()[0] if str(err) else type(err).__name__
                self._skip(report, label, candidate, f"build failed: {why}", per_model=True)
                continue
            parity = check_parity(reference, components, height=height, width=width, steps=self.cfg.parity_steps,
                                  tolerance=tolerance)
            if not parity.passed:
                self._skip(report, label, candidate, parity.reason(), per_model=True)
                continue
            report.update(chosen=candidate, parity=parity.as_dict(),
                          providers=getattr(components, "providers", None))
            return components, report
        raise AssertionError("torch is always a candidate")

    def _skip(self, report: dict, label: str, name: str, reason: str, per_model: bool = False) -> None:
        """Recorded for every stage; logged once per run for machine-wide reasons, per model for
        build and parity failures."""
        report["skipped"].append({"backend": name, "reason": reason})
        if self.cfg.kind == "torch" or (name, reason) in self._logged:
            return
        if not per_model:
            self._logged.add((name, reason))
        self.log(f"backend {name} skipped{f' for {label}' if per_model and label else ''}: {reason}")
