"""CogVideoX (2B / 5B / tiny toy) through diffusers: loading, sampling, encoding, training loss.

The loss follows diffusers' CogVideoX training example: latents = VAE sample x scaling factor,
permuted to (B, F, C, h, w); t ~ U[0, T); v-prediction turned back into x0 with
``scheduler.get_velocity``; per-sample weight 1 / (1 - alpha_bar_t).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from videolift.core.errors import VideoliftError
from videolift.models.base import SamplerSettings

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name]
    except KeyError:
        raise VideoliftError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}") from None


class CogVideoXSpec:
    family = "cogvideox"

    # ---- loading -------------------------------------------------------------------------------
    def load(self, model: str, *, dtype: Any = "float32", device: Any = "cpu", lora: str | None = None):
        from diffusers import CogVideoXPipeline

        local = Path(model)
        if local.exists() and not (local / "model_index.json").exists():
            raise VideoliftError(f"{model}: not a diffusers pipeline directory (no model_index.json)")
        try:
            pipe = CogVideoXPipeline.from_pretrained(model, dtype=resolve_dtype(dtype))
        except (OSError, ValueError) as exc:  # ValueError: huggingface_hub's invalid repo id (a bad path)
            raise VideoliftError(
                f"cannot load CogVideoX pipeline {model!r}: not a local pipeline directory and not "
                f"reachable on the Hub ({str(exc).splitlines()[0]})"
            ) from None
        if lora:
            if not Path(lora).exists():
                raise VideoliftError(f"{lora}: LoRA directory not found")
            pipe.load_lora_weights(lora)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)

    # ---- sampling ------------------------------------------------------------------------------
    def check_sampling(self, pipe: Any, settings: SamplerSettings) -> None:
        tcr = pipe.vae_scale_factor_temporal
        if settings.frames < 1 or (settings.frames - 1) % tcr:
            raise VideoliftError(
                f"--frames {settings.frames}: CogVideoX needs frames = {tcr}k+1 (e.g. 9, 13, 49)"
            )
        multiple = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size
        for name, value in (("height", settings.height), ("width", settings.width)):
            if value <= 0 or value % multiple:
                raise VideoliftError(
                    f"--{name} {value}: must be a positive multiple of {multiple} "
                    f"(VAE scale {pipe.vae_scale_factor_spatial} x patch {pipe.transformer.config.patch_size})"
                )
        if settings.steps < 1:
            raise VideoliftError(f"--steps {settings.steps}: must be at least 1")

    def default_sampling(
        self, pipe: Any, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        """Frames and size left unset fall back to the pipeline's own (49x480x720 for CogVideoX-2B)."""
        cfg = pipe.transformer.config
        scale = pipe.vae_scale_factor_spatial
        return (
            int(cfg.sample_frames) if frames is None else frames,
            int(cfg.sample_height) * scale if height is None else height,
            int(cfg.sample_width) * scale if width is None else width,
        )

    def max_sequence_length(self, pipe: Any, settings: SamplerSettings | None = None) -> int:
        if settings is not None and settings.max_sequence_length:
            return settings.max_sequence_length
        return int(pipe.transformer.config.max_text_seq_length)

    @torch.no_grad()
    def generate(
        self, pipe: Any, prompts: list[str], seeds: list[int], settings: SamplerSettings
    ) -> list[np.ndarray]:
        # The pipeline makes one video per prompt: repeat prompts and pass one generator per sample.
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        out = pipe(
            prompt=list(prompts),
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            use_dynamic_cfg=settings.dynamic_cfg,
            num_frames=settings.frames,
            height=settings.height,
            width=settings.width,
            generator=generators,
            output_type="np",
            max_sequence_length=self.max_sequence_length(pipe, settings),
        ).frames
        return [np.clip(np.asarray(v) * 255.0 + 0.5, 0, 255).astype(np.uint8) for v in out]

    # ---- training ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, pipe: Any, prompts: list[str]) -> torch.Tensor:
        embeds, _ = pipe.encode_prompt(
            prompts,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length(pipe),
            device=pipe.text_encoder.device,
            dtype=pipe.text_encoder.dtype,
        )
        return embeds.detach()

    @torch.no_grad()
    def encode_videos(self, pipe: Any, videos: list[np.ndarray]) -> torch.Tensor:
        """Latent distribution parameters (B, 2C, F, h, w) (mean and log-variance), for caching."""
        vae = pipe.vae
        x = torch.from_numpy(np.stack(videos)).to(vae.device, vae.dtype)  # B T H W C
        x = x.permute(0, 4, 1, 2, 3) / 127.5 - 1.0  # B C T H W in [-1, 1]
        return vae.encode(x).latent_dist.parameters.detach()

    @staticmethod
    def sample_latents(
        pipe: Any, parameters: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw a latent from cached distribution parameters, scaled and laid out (B, F, C, h, w)."""
        mean, logvar = parameters.chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        latents = (mean + std * eps) * pipe.vae.config.scaling_factor
        return latents.permute(0, 2, 1, 3, 4)

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
        scheduler = pipe.scheduler
        noisy = scheduler.add_noise(latents, noise, timesteps)
        rotary = None
        # A DDP/DeepSpeed wrapper does not forward `.config`: read it from the wrapped module.
        if getattr(transformer, "module", transformer).config.use_rotary_positional_embeddings:
            rotary = pipe._prepare_rotary_positional_embeddings(
                latents.shape[3] * pipe.vae_scale_factor_spatial,
                latents.shape[4] * pipe.vae_scale_factor_spatial,
                latents.shape[1],
                latents.device,
            )
        pred = transformer(
            hidden_states=noisy,
            encoder_hidden_states=text,
            timestep=timesteps,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        x0 = scheduler.get_velocity(pred, noisy, timesteps)
        # alphas_cumprod is float64: cast, or the whole loss silently turns float64.
        alpha_bar = scheduler.alphas_cumprod.to(latents.device)[timesteps].to(latents.dtype)
        weight = (1.0 / (1.0 - alpha_bar)).view(-1, 1, 1, 1, 1)
        return (weight * (x0.float() - latents.float()) ** 2).flatten(1).mean(dim=1)


SPECS = {"cogvideox": CogVideoXSpec}


def get_spec(family: str = "cogvideox") -> CogVideoXSpec:
    try:
        return SPECS[family]()
    except KeyError:
        raise VideoliftError(f"unknown T2V family {family!r}; known: {', '.join(SPECS)}") from None
