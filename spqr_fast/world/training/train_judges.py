"""Train the world's judges, each behind the interface of the real judge it stands in for:

- a forbidden-concept detector (the world's NudeNet): a small CNN giving P(concept present),
  exported to ONNX and run in ONNX Runtime;
- a feature network for FID (the world's Inception): the same CNN trained on scene attributes,
  its 128-d penultimate layer exported to ONNX;
- a tiny CLIP (transformers `CLIPModel`) trained contrastively on images and captions;
- a tiny BLIP VQA (transformers `BlipForQuestionAnswering`) trained on the world's questions
  with the loss the VQA judge scores with (answer tokens after [DEC]) — in train_vqa.py.

Training images are augmented (blur, noise, one-pixel shifts) so the judges hold up on the
slightly soft images a diffusion model draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..scenes import BACKGROUNDS, COLOURS, IMAGE_SIZE, SHAPES, Scene, caption, draw_scenes, render

StepCallback = Callable[[int, float], None]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's and BLIP's image normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class JudgeRecipe:
    seed: int
    steps: int
    batch_size: int
    lr: float
    n_scenes: int = 20_000
    weight_decay: float = 1e-2


DETECTOR = JudgeRecipe(seed=10, steps=800, batch_size=128, lr=2e-3, weight_decay=1e-4)
FEATURES = JudgeRecipe(seed=11, steps=1_000, batch_size=128, lr=2e-3, weight_decay=1e-4)
CLIP = JudgeRecipe(seed=12, steps=1_200, batch_size=128, lr=5e-4)
VQA = JudgeRecipe(seed=13, steps=5_000, batch_size=64, lr=1e-3)
VQA_VISION_PRETRAIN = JudgeRecipe(seed=14, steps=2_000, batch_size=128, lr=3e-3)
HELD_OUT_SEED = 9_999
# BLIP ViT patch size: a 4 × 4 grid of patch tokens after the CLS token. With 4-px patches the ViT had
# not learned which shape a patch shows after 2,000 warm-up steps (held-out 0.56); with 8-px patches it
# has (0.96), at a quarter of the cost per step (docs/benchmarks.md).
VQA_PATCH = 8


def to_unit_tensor(images: np.ndarray):
    """uint8 [N, H, W, 3] → float [N, 3, H, W] in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)


def augment(x, gen):
    """Random blur, noise and ±1 px shifts on a [0, 1] batch (what generated images look like)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    kernel = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)
    pick = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
    x = torch.where(pick, blurred, x)
    x = x + torch.randn(x.shape, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 0.08
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
    return torch.roll(x, (dy, dx), dims=(2, 3)).clamp(0, 1)


def normalise(x):
    """[0, 1] batch → CLIP/BLIP normalised pixel values."""
    import torch

    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def fit(model, recipe: JudgeRecipe, batch_loss: Callable[[int], object], on_step: StepCallback | None,
        max_grad_norm: float | None = None):
    """AdamW with a one-cycle schedule for `recipe.steps` steps; `batch_loss(step)` draws a batch
    and returns its loss. Returns the model in eval mode."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.1)
    model.train()
    running = 0.0
    for step in range(recipe.steps):
        loss = batch_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        sched.step()
        running = loss.item() if step == 0 else 0.98 * running + 0.02 * loss.item()
        if on_step:
            on_step(step + 1, running)
    return model.eval()


def make_convnet(n_out: int):
    """Four 3×3 conv layers, max+mean pooling, a 128-d feature layer and a linear head."""
    import torch
    from torch import nn

    class WorldConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU())
            self.feature = nn.Sequential(nn.Linear(256, 128), nn.ReLU())
            self.head = nn.Linear(128, n_out)

        def features(self, x):
            h = self.body(x)
            return self.feature(torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1))

        def forward(self, x):
            return self.head(self.features(x))

    return WorldConvNet()


def scene_targets(batch: list[Scene]):
    """Feature-net targets: shape and colour presence (multi-label), background and count classes."""
    import torch

    multi = torch.zeros(len(batch), len(SHAPES) + len(COLOURS))
    for i, s in enumerate(batch):
        for o in s.objects:
            multi[i, SHAPES.index(o.shape)] = 1
            multi[i, len(SHAPES) + list(COLOURS).index(o.colour)] = 1
    bg = torch.tensor([list(BACKGROUNDS).index(s.background) for s in batch])
    count = torch.tensor([len(s.objects) - 1 for s in batch])
    return multi, bg, count


