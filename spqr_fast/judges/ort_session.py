"""One ONNX Runtime session for a judge's model file: the requested providers that exist here."""

from __future__ import annotations

from pathlib import Path

from ..errors import JudgeError


def open_session(path: Path, providers: list[str] | None, what: str, fix: str):
    """(session, providers used); a file that will not load is one JudgeError naming `what` and `fix`."""
    import onnxruntime as ort

    from ..runtime import ort_intra_threads

    options = ort.SessionOptions()
    if ort_intra_threads():
        options.intra_op_num_threads = ort_intra_threads()
    available = ort.get_available_providers()
    chosen = [p for p in (providers or available) if p in available] or ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=chosen), chosen
    except Exception as err:
        raise JudgeError(f"cannot load {what} '{path}': {err}{fix}") from None
