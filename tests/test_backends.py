"""Export through Optimum, ONNX Runtime parity, the artefact cache, and backend fallback."""

import json
import os

import numpy as np
import pytest
import torch

from spqr_fast.backends.ort_backend import OrtComponents
from spqr_fast.backends.parity import check_parity
from spqr_fast.backends.resolve import BackendResolver
from spqr_fast.backends.selection import MachineOffer, plan_candidates
from spqr_fast.backends.torch_backend import TorchComponents
from spqr_fast.config import BackendConfig, ModelSource
from spqr_fast.export.cache import ArtefactCache
from spqr_fast.export.onnx_export import cached_onnx_export, onnx_key_inputs, part_key_inputs
from spqr_fast.models import load_pipeline
from spqr_fast.keys import FileHasher, source_hash
from spqr_fast.sampling.sampler import DiffusionSampler

CPU_ONLY = MachineOffer(providers=["CPUExecutionProvider"], has_tensorrt=False, gpu=None)


@pytest.fixture(scope="module")
def lora_source(demo_project, esd_lora):
    return ModelSource(path=str(demo_project.parent / "models" / "esd"), lora=str(esd_lora))


@pytest.fixture(scope="module")
def exported(lora_source, tmp_path_factory):
    cache = ArtefactCache(tmp_path_factory.mktemp("engines"))
    folder = cached_onnx_export(lora_source, cache, FileHasher(None))
    return cache, folder


def test_exported_pipeline_with_fused_lora_matches_torch(lora_source, exported):
    _, folder = exported
    pipe, _ = load_pipeline(lora_source)
    ref = TorchComponents(pipe)
    ort = OrtComponents(folder, ["CPUExecutionProvider"])
    parity = check_parity(ref, ort, height=64, width=64, steps=3, tolerance=1e-4)
    assert parity.passed, parity
    kwargs = dict(steps=3, height=64, width=64)
    a = DiffusionSampler(ref, **kwargs).generate(["a red bus", "a cat"], [1, 2], [7.5, 7.5])
    b = DiffusionSampler(ort, **kwargs).generate(["a red bus", "a cat"], [1, 2], [7.5, 7.5])
    assert np.abs(a.astype(int) - b).max() <= 1
    plain, _ = load_pipeline(ModelSource(path=lora_source.path))
    c = DiffusionSampler.from_pipe(plain, **kwargs).generate(["a red bus"], [1], [7.5])
    assert np.abs(c.astype(int) - b[:1]).max() > 1  # the LoRA really is in the exported graph


def test_optimum_ort_pipeline_loads_the_folder(lora_source, exported):
    from optimum.onnxruntime import ORTStableDiffusionPipeline

    _, folder = exported
    ort_pipe = ORTStableDiffusionPipeline.from_pretrained(str(folder), provider="CPUExecutionProvider")
    gens = [torch.Generator("cpu").manual_seed(5)]
    got = ort_pipe("a red bus", num_inference_steps=3, height=64, width=64, generator=gens[0], output_type="np").images
    pipe, _ = load_pipeline(lora_source)
    want = pipe("a red bus", num_inference_steps=3, height=64, width=64,
                generator=torch.Generator("cpu").manual_seed(5), output_type="np").images
    assert np.abs(got - want).max() < 1e-3


def test_cache_keys_change_with_each_keyed_input_and_only_then(tmp_path):
    cache = ArtefactCache(tmp_path)
    base = onnx_key_inputs("w1", "fp32", None)
    assert cache.folder("onnx", base) == cache.folder("onnx", dict(base))
    for field, value in (("weights", "w2"), ("precision", "fp16"), ("opset", 17), ("onnxruntime", "0.0"),
                         ("attention", "fused"), ("recipe", 99), ("optimum", "x"), ("torch", "y")):
        assert cache.folder("onnx", {**base, field: value}) != cache.folder("onnx", base), field
    engine = {"onnx": "k", "component": "unet", "precision": "fp16", "profile": {"sample": [1]},
              "tensorrt": "10", "gpu": "H100", "compute_capability": "9.0"}
    for field, value in (("component", "vae_decoder"), ("profile", {"sample": [2]}), ("tensorrt", "11"),
                         ("gpu", "A100"), ("compute_capability", "8.0"), ("onnx", "k2")):
        assert cache.folder("tensorrt", {**engine, field: value}) != cache.folder("tensorrt", engine), field


