"""Wan 2.1 (T2V-1.3B / 14B, diffusers format) through diffusers: sampling defaults and training loss.

Wan is a flow-matching model: its noising, timesteps and velocity loss are ``FlowMatchingSpec``'s,
with the shift of Wan's own scheduler (``flow_shift``) so that training covers the noise levels the
sampler visits, as Wan fine-tuning code does. Latents are normalised per channel with the VAE's
``latents_mean`` / ``latents_std`` (what the pipeline undoes before decoding) and laid out
(B, C, F, h, w), as the transformer takes them.
"""

from __future__ import annotations

from typing import Any

import torch

from videolift.core.errors import VideoliftError
from videolift.models.flow import FlowMatchingSpec


class WanSpec(FlowMatchingSpec):
    family = "wan"
    name = "Wan 2.1"
    pipeline_class = "WanPipeline"
    default_max_sequence_length = 512  # WanPipeline's own default
    # Wan 2.1's recommended 480p sampling (the pipeline's defaults); no per-checkpoint size is stored.
    default_size = (81, 480, 832)
    default_guidance, default_fps = 5.0, 16  # diffusers' Wan 2.1 examples
    fp32_components = ("vae",)  # as diffusers' Wan examples load it: bf16 decoding costs detail

    def spatial_patch(self, pipe: Any) -> int:
        return int(pipe.transformer.config.patch_size[1])

    def check_trainable(self, pipe: Any) -> None:
        if getattr(pipe, "transformer_2", None) is not None or pipe.config.get("expand_timesteps"):
            raise VideoliftError(
                "Wan 2.2 pipelines (two experts, or per-token timesteps) can generate but not be "
                "aligned yet: videolift trains Wan 2.1 checkpoints"
            )

    @staticmethod
    def _latent_stats(pipe: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = pipe.vae.config
        shape = (1, cfg.z_dim, 1, 1, 1)
        mean = torch.tensor(cfg.latents_mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(cfg.latents_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def sample_latents(
        self, pipe: Any, parameters: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        latents = self.draw(parameters, generator)
        mean, std = self._latent_stats(pipe, latents)
        return (latents - mean) / std

    def velocity(
        self, pipe: Any, transformer: Any, noisy: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        return transformer(
            hidden_states=noisy, timestep=timestep, encoder_hidden_states=text, return_dict=False
        )[0]
