"""Export: fuse LoRA/patches into the UNet, export through Optimum to ONNX, build engines."""
