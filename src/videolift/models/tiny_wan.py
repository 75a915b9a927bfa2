"""Tiny Wan 2.1 and Wan 2.2 TI2V-5B-style pipelines built from configs (no download), for tests.

Same diffusers classes as Wan2.1-T2V-1.3B-Diffusers (AutoencoderKLWan, WanTransformer3DModel,
UMT5EncoderModel, UniPCMultistepScheduler with flow sigmas), saved as a standard pipeline directory
that ``WanPipeline.from_pretrained`` loads. The VAE compresses 4x in time and 8x in space, as Wan's.
``wan22=True`` builds Wan2.2-TI2V-5B-Diffusers' layout instead: a residual VAE that patchifies frames 2x2
before its three downsamplings (16x in space, 12 input channels), per-token timesteps
(``expand_timesteps``) and TI2V-5B's flow_shift 5. ``experts=True`` builds Wan2.2-T2V-A14B-Diffusers'
layout: the 2.1 VAE and two transformers of one config, ``transformer`` for high noise and ``transformer_2``
(other weights) for low noise, split at ``boundary_ratio`` 0.875.
"""

from __future__ import annotations

from pathlib import Path

import torch

from videolift.models.tiny_cogvideox import DEFAULT_WORDS, build_tokenizer, t5_sizes


def build_tiny_wan(
    out_dir: str | Path | None = None,
    seed: int = 0,
    *,
    text_dim: int = 32,
    layers: int = 2,
    heads: int = 2,
    head_dim: int = 16,
    ffn_dim: int = 32,
    vae_dim: int = 8,
    z_dim: int | None = None,
    wan22: bool = False,
    experts: bool = False,
):
    """Build (and, with ``out_dir``, save) a randomly initialised tiny WanPipeline (defaults: ~34K
    transformer parameters); ``wan22``: a Wan 2.2 TI2V-5B-style one; ``experts``: a Wan 2.2 A14B-style one (two
    transformers). ``z_dim`` unset: 4, or 8 for TI2V."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(list(DEFAULT_WORDS))
    z_dim = z_dim or (8 if wan22 else 4)
    # Wan 2.2's VAE: pixels patchified 2x2 (3 -> 12 channels) on top of the 8x of its blocks.
    vae22 = dict(is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16)
    vae = AutoencoderKLWan(
        base_dim=vae_dim,
        z_dim=z_dim,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        **(vae22 if wan22 else {}),
        # not 0 / 1, so tests see the normalisation
        latents_mean=[0.1 * ((-1) ** i) * (i % 4) for i in range(z_dim)],
        latents_std=[(1.5, 0.8, 1.0, 2.0)[i % 4] for i in range(z_dim)],
    )
    sizes = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=z_dim,
        out_channels=z_dim,
        text_dim=text_dim,
        freq_dim=32,
        ffn_dim=ffn_dim,
        num_layers=layers,
        rope_max_seq_len=32,
    )
    transformer = WanTransformer3DModel(**sizes)
    transformer_2 = WanTransformer3DModel(**sizes) if experts else None  # drawn after: other weights
    text_encoder = UMT5EncoderModel(UMT5Config(**t5_sizes(tokenizer, text_dim)))
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=5.0 if wan22 else 3.0,
        num_train_timesteps=1000,
    )
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
        expand_timesteps=wan22,
        **(dict(transformer_2=transformer_2, boundary_ratio=0.875) if experts else {}),
    )
    if out_dir is not None:
        pipe.save_pretrained(Path(out_dir))
    return pipe