def test_a_corrupt_artefact_is_rebuilt_not_trusted(lora_source, exported):
    cache, folder = exported
    part = (folder / "unet").resolve().parent  # the pipeline folder links to its component artefacts
    assert cache.valid(folder) == (True, "") and cache.valid(part) == (True, "")
    onnx = part / "unet" / "model.onnx"
    good = onnx.read_bytes()
    onnx.write_bytes(good[:-100])
    ok, why = cache.valid(part)
    assert not ok and "unet/model.onnx does not match its manifest" in why
    log = []
    again = cached_onnx_export(lora_source, cache, FileHasher(None), log=log.append)
    assert again == folder and cache.valid(part)[0] and "rebuilding" in log[0]
    assert [e["valid"] for e in cache.entries()] == [True] * 4  # three components and the pipeline folder
    assert (folder / "unet" / "model.onnx").read_bytes() != good[:-100]


def test_a_changed_file_of_the_same_size_is_caught_and_deep_checks_hash_everything(tmp_path):
    cache = ArtefactCache(tmp_path)
    built = cache.get_or_build("onnx", {"k": 2}, lambda folder: (folder / "m.onnx").write_bytes(b"abcd") and None)
    sealed = (built / "m.onnx").stat().st_mtime_ns
    (built / "m.onnx").write_bytes(b"abce")  # same size; a later modification time
    os.utime(built / "m.onnx", ns=(sealed + 10**9, sealed + 10**9))
    assert cache.valid(built)[0] is False
    (built / "m.onnx").write_bytes(b"abcd")
    assert cache.valid(built) == (True, "") and cache.valid(built, deep=True) == (True, "")


def test_a_fine_tuned_model_exports_only_its_unet(demo_project, lora_source, tmp_path):
    """BFT and erasure change the UNet only: text encoder and VAE graphs are shared with the
    model they came from, and the second pipeline folder links to the first one's."""
    cache = ArtefactCache(tmp_path)
    plain = ModelSource(path=lora_source.path)
    log = []
    first = cached_onnx_export(plain, cache, FileHasher(None), log=log.append)
    assert sum(line.startswith("exporting ") for line in log) == 3
    log.clear()
    second = cached_onnx_export(lora_source, cache, FileHasher(None), log=log.append)
    assert [line.split()[1] for line in log if line.startswith("exporting ")] == ["unet"]
    for component in ("text_encoder", "vae_decoder"):
        assert (first / component).resolve() == (second / component).resolve()
    assert (first / "unet").resolve() != (second / "unet").resolve()


@pytest.mark.parametrize("requested,offer,expected,skipped", [
    ("auto", CPU_ONLY, ["ort-cpu", "torch"], ["tensorrt", "ort-tensorrt", "ort-cuda"]),
    ("auto", MachineOffer(providers=[], has_tensorrt=False), ["torch"], ["tensorrt", "ort-tensorrt", "ort-cuda", "ort-cpu"]),
    ("auto", MachineOffer(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], has_tensorrt=True, gpu="H100"),
     ["tensorrt", "ort-cuda", "ort-cpu", "torch"], ["ort-tensorrt"]),
    ("auto", MachineOffer(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], has_tensorrt=True, gpu=None),
     ["ort-cpu", "torch"], ["tensorrt", "ort-tensorrt", "ort-cuda"]),
    ("tensorrt", CPU_ONLY, ["torch"], ["tensorrt"]),
    ("ort", CPU_ONLY, ["ort-cpu", "torch"], ["ort-tensorrt", "ort-cuda"]),
    ("torch", CPU_ONLY, ["torch"], []),
])
def test_auto_and_explicit_requests_fall_back_in_order(requested, offer, expected, skipped):
    tryable, skips = plan_candidates(requested, offer)
    assert tryable == expected
    assert [name for name, _ in skips] == skipped
    assert all(reason for _, reason in skips)


