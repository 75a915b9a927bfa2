"""The contract between trainers/generators and a text-to-video model family.

A new T2V family (Wan, HunyuanVideo, ...) is one new module implementing ``T2VModelSpec``;
trainers and the generation stage only talk to this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class SamplerSettings:
    """Everything needed to regenerate a video exactly (recorded in generation manifests)."""

    steps: int = 50
    guidance: float = 6.0
    dynamic_cfg: bool = False
    frames: int = 49
    height: int = 480
    width: int = 720
    fps: int = 8
    max_sequence_length: int | None = None  # None: the model's own


class T2VModelSpec(Protocol):
    """What a T2V family provides. Tensors are torch tensors; videos are uint8 (T, H, W, 3) arrays."""

    family: str

    def load(self, model: str, *, dtype: Any, device: Any, lora: str | None = None) -> Any:
        """Load a pipeline (local directory or Hub id), optionally with LoRA weights applied."""

    def default_sampling(
        self, pipe: Any, frames: int | None = None, height: int | None = None, width: int | None = None
    ) -> tuple[int, int, int]:
        """The model's own frames/height/width for the ones left unset."""

    def check_sampling(self, pipe: Any, settings: SamplerSettings) -> None:
        """Raise VideoliftError for sizes/frames the model cannot produce."""

    def generate(
        self, pipe: Any, prompts: list[str], seeds: list[int], settings: SamplerSettings
    ) -> list[np.ndarray]:
        """One video per (prompt, seed), each uint8 (T, H, W, 3)."""

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> Any:
        """Text conditioning, detached, (B, L, D)."""

    def encode_videos(self, pipe: Any, videos: list[np.ndarray]) -> Any:
        """VAE latent distribution parameters of each video, for caching."""

    def training_loss(
        self, pipe: Any, transformer: Any, latents: Any, text: Any, *, timesteps: Any, noise: Any
    ) -> Any:
        """The family's own diffusion loss, per sample (B,), without reduction over the batch."""
