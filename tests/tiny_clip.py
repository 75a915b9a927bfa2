"""A tiny random CLIP (transformers' CLIPModel and CLIPProcessor) that loads offline, for `eval --clip`."""

from __future__ import annotations

from pathlib import Path


def build_tiny_clip(out: Path) -> Path:
    """A random CLIPModel (hidden 32, 2 layers, 32x32 images in 8x8 patches) and a CLIPProcessor whose
    tokenizer is built from a vocabulary (every byte, alone and word-final), saved to ``out``."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *alphabet, *[a + "</w>" for a in alphabet]]:
        vocab.setdefault(token, len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    layers = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
    text = dict(layers, vocab_size=len(tokenizer), max_position_embeddings=77,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    config = CLIPConfig(
        text_config=text, vision_config=dict(layers, image_size=32, patch_size=8), projection_dim=16
    )
    CLIPModel(config).save_pretrained(out)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out