def test_skip_reasons_name_what_is_missing():
    _, skips = plan_candidates("auto", MachineOffer(providers=["CUDAExecutionProvider"], has_tensorrt=False, gpu=None))
    reasons = dict(skips)
    assert "package 'tensorrt' missing" in reasons["tensorrt"]
    assert "no TensorrtExecutionProvider" in reasons["ort-tensorrt"]
    assert reasons["ort-cuda"] == "no CUDA GPU visible"


def test_failing_parity_gate_falls_back_to_torch_and_says_so(lora_source, exported):
    cache, _ = exported
    log = []
    resolver = BackendResolver(BackendConfig(kind="auto", cache_root=str(cache.root), fp32_tolerance=1e-12),
                               FileHasher(None), log=log.append, offer=CPU_ONLY)
    pipe, _ = load_pipeline(lora_source)
    components, report = _as_written(resolver.resolve(lora_source, pipe, height=64, width=64, label="m"))
    assert report["chosen"] == "torch" and isinstance(components, TorchComponents)
    assert any("backend ort-cpu skipped for m: parity failed" in line for line in log)
    ok = BackendResolver(BackendConfig(kind="auto", cache_root=str(cache.root)), FileHasher(None),
                         log=log.append, offer=CPU_ONLY)
    components, report = _as_written(ok.resolve(lora_source, pipe, height=64, width=64))
    assert report["chosen"] == "ort-cpu" and report["parity"]["passed"]


@pytest.mark.heavy
def test_auto_builds_only_when_the_export_pays_for_itself(demo_project, tmp_path):
    """A stage that needs a handful of images keeps eager torch and says why; a large stage
    exports; an explicit `ort` request builds regardless."""
    src = ModelSource(path=str(demo_project.parent / "models" / "base"))
    pipe, _ = load_pipeline(src)
    log = []
    auto = BackendResolver(BackendConfig(kind="auto", cache_root=str(tmp_path)), FileHasher(None), log=log.append,
                           offer=CPU_ONLY)
    _, report = _as_written(auto.resolve(src, pipe, height=32, width=32, label="base", planned=(1, 1)))
    assert report["chosen"] == "torch" and not list(tmp_path.glob("onnx-part/*"))
    decision = report["build_decisions"][0]
    assert decision["build"] is False and set(decision["components"]) == {"text_encoder", "unet", "vae_decoder"}
    assert any("backend ort-cpu skipped for base: not worth building: exporting text_encoder, unet, vae_decoder"
               in line for line in log)
    assert log[-1] == "backend for base: torch"
    _, report = _as_written(auto.resolve(src, pipe, height=32, width=32, label="base", planned=(10**6, 50)))
    assert report["chosen"] == "ort-cpu" and report["build_decisions"][0]["build"] is True
    assert log[-1].startswith("backend for base: ort-cpu (parity: relative error")
    _, report = _as_written(auto.resolve(src, pipe, height=32, width=32, planned=(1, 1)))  # exported now: nothing to weigh
    assert report["chosen"] == "ort-cpu" and "build_decisions" not in report
    other = ModelSource(path=str(demo_project.parent / "models" / "esd"))
    explicit = BackendResolver(BackendConfig(kind="ort", cache_root=str(tmp_path)), FileHasher(None), log=log.append,
                               offer=CPU_ONLY)
    _, report = _as_written(explicit.resolve(other, load_pipeline(other)[0], height=32, width=32, planned=(1, 1)))
    assert report["chosen"] == "ort-cpu" and "build_decisions" not in report


