"""LTX-Video (Lightricks' 0.9.x ``LTXPipeline`` checkpoints, diffusers format): sampling defaults and
training loss.

LTX-Video is a flow-matching model: noising, timesteps and the velocity loss are ``FlowMatchingSpec``'s.
Its scheduler's static ``shift`` is 1 (the sampler's shift is dynamic, by sequence length), so training
draws sigma uniformly, as finetrainers trains LTX-Video. Latents are normalised per channel with the
VAE's ``latents_mean`` / ``latents_std`` buffers and ``scaling_factor`` (the inverse of what the pipeline
does before decoding) and kept (B, C, F, h, w); the loss packs them into the transformer's token
sequence, which needs the latent grid's size for the rotary positions. Those are scaled, as the pipeline
scales them, by the frame rate the model is conditioned on (25, LTX's and finetrainers').

The transformer masks the text's padding tokens. The text cache holds one (L, D) tensor a prompt, so the
mask travels in it: padding rows are zeroed (which changes nothing behind the mask, and lets the cache
store only the prompt's rows, as for Wan) and the mask is read back as the non-zero rows.
"""

from __future__ import annotations

from typing import Any

import torch

from videolift.core.errors import VideoliftError
from videolift.models.base import SamplerSettings
from videolift.models.flow import FlowMatchingSpec

# diffusers' advice for the timestep-conditioned VAEs of LTX-Video 0.9.1 and later; others ignore them.
DECODE = {"decode_timestep": 0.05, "decode_noise_scale": 0.025}
SIZE_MULTIPLE = 32  # LTXPipeline refuses other heights and widths, whatever its VAE


class LTXSpec(FlowMatchingSpec):
    family = "ltx"
    name = "LTX-Video"
    pipeline_class = "LTXPipeline"
    default_max_sequence_length = 128  # LTXPipeline's own default
    default_size = (161, 512, 704)  # LTXPipeline's defaults; no per-checkpoint size is stored
    default_guidance, default_fps = 3.0, 25  # the pipeline's; fps is also its frame_rate conditioning

    def compression(self, pipe: Any) -> tuple[int, int]:
        return int(pipe.vae_temporal_compression_ratio), int(pipe.vae_spatial_compression_ratio)

    def check_sampling(self, pipe: Any, settings: SamplerSettings) -> None:
        super().check_sampling(pipe, settings)
        if settings.steps < 2 and pipe.scheduler.config.get("shift_terminal"):
            # diffusers stretches the sigmas to end at shift_terminal: one step divides by zero (IndexError)
            raise VideoliftError(f"--steps {settings.steps}: {self.name}'s scheduler needs at least 2 steps")
        for name, value in (("height", settings.height), ("width", settings.width)):
            if value % SIZE_MULTIPLE:
                raise VideoliftError(f"--{name} {value}: LTXPipeline needs a multiple of {SIZE_MULTIPLE}")

    def sampling_kwargs(self, settings: SamplerSettings) -> dict[str, Any]:
        # The frame rate conditions the rotary positions in time: the MP4's rate is the one to sample at.
        return {"frame_rate": settings.fps, **DECODE}

    def prompt_embeds(self, encoded: tuple) -> torch.Tensor:
        embeds, mask = encoded[:2]
        return embeds.masked_fill(~mask[..., None].bool(), 0)  # not a product: an inf row stays masked

    @staticmethod
    def text_mask(text: torch.Tensor) -> torch.Tensor:
        """The attention mask of embeddings from ``encode_prompts``: their non-zero rows."""
        return text.ne(0).any(dim=-1)

    def sample_latents(
        self, pipe: Any, parameters: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        vae = pipe.vae
        latents = self.draw(parameters, generator)
        return pipe._normalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)

    def rope_interpolation_scale(self, pipe: Any) -> tuple[float, float, float]:
        temporal, spatial = self.compression(pipe)
        return temporal / self.default_fps, spatial, spatial

    def velocity(
        self, pipe: Any, transformer: Any, noisy: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        # A DDP/DeepSpeed wrapper does not forward `.config`: read it from the wrapped module.
        cfg = getattr(transformer, "module", transformer).config
        p, pt = int(cfg.patch_size), int(cfg.patch_size_t)
        frames, height, width = noisy.shape[2] // pt, noisy.shape[3] // p, noisy.shape[4] // p
        pred = transformer(
            hidden_states=pipe._pack_latents(noisy, p, pt),
            encoder_hidden_states=text,
            timestep=timestep,
            encoder_attention_mask=self.text_mask(text),
            num_frames=frames,
            height=height,
            width=width,
            rope_interpolation_scale=self.rope_interpolation_scale(pipe),
            return_dict=False,
        )[0]
        return pipe._unpack_latents(pred, frames, height, width, p, pt)
