"""spqr-fast: the SPQR benchmark (Safety, Prompt adherence, Quality, Robustness) for
safety-aligned text-to-image diffusion models, before and after benign fine-tuning."""

__version__ = "0.1.0"
