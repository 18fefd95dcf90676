"""Image generation: the denoising loop with per-image seeds."""
