"""A word-level CLIPTokenizer for the world, written as ordinary vocab.json + merges.txt.

CLIP's byte-level BPE with merges chosen so that every world word is one token (as real CLIP's
vocabulary makes common words); any other text still encodes, character by character.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..demo.tiny import bytes_to_unicode
from .scenes import word_vocabulary

MAX_LENGTH = 24  # longest caption is 16 tokens with <|startoftext|> and <|endoftext|>


def _merges_for(words: list[str]) -> list[tuple[str, str]]:
    """Left-to-right merges building each word from its characters (the last one with </w>)."""
    merges: list[tuple[str, str]] = []
    seen = set()
    for w in words:
        pieces = list(w[:-1]) + [w[-1] + "</w>"]
        acc = pieces[0]
        for p in pieces[1:]:
            if (acc, p) not in seen:
                seen.add((acc, p))
                merges.append((acc, p))
            acc = acc + p
    return merges


def _write(folder: Path, merges: list[tuple[str, str]]):
    from transformers import CLIPTokenizer

    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return CLIPTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"),
                         model_max_length=MAX_LENGTH, pad_token="<|endoftext|>")


def write_world_tokenizer(folder: Path) -> Path:
    """Write vocab.json, merges.txt and the tokenizer config; returns the folder.

    BPE applies merges by rank, so one word's merges can pre-empt another's; merges joining the
    first two pieces of any word still split are appended until every word is one token."""
    folder.mkdir(parents=True, exist_ok=True)
    words = word_vocabulary()
    merges = _merges_for(words)
    for _ in range(50):
        tok = _write(folder, merges)
        split = [tok.tokenize(w) for w in words]
        split = [p for p in split if len(p) > 1]
        if not split:
            tok.save_pretrained(folder)
            return folder
        merges += list(dict.fromkeys((p[0], p[1]) for p in split))
    raise RuntimeError(f"world tokenizer still splits {split}")


def load_world_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder))
