"""ONNX Runtime for the judges (CLIP's towers, the VQA graphs), by the same rules as generation:
the providers come from `backends/selection.py` for the requested backend, the artefact from the
cache, and a parity check against torch admits it; otherwise the judge stays on torch and one
line says why. The report lands in results.json (`provenance.backend.judges`)."""

from __future__ import annotations

from collections.abc import Callable

from .selection import ORT_PROVIDERS, MachineOffer, detect_offer, plan_candidates

JUDGE_ORT_ORDER = ("ort-cuda", "ort-cpu")  # engines for judges are not worth TensorRT's build time


def judge_providers(requested: str, offer: MachineOffer | None = None) -> list[str] | None:
    """ONNX Runtime providers a judge may use under `requested` on this machine, or None."""
    if requested not in ("auto", "ort"):
        return None
    tryable, _ = plan_candidates(requested, offer or detect_offer())
    for candidate in JUDGE_ORT_ORDER:
        if candidate in tryable:
            return list(ORT_PROVIDERS[candidate])
    return None


def accelerate_judge(name: str, requested: str, build: Callable[[list[str]], object],
                     parity_error: Callable[[object], float], tolerance: float, log: Callable[[str], None],
                     offer: MachineOffer | None = None) -> tuple[object | None, dict]:
    """(ORT graphs or None, backend report). `build(providers)` returns graphs with a
    `providers` attribute; `parity_error(graphs)` their largest error against torch."""
    report: dict = {"requested": requested, "chosen": "torch"}
    if requested not in ("auto", "ort"):
        return None, report
    providers = judge_providers(requested, offer)
    if providers is None:
        report["skipped"] = "no ONNX Runtime provider on this machine"
        log(f"{name} on ONNX Runtime skipped: {report['skipped']}")
        return None, report
    try:
        graphs = build(providers)
    except Exception as err:  # noqa: BLE001 - any failure: stay on torch and say why
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        report["skipped"] = f"build failed: {why}"
        log(f"{name} on ONNX Runtime skipped: {report['skipped']}")
        return None, report
    error = float(parity_error(graphs))
    if error > tolerance:
        report["skipped"] = f"parity failed ({error:.2e})"
        log(f"{name} on ONNX Runtime skipped: parity failed: error {error:.2e} > tolerance {tolerance:.0e}")
        return None, report
    report.update(chosen="ort", providers=getattr(graphs, "providers", providers), parity_error=error)
    return graphs, report
