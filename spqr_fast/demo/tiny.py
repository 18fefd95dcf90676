"""Tiny models of the real classes, built in code from fixed seeds (no download).

Used by the tests and the benchmarks (the embedded default is the trained world,
`spqr_fast/world`): a Stable-Diffusion-architecture pipeline
(`UNet2DConditionModel`, `AutoencoderKL`, `CLIPTextModel` + `CLIPTokenizer`), a tiny CLIP for
CLIPScore. The tokenizer is byte-level BPE with no merges: every character is a token.
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZER_MAX_LENGTH = 77
TEXT_DIM = 32


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_tokenizer_files(folder: Path) -> Path:
    """vocab.json (the 512 byte symbols with and without </w>, plus the special tokens) and an
    empty merges.txt — a CLIPTokenizer that works fully offline."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder)
    return CLIPTokenizer(
        vocab_file=str(folder / "vocab.json"),
        merges_file=str(folder / "merges.txt"),
        model_max_length=TOKENIZER_MAX_LENGTH,
        pad_token="<|endoftext|>",
    )


def _text_config_kwargs(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TOKENIZER_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_sd_pipeline(seed: int, work_dir: Path, image_size: int = 64):
    """A StableDiffusionPipeline with the SD 1.x architecture at toy size (random weights)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer(work_dir / "tokenizer-src")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=image_size // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        # no attention at full latent resolution: 4x faster on a CPU, still SD's block classes
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=image_size,
        norm_num_groups=32,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config_kwargs(tokenizer)))
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
        set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000,
    )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _vqa_vocabulary(texts: list[str]) -> list[str]:
    """WordPiece vocabulary for a tiny BLIP: BERT's special tokens, BLIP's [DEC], every word
    of the given texts, and single letters and digits (so no text is all [UNK])."""
    import re

    words = {w for t in texts for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", t.lower())}
    singles = set("abcdefghijklmnopqrstuvwxyz0123456789?.,'")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + sorted((words | singles) - {"[DEC]"})


def build_tiny_blip(seed: int, out_dir: Path, texts: list[str]) -> Path:
    """A tiny BlipForQuestionAnswering + BlipProcessor (random weights) saved as a folder."""
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor,
                              BlipProcessor)

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = _vqa_vocabulary(texts + ["yes", "no"])
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True, bos_token="[DEC]")
    torch.manual_seed(seed)
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                         bos_token_id=vocab.index("[DEC]"), pad_token_id=0, sep_token_id=vocab.index("[SEP]")),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
    )
    BlipForQuestionAnswering(config).eval().save_pretrained(out_dir)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    processor.save_pretrained(out_dir)
    return out_dir
