"""Which backend to try, in which order, and why each other one was skipped.

Pure logic over what the machine offers (providers, packages, GPU), so the fallback rules are
testable anywhere: `auto` tries tensorrt → ORT+TensorRT EP → ORT+CUDA EP → ORT CPU → torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AUTO_ORDER = ("tensorrt", "ort-tensorrt", "ort-cuda", "ort-cpu", "torch")
REQUEST_ORDER = {
    "auto": AUTO_ORDER,
    "ort": ("ort-tensorrt", "ort-cuda", "ort-cpu", "torch"),
    "tensorrt": ("tensorrt", "torch"),
    "torch": ("torch",),
}
JUDGE_CANDIDATES = ("ort-cuda", "ort-cpu")  # engines for judges are not worth TensorRT's build time
ORT_PROVIDERS = {
    "ort-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-cpu": ["CPUExecutionProvider"],
}


@dataclass
class MachineOffer:
    providers: list[str] = field(default_factory=list)
    has_tensorrt: bool = False
    gpu: str | None = None  # name, when torch sees a CUDA device
    compute_capability: str | None = None


def detect_offer() -> MachineOffer:
    offer = MachineOffer()
    try:
        import onnxruntime as ort

        offer.providers = list(ort.get_available_providers())
    except ImportError:
        pass
    try:
        import importlib.util

        offer.has_tensorrt = importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        offer.has_tensorrt = False
    try:
        import torch

        if torch.cuda.is_available():
            offer.gpu = torch.cuda.get_device_name(0)
            offer.compute_capability = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except ImportError:
        pass
    return offer


def why_unavailable(candidate: str, offer: MachineOffer) -> str | None:
    """None when the candidate can be tried here, else the reason it cannot."""
    if candidate == "torch":
        return None
    if candidate == "tensorrt":
        if not offer.has_tensorrt:
            return "package 'tensorrt' missing (pip install 'spqr-fast[tensorrt]')"
        return None if offer.gpu else "no CUDA GPU visible"
    if not offer.providers:
        return "package 'onnxruntime' missing"
    needed = ORT_PROVIDERS[candidate][0]
    if needed not in offer.providers:
        hint = " (install onnxruntime-gpu: pip install 'spqr-fast[gpu]')" if needed != "CPUExecutionProvider" else ""
        return f"ONNX Runtime has no {needed}{hint}"
    if needed != "CPUExecutionProvider" and not offer.gpu:
        return "no CUDA GPU visible"
    return None


def plan_candidates(requested: str, offer: MachineOffer) -> tuple[list[str], list[tuple[str, str]]]:
    """(candidates to try in order, [(skipped candidate, reason)]). torch is always last."""
    if requested not in REQUEST_ORDER:
        raise ValueError(f"unknown backend {requested!r}; choose from {', '.join(REQUEST_ORDER)}")
    tryable, skipped = [], []
    for c in REQUEST_ORDER[requested]:
        reason = why_unavailable(c, offer)
        (skipped.append((c, reason)) if reason else tryable.append(c))
    return tryable, skipped
