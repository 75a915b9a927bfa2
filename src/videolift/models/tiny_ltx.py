"""Tiny LTX-Video pipelines built from configs (no download), for tests.

Same diffusers classes as Lightricks/LTX-Video 0.9.x (AutoencoderKLLTXVideo, LTXVideoTransformer3DModel,
T5EncoderModel, FlowMatchEulerDiscreteScheduler with LTX's dynamic shifting), at the sizes of diffusers'
own LTX tests, saved as a standard pipeline directory that ``LTXPipeline.from_pretrained`` loads. The
VAE compresses 4x in time and space (LTX's: 8x and 32x) and, as from 0.9.1, conditions decoding on a
timestep; its latent statistics are not 0 / 1, so tests see the normalisation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from videolift.models.tiny_cogvideox import DEFAULT_WORDS, build_tokenizer, t5_sizes


def build_tiny_ltx(
    out_dir: str | Path | None = None,
    seed: int = 0,
    *,
    text_dim: int = 32,
    layers: int = 2,
    heads: int = 2,
    head_dim: int = 16,
    vae_dim: int = 8,
    latent_channels: int = 8,
):
    """Build (and, with ``out_dir``, save) a randomly initialised tiny LTXPipeline (defaults: ~53K
    transformer parameters)."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(list(DEFAULT_WORDS))
    blocks, scaling = (vae_dim,) * 4, (True, True, False, False)
    vae = AutoencoderKLLTXVideo(
        latent_channels=latent_channels,
        block_out_channels=blocks,
        decoder_block_out_channels=blocks,
        layers_per_block=(1,) * 5,
        decoder_layers_per_block=(1,) * 5,
        spatio_temporal_scaling=scaling,
        decoder_spatio_temporal_scaling=scaling,
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=True,
        patch_size=1,
        patch_size_t=1,
    )
    with torch.no_grad():  # buffers, saved with the weights (LTX 0.9.1's carry its statistics so)
        vae.latents_mean.copy_(torch.tensor([0.1 * ((-1) ** i) * (i % 4) for i in range(latent_channels)]))
        vae.latents_std.copy_(torch.tensor([(1.5, 0.8, 1.0, 2.0)[i % 4] for i in range(latent_channels)]))
    transformer = LTXVideoTransformer3DModel(
        in_channels=latent_channels,
        out_channels=latent_channels,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        cross_attention_dim=heads * head_dim,
        num_layers=layers,
        caption_channels=text_dim,
    )
    text_encoder = T5EncoderModel(T5Config(**t5_sizes(tokenizer, text_dim)))
    # Lightricks/LTX-Video's scheduler config: its shift grows with the video's token count.
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    pipe = LTXPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
    if out_dir is not None:
        pipe.save_pretrained(Path(out_dir))
    return pipe
