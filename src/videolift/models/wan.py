"""Wan 2.1 (T2V-1.3B / 14B) and Wan 2.2 TI2V-5B (diffusers format) through diffusers: sampling defaults
and training loss.

Wan is a flow-matching model: its noising, timesteps and velocity loss are ``FlowMatchingSpec``'s,
with the shift of Wan's own scheduler (``flow_shift``) so that training covers the noise levels the
sampler visits, as Wan fine-tuning code does. Latents are normalised per channel with the VAE's
``latents_mean`` / ``latents_std`` (what the pipeline undoes before decoding) and laid out
(B, C, F, h, w), as the transformer takes them.

Wan 2.2 TI2V-5B is the same ``WanPipeline`` with one transformer, a VAE of 48 channels that patchifies
frames 2x2 itself (16x spatial compression in all, read from its config like 2.1's 8x) and
``expand_timesteps``: the pipeline gives the transformer one timestep per latent token, (B, tokens), which
for text-to-video are all the step's. Training passes the same layout, every token at the sample's noise
level (image-to-video would hold the first frame's tokens at 0; videolift trains text-to-video).

Wan 2.2 A14B is the same pipeline with two experts: ``transformer`` denoises the steps whose timestep
(sigma' * 1000, after the shift) is at least ``boundary_ratio * num_train_timesteps``, ``transformer_2`` the
rest. A run trains one of them (``--expert high|low``) at the trainer's integer t whose shifted timestep
that expert would see while sampling; the other stays as loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from videolift.core.errors import OptionError, VideoliftError
from videolift.core.jsonl import read_json
from videolift.models.base import SamplerSettings, fill_size
from videolift.models.flow import FlowMatchingSpec

# Wan 2.2 TI2V-5B's 720p sampling (diffusers' and Wan-AI's examples): 121 frames of 704x1280 at 24 fps.
TI2V_SIZE, TI2V_FPS = (121, 704, 1280), 24


# --expert: the pipeline component each of Wan 2.2 A14B's experts is.
EXPERTS = {"high": "transformer", "low": "transformer_2"}
# Wan-AI's guidance for A14B text-to-video: the high-noise expert's, the low-noise one's (guidance_scale_2).
A14B_GUIDANCES = 4.0, 3.0


def has_experts(config: Any) -> bool:
    """A pipeline config or model_index.json of a two-expert pipeline: a ``transformer_2`` and the boundary
    that routes timesteps to it (without one the pipeline never calls it)."""
    second = config.get("transformer_2")
    return config.get("boundary_ratio") is not None and bool(second) and second[0] is not None


def per_token_timesteps(pipe: Any) -> bool:
    """Wan 2.2 TI2V-5B: the transformer is conditioned on a timestep for each latent token."""
    return bool(pipe.config.get("expand_timesteps"))


class WanSpec(FlowMatchingSpec):
    family = "wan"
    name = "Wan"  # for messages: 2.1 and 2.2 alike (the rules they state hold for both)
    pipeline_class = "WanPipeline"
    default_max_sequence_length = 512  # WanPipeline's own default
    # Wan 2.1's recommended 480p sampling (the pipeline's defaults); no per-checkpoint size is stored.
    default_size = (81, 480, 832)
    default_guidance, default_fps = 5.0, 16  # diffusers' Wan 2.1 examples (also Wan 2.2 TI2V-5B's guidance)
    fp32_components = ("vae",)  # as diffusers' Wan examples load it: bf16 decoding costs detail

    def default_sampling(
        self, pipe: Any, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        own = TI2V_SIZE if pipe is not None and per_token_timesteps(pipe) else self.default_size
        return fill_size(own, frames, height, width)

    def own_sampling(
        self, model: str, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int] | None:
        """From ``model_index.json`` (does the pipeline expand timesteps?); a Hub id: Wan 2.1's."""
        try:
            # diffusers' file, read as diffusers reads it (a repeated key's last value)
            index = read_json(Path(model).expanduser() / "model_index.json", last_of_repeated_keys=True)
        except (OSError, ValueError, VideoliftError):
            index = {}
        expands = isinstance(index, dict) and bool(index.get("expand_timesteps"))
        return fill_size(TI2V_SIZE if expands else self.default_size, frames, height, width)

    def fps(self, pipe: Any) -> int:
        return TI2V_FPS if per_token_timesteps(pipe) else self.default_fps

    def spatial_patch(self, pipe: Any) -> int:
        return int(pipe.transformer.config.patch_size[1])

    def two_experts(self, config: Any) -> bool:
        return has_experts(config)

    def guidances(self, pipe: Any) -> tuple[float, float | None]:
        return A14B_GUIDANCES if has_experts(pipe.config) else super().guidances(pipe)

    def sampling_kwargs(self, settings: SamplerSettings) -> dict[str, Any]:
        return {} if settings.guidance_2 is None else {"guidance_scale_2": settings.guidance_2}

    def check_trainable(self, pipe: Any) -> None:
        two = pipe.transformer is not None and getattr(pipe, "transformer_2", None) is not None
        if two != (pipe.config.get("boundary_ratio") is not None):
            raise VideoliftError(
                "this WanPipeline has transformer_2 without boundary_ratio, or the other way round (or no "
                "transformer): videolift aligns one transformer (Wan 2.1, Wan 2.2 TI2V-5B) or two experts split "
                "by boundary_ratio (Wan 2.2 A14B)"
            )

    def trained_component(self, config: Any, expert: str | None) -> str:
        if not has_experts(config):
            return super().trained_component(config, expert)
        if expert is None:
            raise OptionError(
                "--expert is required: this Wan 2.2 pipeline has two experts (transformer for high noise, "
                "transformer_2 for low noise) and a run trains one of them (docs/align.md)"
            )
        return EXPERTS[expert]

    def frozen_experts(self, expert: str | None) -> tuple[str, ...]:
        return tuple(component for name, component in EXPERTS.items() if expert not in (None, name))

    def timestep_range(self, pipe: Any, expert: str | None) -> tuple[int, int]:
        """The integer t whose shifted timestep the expert would denoise while sampling: high, those at
        or above the boundary (WanPipeline: ``t >= boundary_ratio * num_train_timesteps``), low the rest.
        Found on the timesteps as training feeds them (the scheduler grid's float32 sigma' * N), so no t
        straddles it: high trains exactly the grid's timesteps >= the boundary (sigma' = 1 among them)."""
        n = int(pipe.scheduler.config.num_train_timesteps)
        if expert is None:
            return 0, n
        fed = self.sigmas(pipe, torch.arange(n), torch.float32) * n  # nondecreasing in t
        high = (fed >= pipe.config.boundary_ratio * n).nonzero()
        first_high = int(high[0]) if len(high) else n
        return (first_high, n) if expert == "high" else (0, first_high)

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
    def token_timesteps(pipe: Any, noisy: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """(B,) timesteps spread over the latent tokens, (B, tokens), as ``expand_timesteps`` pipelines pass
        them: one per transformer patch (WanPipeline strides its mask by 2, TI2V-5B's patch of 1x2x2)."""
        pt, ph, pw = pipe.transformer.config.patch_size
        tokens = (noisy.shape[2] // pt) * (noisy.shape[3] // ph) * (noisy.shape[4] // pw)
        return timestep[:, None].expand(-1, tokens)

    def velocity(
        self, pipe: Any, transformer: Any, noisy: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        if per_token_timesteps(pipe):
            timestep = self.token_timesteps(pipe, noisy, timestep)
        return transformer(
            hidden_states=noisy, timestep=timestep, encoder_hidden_states=text, return_dict=False
        )[0]
