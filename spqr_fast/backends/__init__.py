"""Backends: one narrow interface per generation component (text encoder, UNet step, VAE
decoder), implemented by eager PyTorch (the reference), ONNX Runtime and TensorRT. The sampler
never asks which one it has."""
