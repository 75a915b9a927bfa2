"""Wan 2.1 (T2V-1.3B / 14B, diffusers format) through diffusers: sampling defaults and training loss.

Wan is a flow-matching model: x_t = (1 - sigma) x0 + sigma * noise, and the transformer predicts the
velocity noise - x0 at timestep sigma * 1000. The loss is the plain mean squared error of that
prediction. The trainer's integer timestep t in [0, N) becomes sigma = t / N, then the scheduler's
own shift (``flow_shift`` / ``shift``: sigma' = s*sigma / (1 + (s - 1)*sigma)) so that training
covers the noise levels the sampler visits, as Wan fine-tuning code does. Latents are normalised
per channel with the VAE's ``latents_mean`` / ``latents_std`` (what the pipeline undoes before
decoding) and laid out (B, C, F, h, w).
"""

from __future__ import annotations

from typing import Any

import torch

from videolift.core.errors import VideoliftError
from videolift.models.base import DiffusersT2VSpec, SamplerSettings


class WanSpec(DiffusersT2VSpec):
    family = "wan"
    name = "Wan 2.1"
    pipeline_class = "WanPipeline"
    default_max_sequence_length = 512  # WanPipeline's own default
    # Wan 2.1's recommended 480p sampling (the pipeline's defaults); no per-checkpoint size is stored.
    default_size = (81, 480, 832)
    default_guidance, default_fps = 5.0, 16  # diffusers' Wan 2.1 examples
    fp32_components = ("vae",)  # as diffusers' Wan examples load it: bf16 decoding costs detail

    def default_sampling(
        self, pipe: Any, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        f, h, w = self.default_size
        return (
            f if frames is None else frames,
            h if height is None else height,
            w if width is None else width,
        )

    def own_sampling(
        self, model: str, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        return self.default_sampling(None, frames, height, width)

    def check_sampling(self, pipe: Any, settings: SamplerSettings) -> None:
        if settings.dynamic_cfg:
            raise VideoliftError("--dynamic-cfg is CogVideoX's; WanPipeline has no dynamic guidance")
        super().check_sampling(pipe, settings)

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

    @staticmethod
    def shift(scheduler: Any) -> float:
        cfg = scheduler.config
        if cfg.get("use_flow_sigmas") and cfg.get("flow_shift") is not None:  # UniPC / DPM (Wan's own)
            return float(cfg["flow_shift"])
        return float(cfg.get("shift", 1.0) or 1.0)  # FlowMatchEulerDiscreteScheduler

    def sigmas(self, pipe: Any, timesteps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """sigma in [0, 1) of integer timesteps, shifted as the pipeline's scheduler shifts them."""
        sigma = timesteps.to(torch.float64) / pipe.scheduler.config.num_train_timesteps
        s = self.shift(pipe.scheduler)
        return (s * sigma / (1 + (s - 1) * sigma)).to(dtype)

    def training_loss(
        self,
        pipe: Any,
        transformer: Any,
        latents: torch.Tensor,
        text: torch.Tensor,
        *,
        timesteps: torch.Tensor,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        latents, noise = latents.float(), noise.float()  # noised in fp32 whatever the model's dtype
        sigma = self.sigmas(pipe, timesteps, torch.float32)  # the timestep too: bf16 is off by up to 2
        s = sigma.view(-1, 1, 1, 1, 1)
        noisy = (1 - s) * latents + s * noise
        pred = transformer(
            hidden_states=noisy.to(text.dtype),
            timestep=sigma * pipe.scheduler.config.num_train_timesteps,
            encoder_hidden_states=text,
            return_dict=False,
        )[0]
        target = noise - latents
        return ((pred.float() - target) ** 2).flatten(1).mean(dim=1)