def test_build_decision_arithmetic(tmp_path):
    from spqr_fast.backends.build_cost import EXPORT_OVERHEAD_S, EXPORT_S_PER_PARAM, decide, export_rate

    d = decide("ort-cpu", images=100, steps=50, parity_steps=3, step_seconds=2.0,
               components={"unet": 860_000_000}, cache_root=tmp_path)
    export = EXPORT_OVERHEAD_S + 860e6 * EXPORT_S_PER_PARAM + 2 * 3 * 2.0
    assert d.build_seconds == round(export, 1) and d.saved_seconds == round(100 * 50 * 2.0 * (1 - 1 / 1.6), 1)
    assert d.build and "exporting unet" in d.reason() and "100 images" in d.reason()
    assert not decide("ort-cpu", images=2, steps=3, parity_steps=3, step_seconds=2.0,
                      components={"unet": 860_000_000}, cache_root=tmp_path).build
    # a wall-clock limit caps the images counted at what eager torch makes in it (an audit's budget)
    capped = decide("ort-cpu", images=100, steps=50, parity_steps=3, step_seconds=2.0,
                    components={"unet": 860_000_000}, cache_root=tmp_path, within_seconds=200.0)
    assert capped.images == 2 and not capped.build and "all that 200 s allows" in capped.reason()
    roomy = decide("ort-cpu", images=100, steps=50, parity_steps=3, step_seconds=2.0,
                   components={"unet": 860_000_000}, cache_root=tmp_path, within_seconds=1e6)
    assert roomy.images == 100 and roomy.build and roomy.within_seconds is None
    part = tmp_path / "onnx-part" / "k"  # earlier exports on this machine replace the reference rate
    part.mkdir(parents=True)
    (part / "manifest.json").write_text(json.dumps({"parameters": 100_000_000, "build_seconds": 23.0}))
    rate, where = export_rate(tmp_path)
    assert rate == pytest.approx((23.0 - EXPORT_OVERHEAD_S) / 1e8) and "1 earlier export" in where


def test_broken_export_falls_back_to_torch(demo_project, tmp_path):
    src = ModelSource(path=str(demo_project.parent / "models" / "base"))
    log = []
    resolver = BackendResolver(BackendConfig(kind="ort", cache_root=str(tmp_path), opset=1), FileHasher(None),
                               log=log.append, offer=CPU_ONLY)
    pipe, _ = load_pipeline(src)
    _, report = _as_written(resolver.resolve(src, pipe, height=64, width=64, label="base"))
    assert report["chosen"] == "torch"
    assert any(line.startswith("backend ort-cpu skipped for base: build failed") for line in log)


def test_clip_score_on_onnx_runtime_matches_torch(demo_project, tmp_path):
    from spqr_fast.judges.clip import ClipScorer

    path = str(demo_project.parent / "judges" / "clip")
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    texts = ["a red bus", "two cats", "a snowy mountain", "a bowl of fruit", "a kite"]
    torch_scores = ClipScorer(path, batch_size=2).score(images, texts)
    log = []

    def resolver(kind):  # the same resolver class as generation's
        return BackendResolver(BackendConfig(kind=kind, cache_root=str(tmp_path)), FileHasher(None), log=log.append)

    ort_scorer = ClipScorer(path, batch_size=2, resolver=resolver("auto"))
    assert ort_scorer.backend_report.chosen == "ort-cpu" and len(log) == 1 and "skipped" not in log[0]
    assert log[0].startswith("backend for CLIP: ort-cpu (parity: error")
    np.testing.assert_allclose(ort_scorer.score(images, texts), torch_scores, atol=1e-5)
    strict = ClipScorer(path, resolver=resolver("ort"), tolerance=1e-15)
    assert strict.backend_report.chosen == "torch" and "parity failed" in log[-1]


