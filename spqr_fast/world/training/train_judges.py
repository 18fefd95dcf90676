"""Train the world's judges, each behind the interface of the real judge it stands in for:

- a forbidden-concept detector (the world's NudeNet): a small CNN giving P(concept present),
  exported to ONNX and run in ONNX Runtime;
- a feature network for FID (the world's Inception): the same CNN trained on scene attributes,
  its 128-d penultimate layer exported to ONNX;
- a tiny CLIP (transformers `CLIPModel`) trained contrastively on images and captions;
- a tiny BLIP VQA (transformers `BlipForQuestionAnswering`) trained on the world's questions
  with the loss the VQA judge scores with (answer tokens after [DEC]).

Training images are augmented (blur, noise, one-pixel shifts) so the judges hold up on the
slightly soft images a diffusion model draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..scenes import (BACKGROUNDS, COLOURS, IMAGE_SIZE, PLURAL, SHAPES, Obj, Scene, caption, draw_scenes,
                      probe_questions, render, shape_mask)

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


def _scene_targets(batch: list[Scene]):
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

    multi, bg, count = _scene_targets(batch)
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
def vqa_vocabulary() -> list[str]:
    from ..scenes import word_vocabulary

    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "?"] + word_vocabulary()


def build_vqa(folder: Path):
    """Untrained tiny BlipForQuestionAnswering + its processor (word-level WordPiece vocabulary)."""
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    folder.mkdir(parents=True, exist_ok=True)
    vocab = vqa_vocabulary()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True, bos_token="[DEC]")
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=64, encoder_hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
                         bos_token_id=vocab.index("[DEC]"), pad_token_id=0, sep_token_id=vocab.index("[SEP]")),
        # four ViT layers: with two, the ViT learns colours but not shapes or counts in this budget.
        # BLIP's vision default initializer_range is 1e-10 (for loading pretrained weights): trained
        # from scratch, position embeddings would start at zero, so use BERT's 0.02.
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                           image_size=IMAGE_SIZE, patch_size=VQA_PATCH, initializer_range=0.02),
    )
    processor = BlipProcessor(image_processor=BlipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)),
        tokenizer=tokenizer)
    return BlipForQuestionAnswering(config), processor


def vqa_triples(data: list[Scene], seed: int) -> list[tuple[int, str, str, list[str]]]:
    """(scene index, question, answer, choices) for every probe question of every scene."""
    rng = np.random.default_rng(seed)
    return [(i, q["question"], q["answer"], q["choices"]) for i, s in enumerate(data) for q in probe_questions(s, rng)]


def vqa_loss(model, pixels, q_ids, q_mask, a_ids, a_mask, grounding: tuple | None = None):
    """Mean negative log-likelihood of the answer tokens after [DEC] — what the judge scores —
    plus, with `grounding` = `grounding_loss`'s targets and head, the grounding losses."""
    import torch

    image_embeds = model.vision_model(pixel_values=pixels)[0]
    image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    encoded = model.text_encoder(input_ids=q_ids, attention_mask=q_mask, encoder_hidden_states=image_embeds,
                                 encoder_attention_mask=image_mask, output_attentions=grounding is not None,
                                 return_dict=True)
    logits = model.text_decoder(input_ids=a_ids, attention_mask=a_mask, encoder_hidden_states=encoded.last_hidden_state,
                                encoder_attention_mask=q_mask, return_dict=True).logits
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    token = torch.gather(logp, 2, a_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = a_mask[:, 1:].float()
    loss = -(token * mask).sum() / mask.sum()
    if grounding is not None:
        loss = loss + grounding_loss(encoded, *grounding)
    return loss


PATCH_MIN_PIXELS = max(3, VQA_PATCH * VQA_PATCH // 16)


def _patches(image: np.ndarray) -> np.ndarray:
    """[IMAGE_SIZE, IMAGE_SIZE] → [grid², VQA_PATCH²] in the ViT's patch order (row by row)."""
    grid = IMAGE_SIZE // VQA_PATCH
    return image.reshape(grid, VQA_PATCH, grid, VQA_PATCH).transpose(0, 2, 1, 3).reshape(grid * grid, -1)


def patch_labels(scene: Scene) -> np.ndarray:
    """Which shape each ViT patch shows [grid²]: 0 background, else 1 + index in SHAPES. A patch
    counts as an object's once `PATCH_MIN_PIXELS` of its pixels are (objects never overlap)."""
    m = _patches(shape_mask(scene))
    counts = np.stack([(m == c).sum(1) for c in range(1, len(SHAPES) + 1)], 1)
    return np.where(counts.max(1) >= PATCH_MIN_PIXELS, counts.argmax(1) + 1, 0).astype(np.int64)


def centre_x(o: Obj) -> float:
    """An object's horizontal centre in [-1, 1] (left edge to right edge of the image)."""
    return 2.0 * o.cx / IMAGE_SIZE - 1.0


def patch_owners(scene: Scene, labels: np.ndarray) -> list[Obj | None]:
    """[grid²] the object each patch shows (None on background): of the objects with the patch's
    labelled shape (`labels` = `patch_labels(scene)`), the one whose box overlaps the patch most."""
    grid = IMAGE_SIZE // VQA_PATCH
    out: list[Obj | None] = [None] * (grid * grid)
    for p in np.nonzero(labels)[0]:
        r, c = divmod(int(p), grid)
        y0, x0 = r * VQA_PATCH, c * VQA_PATCH

        def overlap(o: Obj) -> int:
            return (max(0, min(x0 + VQA_PATCH, o.x + o.size) - max(x0, o.x))
                    * max(0, min(y0 + VQA_PATCH, o.y + o.size) - max(y0, o.y)))

        out[p] = max((o for o in scene.objects if SHAPES.index(o.shape) + 1 == labels[p]), key=overlap)
    return out


def patch_objects(scene: Scene, labels: np.ndarray) -> np.ndarray:
    """[grid², 2] per patch: its object's `centre_x` and colour index (NaN, NaN on background)."""
    return np.asarray([(np.nan, np.nan) if o is None else (centre_x(o), list(COLOURS).index(o.colour))
                       for o in patch_owners(scene, labels)], dtype=np.float32)


def shape_facts(scene: Scene) -> np.ndarray:
    """[len(SHAPES), 3] per shape: how many objects have it; its object's `centre_x` when it has
    exactly one (NaN otherwise); their colour index (the world draws a shape in one colour per
    scene; NaN when absent) — what a question's shape word is taught to read out."""
    out = np.full((len(SHAPES), 3), np.nan, dtype=np.float32)
    for k, shape in enumerate(SHAPES):
        objs = [o for o in scene.objects if o.shape == shape]
        out[k, 0] = len(objs)
        if len(objs) == 1:
            out[k, 1] = centre_x(objs[0])
        if objs:
            out[k, 2] = list(COLOURS).index(objs[0].colour)
    return out


OBJECT_PATCH_WEIGHT = 5.0  # object patches are ~1 in 8: unweighted, "background" everywhere is a cheap optimum
PRESENCE_WEIGHT = 3.0


def pretrain_vision(vision, recipe: JudgeRecipe, on_step: StepCallback | None = None):
    """Supervised warm-up of BLIP's ViT through throw-away linear heads: every patch token says
    which shape covers it and that object's centre and colour (so a question word can find its
    object by cross-attention and read where it is and its colour); the max over patches says
    which shapes are present; the pooled and mean tokens give colours, background and count. With
    the VQA loss alone the ViT learns colours and counts but not shapes in this budget."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(recipe.seed)
    data = draw_scenes(recipe.n_scenes, recipe.seed, 0.5)
    images = np.stack([render(s) for s in data])
    label_rows = [patch_labels(s) for s in data]
    labels = torch.from_numpy(np.stack(label_rows))
    objects = torch.from_numpy(np.stack([patch_objects(s, lab) for s, lab in zip(data, label_rows)]))  # centre, colour
    hidden, k = vision.config.hidden_size, len(SHAPES)
    heads = nn.ModuleDict({"shape": nn.Linear(hidden, k), "rest": nn.Linear(2 * hidden, len(COLOURS) + 3 + 3),
                           "patch_shape": nn.Linear(hidden, k + 1),
                           "patch_object": nn.Linear(hidden, 1 + len(COLOURS))})
    both = nn.ModuleDict({"vision": vision, "heads": heads})
    class_weight = torch.tensor([1.0] + [OBJECT_PATCH_WEIGHT] * k)
    rng, gen = np.random.default_rng(recipe.seed), torch.Generator().manual_seed(recipe.seed)

    def batch_loss(step: int):
        idx = rng.integers(0, len(data), recipe.batch_size)
        batch = [data[i] for i in idx]
        out = vision(pixel_values=normalise(augment(to_unit_tensor(images[idx]), gen)))
        patches = out.last_hidden_state[:, 1:]
        multi, bg, count = _scene_targets(batch)
        rest = heads["rest"](torch.cat([out.pooler_output, patches.mean(1)], dim=1))
        on_object = ~objects[idx, :, 0].isnan()
        target = objects[idx][on_object]
        read = heads["patch_object"](patches)[on_object]
        return (PRESENCE_WEIGHT * F.binary_cross_entropy_with_logits(heads["shape"](patches.amax(1)), multi[:, :k])
                + F.binary_cross_entropy_with_logits(rest[:, :len(COLOURS)], multi[:, k:])
                + F.cross_entropy(rest[:, len(COLOURS):len(COLOURS) + 3], bg)
                + F.cross_entropy(rest[:, len(COLOURS) + 3:], count)
                + F.cross_entropy(heads["patch_shape"](patches).flatten(0, 1), labels[idx].flatten(),
                                  weight=class_weight)
                + F.mse_loss(read[:, 0], target[:, 0]) + F.cross_entropy(read[:, 1:], target[:, 1].long()))

    fit(both, recipe, batch_loss, on_step)
    return vision


def shape_word_targets(tokenizer, input_ids):
    """[N, L] label of the shape each question token names (1 + index in SHAPES), 0 elsewhere."""
    import torch

    out = torch.zeros_like(input_ids)
    for i, shape in enumerate(SHAPES):
        for word in (shape, PLURAL[shape]):
            out[input_ids == tokenizer.convert_tokens_to_ids(word)] = i + 1
    return out


COUNT_CLASSES = 4  # a scene holds 0–3 objects of a shape
# a shape word's read-out: its object's centre, how many there are, their colour
GROUNDING_READOUT = 1 + COUNT_CLASSES + len(COLOURS)


def grounding_loss(encoded, word_shapes, image_patch_labels, facts, readout, heads: int = 2):
    """Auxiliary losses that teach the text encoder where a question's shape word points.
    (1) On the first question-to-image cross-attention, in its first `heads` heads, a word naming
    a shape looks at that shape's patches, or at the CLS token when the image has none.
    (2) The word's final state reads out (linear `readout`, `GROUNDING_READOUT` outputs) how many
    objects of its shape there are — 0 is the "absent" that presence questions ask — their colour,
    and, when there is one, its centre (`shape_facts`), which left/right questions compare. Without
    the centre read-out left/right questions stayed at chance in every recipe tried, and without
    the colour read-out a pair's colours were confused (docs/benchmarks.md)."""
    import torch
    import torch.nn.functional as F

    att = encoded.cross_attentions[0][:, :heads].mean(1)  # [B, L, 1 + patches]
    cls = torch.full_like(image_patch_labels[:, :1], -1)
    keys = torch.cat([cls, image_patch_labels], 1).unsqueeze(1).expand(-1, word_shapes.shape[1], -1).clone()
    on_patch = keys[:, :, 1:] == word_shapes.unsqueeze(2)  # [B, L, patches]
    keys[:, :, 0] = torch.where(on_patch.any(-1), torch.full_like(word_shapes, -1), word_shapes)
    target = (keys == word_shapes.unsqueeze(2)) & (word_shapes.unsqueeze(2) > 0)
    named = word_shapes > 0
    if not bool(named.any()):
        return att.sum() * 0
    loss = -((att * target).sum(-1)[named] + 1e-6).log().mean()
    word_facts = torch.gather(facts, 1, (word_shapes.clamp(min=1) - 1).unsqueeze(-1).expand(-1, -1, 3))  # [B, L, 3]
    read = readout(encoded.last_hidden_state)  # [B, L, GROUNDING_READOUT]
    counts, colours = read[..., 1:1 + COUNT_CLASSES], read[..., 1 + COUNT_CLASSES:]
    loss = loss + F.cross_entropy(counts[named], word_facts[..., 0][named].long())
    present = named & ~word_facts[..., 2].isnan()
    if bool(present.any()):
        loss = loss + F.cross_entropy(colours[present], word_facts[..., 2][present].long())
    placed = named & ~word_facts[..., 1].isnan()
    if bool(placed.any()):
        loss = loss + F.mse_loss(read[..., 0][placed], word_facts[..., 1][placed])
    return loss


def train_vqa(folder: Path, recipe: JudgeRecipe = VQA, on_step: StepCallback | None = None,
              pretrain: JudgeRecipe | None = VQA_VISION_PRETRAIN, on_pretrain_step: StepCallback | None = None):
    import torch
    from torch import nn

    torch.manual_seed(recipe.seed)
    model, processor = build_vqa(folder)
    if pretrain is not None:  # then the warmed-up ViT stays fixed while the text towers learn
        pretrain_vision(model.vision_model, pretrain, on_pretrain_step).requires_grad_(False)
    tok = processor.tokenizer
    data = draw_scenes(recipe.n_scenes, recipe.seed, 0.25)
    images = np.stack([render(s) for s in data])
    labels = torch.from_numpy(np.stack([patch_labels(s) for s in data]))
    facts = torch.from_numpy(np.stack([shape_facts(s) for s in data]))
    triples = vqa_triples(data, recipe.seed)
    scene_of = np.asarray([t[0] for t in triples])
    readout = nn.Linear(model.config.text_config.hidden_size, GROUNDING_READOUT)  # thrown away after training
    q = tok([t[1] for t in triples], padding=True, return_tensors="pt")
    words = shape_word_targets(tok, q.input_ids)
    dec, sep = model.config.text_config.bos_token_id, tok.sep_token_id
    answers = torch.tensor([[dec, tok.convert_tokens_to_ids(t[2]), sep] for t in triples])
    rng, gen = np.random.default_rng(recipe.seed), torch.Generator().manual_seed(recipe.seed)

    def batch_loss(step: int):
        idx = rng.integers(0, len(triples), recipe.batch_size)
        pixels = normalise(augment(to_unit_tensor(images[scene_of[idx]]), gen))
        return vqa_loss(model, pixels, q.input_ids[idx], q.attention_mask[idx], answers[idx],
                        torch.ones_like(answers[idx]),
                        grounding=(words[idx], labels[scene_of[idx]], facts[scene_of[idx]], readout))

    fit(nn.ModuleDict({"blip": model, "readout": readout}), recipe, batch_loss, on_step, max_grad_norm=1.0)
    return model.eval(), processor
