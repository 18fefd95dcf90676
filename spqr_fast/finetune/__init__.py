"""Benign fine-tuning (BFT): the three SPQR profiles in PyTorch with diffusers and peft."""
