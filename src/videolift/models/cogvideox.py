"""CogVideoX (2B / 5B / 1.5 / tiny toy) through diffusers: sampling defaults and training loss.

The loss follows diffusers' CogVideoX training example: latents = VAE sample x scaling factor,
permuted to (B, F, C, h, w) (CogVideoX 1.5: padded to whole temporal patches); t ~ U[0, T);
v-prediction turned back into x0 with ``scheduler.get_velocity``; per-sample weight 1 / (1 - alpha_bar_t).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from videolift.core.errors import VideoliftError
from videolift.core.jsonl import read_json
from videolift.models.base import DiffusersT2VSpec, SamplerSettings, fill_size


class CogVideoXSpec(DiffusersT2VSpec):
    family = "cogvideox"
    name = "CogVideoX"
    pipeline_class = "CogVideoXPipeline"

    def default_sampling(
        self, pipe: Any, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        """Frames and size left unset fall back to the pipeline's own (49x480x720 for CogVideoX-2B), but
        CogVideoX 1.5's size is THUDM's 768x1360: its config's 300x300 latent grid (2400x2400 pixels)
        sizes the rotary positions, not the videos it was trained on."""
        cfg = pipe.transformer.config
        scale = pipe.vae_scale_factor_spatial
        own = (int(cfg.sample_height) * scale, int(cfg.sample_width) * scale)
        if cfg.get("patch_size_t") and own == (2400, 2400):
            own = (768, 1360)
        return fill_size((int(cfg.sample_frames), *own), frames, height, width)

    def own_sampling(
        self, model: str, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int] | None:
        """From ``transformer/config.json`` and the VAE's scale (``CogVideoXPipeline``'s own rule: 2 to the
        number of the VAE's blocks less one)."""
        from diffusers.configuration_utils import FrozenDict

        root = Path(model).expanduser()
        try:
            # diffusers' config files, read as diffusers reads them (a repeated key's last value)
            transformer = FrozenDict(
                read_json(root / "transformer" / "config.json", last_of_repeated_keys=True)
            )
            blocks = read_json(root / "vae" / "config.json", last_of_repeated_keys=True)["block_out_channels"]
            pipe = SimpleNamespace(
                transformer=SimpleNamespace(config=transformer),
                vae_scale_factor_spatial=2 ** (len(blocks) - 1),
            )
            return self.default_sampling(pipe, frames, height, width)
        except (OSError, KeyError, TypeError, AttributeError, VideoliftError):  # a Hub id, other configs
            return None

    def gpu_dtype(self, model: str) -> str | None:
        """float16 for CogVideoX-2B and the models built like it (3D sin-cos positions, no rotary ones), whose
        card and diffusers' CogVideoX docs give FP16 as its inference precision; None (bfloat16) for 5B and 1.5,
        recommended in BF16. None where the transformer's config cannot be read (loading reports why)."""
        from videolift.models.families import component_config

        config = component_config(model, "transformer")
        if config is None or config.get("use_rotary_positional_embeddings", True):
            return None
        return "float16"

    def fps(self, pipe: Any) -> int:
        """CogVideoX 1.0: 49 frames at 8 fps; 1.5 (temporal patches, ``patch_size_t``): 81 or 161 frames
        at 16 fps (THUDM's cli_demo), so 8 would play it at half speed."""
        return 16 if pipe.transformer.config.get("patch_size_t") else self.default_fps

    def max_sequence_length(self, pipe: Any, settings: SamplerSettings | None = None) -> int:
        if settings is not None and settings.max_sequence_length:
            return settings.max_sequence_length
        return int(pipe.transformer.config.max_text_seq_length)

    def sampling_kwargs(self, settings: SamplerSettings) -> dict[str, Any]:
        return {"use_dynamic_cfg": settings.dynamic_cfg}

    def sample_latents(
        self, pipe: Any, parameters: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw a latent from cached distribution parameters, scaled and laid out (B, F, C, h, w).

        CogVideoX 1.5 patches latent frames ``patch_size_t`` at a time: its 81-frame videos give 21
        latent frames, so copies of the first one are put in front to fill the last patch, as
        THUDM's CogVideoX 1.5 fine-tuning does and as the pipeline samples (padding frames in
        front, dropped before decoding)."""
        latents = self.draw(parameters, generator) * pipe.vae.config.scaling_factor
        latents = latents.permute(0, 2, 1, 3, 4)
        patch_t = getattr(pipe.transformer, "module", pipe.transformer).config.patch_size_t
        pad = -latents.shape[1] % patch_t if patch_t else 0
        if pad:
            latents = torch.cat([latents[:, :1].expand(-1, pad, -1, -1, -1), latents], dim=1)
        return latents

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
        latents, noise = latents.float(), noise.float()  # the scheduler rounds alpha_bar to their dtype
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
            hidden_states=noisy.to(text.dtype),
            encoder_hidden_states=text,
            timestep=timesteps,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        # In fp32 whatever the model's dtype: in bf16, alpha_bar near 1 rounds, and the weight at small t
        # comes out far off or infinite (a NaN loss). float64 would turn the whole loss float64.
        x0 = scheduler.get_velocity(pred.float(), noisy, timesteps)
        alpha_bar = scheduler.alphas_cumprod.to(latents.device)[timesteps].float()
        weight = (1.0 / (1.0 - alpha_bar)).view(-1, 1, 1, 1, 1)
        return (weight * (x0 - latents) ** 2).flatten(1).mean(dim=1)
