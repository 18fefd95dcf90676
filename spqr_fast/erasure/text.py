"""Token embeddings of prompts, as the UNet's cross-attention sees them."""

from __future__ import annotations


def prompt_embeddings(pipe, prompts: list[str]):
    """(embeddings [N, L, D], attention masks [N, L]) padded to the tokenizer's max length."""
    import torch

    tok = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    with torch.no_grad():
        emb = pipe.text_encoder(tok.input_ids.to(pipe.text_encoder.device))[0].float().cpu()
    return emb, tok.attention_mask