def test_fused_attention_export_uses_ort_multihead_attention_and_matches_torch(lora_source, tmp_path):
    import onnx

    cache = ArtefactCache(tmp_path)
    folder = cached_onnx_export(lora_source, cache, FileHasher(None), attention="fused")
    graph = onnx.load(str(folder / "unet" / "model.onnx"), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert "MultiHeadAttention" in ops and "Softmax" not in ops
    unet_hash = source_hash(lora_source, FileHasher(None))
    plain = cache.folder("onnx-part", part_key_inputs("unet", unet_hash, "fp32", None, "plain"))
    assert plain != (folder / "unet").resolve().parent  # the attention variant is part of the cache key
    pipe, _ = load_pipeline(lora_source)
    parity = check_parity(TorchComponents(pipe), OrtComponents(folder, ["CPUExecutionProvider"]), height=64, width=64,
                          steps=3, tolerance=1e-4)
    assert parity.passed, parity


def test_a_failed_build_leaves_no_half_artefact_and_the_next_build_lands_whole(tmp_path):
    cache = ArtefactCache(tmp_path)

    def broken(folder):
        (folder / "part.onnx").write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("onnx", {"k": 1}, broken)
    assert not cache.folder("onnx", {"k": 1}).exists() and not list(tmp_path.rglob(".building-*"))
    def whole(folder):
        (folder / "m.onnx").write_bytes(b"ok")
        return {"note": "built whole"}

    built = cache.get_or_build("onnx", {"k": 1}, whole)
    assert cache.valid(built) == (True, "") and json.loads((built / "manifest.json").read_text())["key"] == built.name
    calls = []
    assert cache.get_or_build("onnx", {"k": 1}, calls.append) == built and calls == []  # valid: not rebuilt


def test_fallbacks_of_a_run_are_listed_not_silent():
    from spqr_fast.provenance import backend_fallbacks

    from spqr_fast.schema import BackendReport, StageLoad

    def load(backend: dict) -> StageLoad:
        return StageLoad(format="diffusers", layout=None, missing_keys=0, unexpected_keys=0, missing_examples=[],
                         lora=None, backend=BackendReport(requested="auto", **backend))

    loads = {("uce", "after"): load({"chosen": "torch", "skipped": [
        {"backend": "tensorrt", "reason": "the tensorrt package is not installed"},
        {"backend": "ort-cpu", "reason": "build failed: disk full"}]}),
        ("uce", "before"): load({"chosen": "ort-cpu", "skipped": []})}
    judges = {"vqa": BackendReport(requested="auto", chosen="torch",
                                   skipped=[{"backend": "ort-cpu", "reason": "build failed: x"}]),
              "clip": BackendReport(requested="auto", chosen="ort-cpu",
                                    skipped=[{"backend": "ort-cuda", "reason": "no CUDA GPU visible"}])}
    assert backend_fallbacks(loads, judges) == [
        "uce [after BFT]: ort-cpu skipped (build failed: disk full); ran on torch",
        "judge vqa: ort-cpu skipped (build failed: x); ran on torch"]


def _as_written(resolved):
    """(components, the backend report as provenance writes it)."""
    components, report = resolved
    return components, report.dump()


def test_an_artefact_cleared_between_its_build_and_its_use_is_built_again_not_abandoned(lora_source, exported,
                                                                                         monkeypatch):
    """`engines clear` while a run resolves its backend: the run builds the export again and
    runs on ONNX Runtime, rather than falling back to torch with different results."""
    import spqr_fast.backends.resolve as resolve

    cache, _ = exported
    real_export = resolve.cached_onnx_export
    calls = {"n": 0}

    def export_then_clear(*args, **kwargs):
        folder = real_export(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            ArtefactCache(cache.root).clear()  # another process clears the cache right now
        return folder

    monkeypatch.setattr(resolve, "cached_onnx_export", export_then_clear)
    log = []
    resolver = BackendResolver(BackendConfig(kind="ort", cache_root=str(cache.root)), FileHasher(None),
                               log=log.append, offer=CPU_ONLY)
    pipe, _ = load_pipeline(lora_source)
    components, report = _as_written(resolver.resolve(lora_source, pipe, height=64, width=64, label="m"))
    assert report["chosen"] == "ort-cpu" and isinstance(components, OrtComponents)
    assert calls["n"] == 2 and any("building it again" in line for line in log)
