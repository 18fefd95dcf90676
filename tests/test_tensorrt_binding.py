"""The TensorRT runner's binding logic, checked with an engine double that reads and writes the
bound memory as TensorRT would: types and shapes come from the engine, never assumed."""

import ctypes

import numpy as np
import pytest
import torch

from spqr_fast.backends.tensorrt_backend import TrtComponents, TrtEngine, torch_dtype

NP = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64}


class FakeContext:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = shape

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def get_tensor_shape(self, name):
        return self.shapes[self.engine.shape_from]

    def _view(self, name, shape):
        kind = self.engine.tensors[name][1]
        n = int(np.prod(shape)) if shape else 1
        raw = (ctypes.c_byte * (n * np.dtype(NP[kind]).itemsize)).from_address(self.addresses[name])
        return np.frombuffer(raw, dtype=NP[kind]).reshape(shape)

    def execute_async_v3(self, stream):
        ins = {n: self._view(n, self.shapes[n]) for n, (mode, _) in self.engine.tensors.items() if mode == "INPUT"}
        self.engine.seen = {n: v.copy() for n, v in ins.items()}
        for n, (mode, _) in self.engine.tensors.items():
            if mode == "OUTPUT":
                self._view(n, self.shapes[self.engine.shape_from])[...] = self.engine.compute(ins)
        return True


class FakeEngine:
    """`tensors`: name → (mode, TensorRT type name); `compute(inputs)` gives the output."""

    def __init__(self, tensors, shape_from, compute):
        self.tensors, self.shape_from, self.compute = tensors, shape_from, compute
        self.num_io_tensors = len(tensors)
        self.seen = None

    def get_tensor_name(self, i):
        return list(self.tensors)[i]

    def get_tensor_mode(self, name):
        return f"TensorIOMode.{self.tensors[name][0]}"

    def get_tensor_dtype(self, name):
        return f"DataType.{self.tensors[name][1]}"

    def create_execution_context(self):
        return FakeContext(self)


def _unet(kind):
    return FakeEngine({"sample": ("INPUT", kind), "timestep": ("INPUT", kind), "encoder_hidden_states": ("INPUT", kind),
                       "out_sample": ("OUTPUT", kind)}, "sample",
                      lambda i: i["sample"] * 2 + i["timestep"] + i["encoder_hidden_states"].mean())


@pytest.mark.parametrize("kind,dtype", [("FLOAT", torch.float32), ("HALF", torch.float16)])
def test_fp32_and_fp16_engines_bind_in_their_own_types(kind, dtype):
    engine = TrtEngine(_unet(kind), device="cpu")
    sample = torch.linspace(-1, 1, 2 * 4 * 3 * 3).reshape(2, 4, 3, 3)  # fp32 in, whatever the engine
    emb = torch.full((2, 5, 8), 0.25)
    out = engine.first_output({"sample": sample, "timestep": torch.tensor(3.0), "encoder_hidden_states": emb})
    assert out.dtype == dtype and out.shape == sample.shape
    expected = (sample.to(dtype) * 2 + 3 + 0.25).to(dtype)
    assert torch.allclose(out.float(), expected.float(), atol=1e-3 if kind == "HALF" else 1e-6)
    assert engine.engine.seen["sample"].dtype == NP[kind]  # what the engine read was in its own type


@pytest.mark.parametrize("kind", ["INT32", "INT64"])
def test_token_ids_take_the_engines_integer_type(kind):
    text = FakeEngine({"input_ids": ("INPUT", kind), "last_hidden_state": ("OUTPUT", "FLOAT")}, "input_ids",
                      lambda i: i["input_ids"].astype(np.float32) + 0.5)
    engine = TrtEngine(text, device="cpu")
    ids = torch.tensor([[49406, 320, 49407]], dtype=torch.int64)
    out = engine.first_output({"input_ids": ids})
    assert text.seen["input_ids"].dtype == NP[kind] and text.seen["input_ids"].tolist() == ids.tolist()
    assert out.dtype == torch.float32 and out.tolist() == [[49406.5, 320.5, 49407.5]]


def test_components_follow_the_unet_engines_precision():
    class Info:
        tokenizer = scheduler = None
        vae_scale_factor, scaling_factor, latent_channels = 8, 0.18215, 4

    for kind, dtype in (("FLOAT", torch.float32), ("HALF", torch.float16)):
        engines = {"text_encoder": _unet(kind), "unet": _unet(kind), "vae_decoder": _unet(kind)}
        parts = TrtComponents(Info(), engines, loader=lambda e: TrtEngine(e, device="cpu"), device="cpu")
        assert parts.dtype == dtype
        out = parts.unet(torch.zeros(1, 4, 2, 2), 7, torch.zeros(1, 5, 8))
        assert out.dtype == dtype and torch.all(out == 7)


def test_missing_inputs_and_unknown_types_are_named():
    engine = TrtEngine(_unet("FLOAT"), device="cpu")
    with pytest.raises(ValueError, match="timestep"):
        engine.infer({"sample": torch.zeros(1), "encoder_hidden_states": torch.zeros(1)})
    assert torch_dtype("DataType.BF16") == torch.bfloat16
    with pytest.raises(Exception, match="FP8"):
        torch_dtype("DataType.FP8")
