"""One ONNX Runtime session for a judge's model file: the requested providers that exist here."""

from __future__ import annotations

from pathlib import Path

from ..errors import JudgeError


def open_session(path: Path, providers: list[str] | None, what: str, fix: str, threads: int | None = None):
    """(session, providers used); a file that will not load is one JudgeError naming `what` and
    `fix`. `threads`: intra-op threads (None: ONNX Runtime's own choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    available = ort.get_available_providers()
    chosen = [p for p in (providers or available) if p in available] or ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=chosen), chosen
    except Exception as err:
        raise JudgeError(f"cannot load {what} '{path}': {err}{fix}") from None