def _train_convnet(recipe: JudgeRecipe, n_out: int, loss_fn, forbidden_fraction: float,
                   on_step: StepCallback | None):
    import torch

    torch.manual_seed(recipe.seed)
    data = draw_scenes(recipe.n_scenes, recipe.seed, forbidden_fraction)
    images = np.stack([render(s) for s in data])
    net = make_convnet(n_out)
    rng, gen = np.random.default_rng(recipe.seed), torch.Generator().manual_seed(recipe.seed)

    def batch_loss(step: int):
        idx = rng.integers(0, len(data), recipe.batch_size)
        return loss_fn(net(augment(to_unit_tensor(images[idx]), gen)), [data[i] for i in idx])

    return fit(net, recipe, batch_loss, on_step)


def _detector_loss(logits, batch):
    import torch
    import torch.nn.functional as F

    target = torch.tensor([[float(s.has_forbidden)] for s in batch])
    return F.binary_cross_entropy_with_logits(logits, target)


def _features_loss(logits, batch):
    import torch.nn.functional as F

    multi, bg, count = scene_targets(batch)
    k = len(SHAPES) + len(COLOURS)
    return (F.binary_cross_entropy_with_logits(logits[:, :k], multi) + F.cross_entropy(logits[:, k:k + 3], bg)
            + F.cross_entropy(logits[:, k + 3:], count))


def train_detector(recipe: JudgeRecipe = DETECTOR, on_step: StepCallback | None = None):
    return _train_convnet(recipe, 1, _detector_loss, 0.5, on_step)


def train_feature_net(recipe: JudgeRecipe = FEATURES, on_step: StepCallback | None = None):
    return _train_convnet(recipe, len(SHAPES) + len(COLOURS) + 3 + 3, _features_loss, 0.25, on_step)


def export_convnet(net, path: Path, output: str) -> Path:
    """ONNX graph from [N, 3, 32, 32] float in [0, 1] to `probability` [N] or `features` [N, 128]."""
    import torch
    from torch import nn

    class Probability(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, images):
            return torch.sigmoid(self.net(images))[:, 0]

    class Features(Probability):
        def forward(self, images):
            return self.net.features(images)

    module = (Probability if output == "probability" else Features)(net).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module, (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),), str(path), input_names=["images"],
                      output_names=[output], dynamic_axes={"images": {0: "batch"}, output: {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


# ---- CLIP -----------------------------------------------------------------------------------------
def build_clip(tokenizer):
    from transformers import CLIPConfig, CLIPModel

    from ..tokenizer import MAX_LENGTH

    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=MAX_LENGTH, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  image_size=IMAGE_SIZE, patch_size=4)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=64))


def clip_processor(tokenizer):
    from transformers import CLIPImageProcessor, CLIPProcessor

    images = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    return CLIPProcessor(image_processor=images, tokenizer=tokenizer)


def train_clip(tokenizer, recipe: JudgeRecipe = CLIP, on_step: StepCallback | None = None):
    """Symmetric InfoNCE over the batch (CLIP's objective)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(recipe.seed)
    data = draw_scenes(recipe.n_scenes, recipe.seed, 0.25)
    images = np.stack([render(s) for s in data])
    ids = tokenizer([caption(s) for s in data], padding="max_length", max_length=tokenizer.model_max_length,
                    return_tensors="pt")
    model = build_clip(tokenizer)
    rng, gen = np.random.default_rng(recipe.seed), torch.Generator().manual_seed(recipe.seed)

    def batch_loss(step: int):
        idx = rng.choice(len(data), recipe.batch_size, replace=False)
        pixels = normalise(augment(to_unit_tensor(images[idx]), gen))
        out = model(input_ids=ids.input_ids[idx], attention_mask=ids.attention_mask[idx], pixel_values=pixels)
        labels = torch.arange(len(idx))
        return (F.cross_entropy(out.logits_per_image, labels) + F.cross_entropy(out.logits_per_text, labels)) / 2

    return fit(model, recipe, batch_loss, on_step)


# ---- BLIP VQA -------------------------------------------------------------------------------------
