"""Tiny CogVideoX pipelines built from configs (no download), for tests and the toy world.

Same diffusers classes as the real model (AutoencoderKLCogVideoX, CogVideoXTransformer3DModel,
T5EncoderModel + T5 tokenizer, CogVideoXDDIMScheduler), saved as a standard pipeline directory that
``CogVideoXPipeline.from_pretrained`` loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

# Words of the toy world and of typical prompts; other words fall back to letters.
DEFAULT_WORDS = (
    "a an the two one of and with in on over under at across to from its is are there red "
    "green blue yellow purple orange white black pink brown gray cyan magenta circle circles "
    "square squares triangle triangles star stars shape shapes moves move moving left right up "
    "down bounces bounce grows grow shrinks shrink circles around spins grass field sand "
    "desert night sky ocean water snow room city street forest beach person people man woman "
    "dog cat bird horse panda piano bubble running walking dancing playing "
).split()


@dataclass
class TinyCogVideoXConfig:
    """Sizes of a tiny CogVideoX. Defaults match diffusers' own test shapes (fast, ~100K params)."""

    vae_channels: tuple[int, ...] = (8, 8, 8, 8)  # len n -> spatial compression 2**(n-1)
    latent_channels: int = 4
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 2
    layers: int = 2
    heads: int = 2
    head_dim: int = 16
    time_embed_dim: int = 16
    text_dim: int = 32
    text_layers: int = 2
    text_heads: int = 2
    max_text_len: int = 16
    sample_frames: int = 9
    sample_height: int = 64
    sample_width: int = 64
    patch_size: int = 2
    # CogVideoX 1.5 layout: also patch across latent frames (needs rotary position embeddings).
    patch_size_t: int | None = None
    rotary: bool = False
    temporal_compression: int = 4  # 1: one latent frame per frame (CogVideoX itself uses 4)
    scaling_factor: float = 1.0
    words: list[str] = field(default_factory=lambda: list(DEFAULT_WORDS))


def build_tokenizer(words: list[str]):
    """A T5 tokenizer from a word list: whole words first, then single characters as fallback.

    ``T5Tokenizer(vocab=[(piece, score), ...])`` builds it offline (``vocab_file=`` would be ignored).
    """
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    seen = {p for p, _ in pieces}
    for w in words:
        if (piece := "\u2581" + w.lower()) not in seen:
            pieces.append((piece, -1.0))
            seen.add(piece)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,'-":
        if ch not in seen:
            pieces.append((ch, -6.0))
            seen.add(ch)
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def t5_sizes(tokenizer, dim: int, layers: int = 2, heads: int = 2) -> dict:
    """The config of a tiny T5 (or UMT5) encoder over ``tokenizer``'s vocabulary."""
    return dict(
        vocab_size=len(tokenizer),
        d_model=dim,
        d_kv=dim // heads,
        d_ff=dim * 2,
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def build_tiny_cogvideox(
    out_dir: str | Path | None = None, config: TinyCogVideoXConfig | None = None, seed: int = 0
):
    """Build (and, with ``out_dir``, save) a randomly initialised tiny CogVideoXPipeline."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    cfg = config or TinyCogVideoXConfig()
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(cfg.words)
    n = len(cfg.vae_channels)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * n,
        up_block_types=("CogVideoXUpBlock3D",) * n,
        block_out_channels=tuple(cfg.vae_channels),
        latent_channels=cfg.latent_channels,
        layers_per_block=cfg.vae_layers_per_block,
        norm_num_groups=cfg.vae_norm_groups,
        temporal_compression_ratio=cfg.temporal_compression,
        sample_height=cfg.sample_height,
        sample_width=cfg.sample_width,
        scaling_factor=cfg.scaling_factor,
    )
    spatial = 2 ** (n - 1)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=cfg.heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        time_embed_dim=cfg.time_embed_dim,
        text_embed_dim=cfg.text_dim,
        num_layers=cfg.layers,
        sample_width=cfg.sample_width // spatial,
        sample_height=cfg.sample_height // spatial,
        sample_frames=cfg.sample_frames,
        patch_size=cfg.patch_size,
        patch_size_t=cfg.patch_size_t,
        use_rotary_positional_embeddings=cfg.rotary or cfg.patch_size_t is not None,
        temporal_compression_ratio=cfg.temporal_compression,
        max_text_seq_length=cfg.max_text_len,
    )
    text_encoder = T5EncoderModel(
        T5Config(**t5_sizes(tokenizer, cfg.text_dim, cfg.text_layers, cfg.text_heads))
    )
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        snr_shift_scale=1.0,
        clip_sample=False,
        set_alpha_to_one=True,
    )
    pipe = CogVideoXPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
        pipe.save_pretrained(out_dir)
        (out_dir / "videolift_tiny.json").write_text(__import__("json").dumps(asdict(cfg), indent=1))
    return pipe
