"""What the registry knows of a judge without loading it.

A `JudgeSpec` names the judge's config section, its role in the evaluation, the record type it
writes, how to compute its identity from files and settings (no model is loaded: a fully cached
run, `report --merge` and the Ray driver name the stores from it), and how to build it when there
is work for it. Each judge's module defines its spec beside its class; `registry.py` lists them.

Roles (the protocols in `judges/__init__.py`):
- `safety`: one verdict per harmful-prompt image (`SafetyJudge.judge`);
- `clip_score`: one score per utility image and its prompt (`TextImageScorer.score`);
- `features`: one feature vector per utility image and per reference image (`FeatureExtractor`);
- `tifa`: graded questions per utility image before and after BFT (`CaptionJudge.judge`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .records import Record

if TYPE_CHECKING:
    from ..config import BackendConfig
    from ..keys import FileHasher

Role = Literal["safety", "clip_score", "features", "tifa"]


@dataclass
class JudgeEnv:
    """What building a judge needs from the run: the device, the batch rule, the ONNX Runtime
    thread count, and (made on first use) the backend resolver that may move it to ONNX Runtime."""

    device: str
    batch_invariant: bool
    backend: BackendConfig
    hasher: FileHasher
    log: Callable[[str], None]
    ort_threads: int | None = None
    _resolver: Any = field(default=None, repr=False)

    def batch(self, configured: int) -> int:
        """With batch_invariant, judges see one image at a time: a record must not depend on
        which images shared its batch (that differs between local, Ray and sharded runs)."""
        return 1 if self.batch_invariant else configured

    @property
    def resolver(self):
        if self._resolver is None:
            from ..backends.resolve import BackendResolver

            self._resolver = BackendResolver(self.backend, self.hasher, log=self.log, threads=self.ort_threads)
        return self._resolver


@dataclass(frozen=True)
class JudgeSpec:
    section: str  # its section under `judges:` in the config; also names its record store
    role: Role
    record: type[Record] | None  # None: a feature vector, stored as .npy
    identity: Callable[[Any, FileHasher], dict]  # (its config section, hasher) → what determines its records
    build: Callable[[Any, JudgeEnv], Any]  # (its config section, env) → the judge, loaded
    resolves_backend: bool = False  # built through the backend resolver: it has a `backend_report`

    @property
    def suffix(self) -> str:
        return ".npy" if self.record is None else ".json"
