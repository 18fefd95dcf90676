"""Concept erasure on SD 1.x-style pipelines: UCE (closed-form cross-attention edit) and ESD
(fine-tuning with negative guidance). Both return the changed UNet tensors only — the partial
state dict such methods release — which loads as `model: {path: PATCH, base: MODEL}`."""
