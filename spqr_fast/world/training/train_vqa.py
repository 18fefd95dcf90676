"""The world's VQA judge (a tiny BLIP): vocabulary, grounding targets per image patch, vision
pre-training and the question-answering training that got it past 0.9 held out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..scenes import COLOURS, IMAGE_SIZE, PLURAL, SHAPES, Obj, Scene, draw_scenes, probe_questions, render, shape_mask
from .train_judges import scene_targets, CLIP_MEAN, CLIP_STD, JudgeRecipe, StepCallback, VQA, VQA_PATCH, VQA_VISION_PRETRAIN, augment, fit, normalise, to_unit_tensor


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
        multi, bg, count = scene_targets(batch)
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
