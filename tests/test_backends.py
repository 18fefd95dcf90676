"""Export through Optimum, ONNX Runtime parity, the artefact cache, and backend fallback."""

import json

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
from spqr_fast.export.onnx_export import cached_onnx_export, onnx_key_inputs
from spqr_fast.models import FileHasher, load_pipeline, source_hash
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
    assert cache.valid(folder) == (True, "")
    onnx = folder / "unet" / "model.onnx"
    good = onnx.read_bytes()
    onnx.write_bytes(good[:-100])
    ok, why = cache.valid(folder)
    assert not ok and "unet/model.onnx does not match its manifest" in why
    log = []
    again = cached_onnx_export(lora_source, cache, FileHasher(None), log=log.append)
    assert again == folder and cache.valid(folder)[0] and "rebuilding" in log[0]
    assert [e["valid"] for e in cache.entries()] == [True]


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
    components, report = resolver.resolve(lora_source, pipe, height=64, width=64, label="m")
    assert report["chosen"] == "torch" and isinstance(components, TorchComponents)
    assert any("backend ort-cpu skipped for m: parity failed" in line for line in log)
    ok = BackendResolver(BackendConfig(kind="auto", cache_root=str(cache.root)), FileHasher(None),
                         log=log.append, offer=CPU_ONLY)
    components, report = ok.resolve(lora_source, pipe, height=64, width=64)
    assert report["chosen"] == "ort-cpu" and report["parity"]["passed"]


def test_broken_export_falls_back_to_torch(demo_project, tmp_path):
    src = ModelSource(path=str(demo_project.parent / "models" / "base"))
    log = []
    resolver = BackendResolver(BackendConfig(kind="ort", cache_root=str(tmp_path), opset=1), FileHasher(None),
                               log=log.append, offer=CPU_ONLY)
    pipe, _ = load_pipeline(src)
    _, report = resolver.resolve(src, pipe, height=64, width=64, label="base")
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
    ort_scorer = ClipScorer(path, batch_size=2, backend="auto", cache=ArtefactCache(tmp_path), hasher=FileHasher(None),
                            log=log.append)
    assert ort_scorer.backend_report["chosen"] == "ort" and not log
    np.testing.assert_allclose(ort_scorer.score(images, texts), torch_scores, atol=1e-5)
    strict = ClipScorer(path, backend="ort", cache=ArtefactCache(tmp_path), hasher=FileHasher(None),
                        log=log.append, tolerance=1e-15)
    assert strict.backend_report["chosen"] == "torch" and "parity failed" in log[-1]


def test_fused_attention_export_uses_ort_multihead_attention_and_matches_torch(lora_source, tmp_path):
    import onnx

    cache = ArtefactCache(tmp_path)
    folder = cached_onnx_export(lora_source, cache, FileHasher(None), attention="fused")
    graph = onnx.load(str(folder / "unet" / "model.onnx"), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert "MultiHeadAttention" in ops and "Softmax" not in ops
    plain = cache.folder("onnx", onnx_key_inputs(source_hash(lora_source, FileHasher(None)), "fp32", None, "plain"))
    assert plain != folder  # the attention variant is part of the cache key
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

    loads = {("uce", "after"): {"backend": {"chosen": "torch", "skipped": [
        {"backend": "tensorrt", "reason": "the tensorrt package is not installed"},
        {"backend": "ort-cpu", "reason": "build failed: disk full"}]}},
        ("uce", "before"): {"backend": {"chosen": "ort-cpu", "skipped": []}}}
    judges = {"vqa": {"requested": "auto", "chosen": "torch", "skipped": "build failed: x"}, "clip": {"chosen": "ort"}}
    assert backend_fallbacks(loads, judges) == [
        "uce [after BFT]: ort-cpu skipped (build failed: disk full); ran on torch",
        "judge vqa: ONNX Runtime skipped (build failed: x); ran on torch"]
