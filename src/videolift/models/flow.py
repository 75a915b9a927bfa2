"""What the flow-matching T2V families (Wan 2.1, LTX-Video) share: their noise levels and their loss.

x_t = (1 - sigma) x0 + sigma * noise, and the transformer predicts the velocity noise - x0 at timestep
sigma * 1000 (the float the pipelines' samplers pass). The loss is the plain mean squared error of that
prediction. The trainer's integer timestep t in [0, N) picks a noise level on the training grid of
diffusers' ``FlowMatchEulerDiscreteScheduler``, the grid diffusers' flow-matching examples, finetrainers
and DiffSynth-Studio draw from: sigma = (t + 1) / N, in {1/N, ..., 1} (never 0, a clean input with nothing
to learn; 1, pure noise, included), then the scheduler's own static shift (``flow_shift`` / ``shift``:
sigma' = s*sigma / (1 + (s - 1)*sigma)). A family says how its transformer is called (``velocity``).
"""

from __future__ import annotations

from typing import Any

import torch

from videolift.core.errors import VideoliftError
from videolift.models.base import DiffusersT2VSpec, SamplerSettings


class FlowMatchingSpec(DiffusersT2VSpec):
    def check_sampling(self, pipe: Any, settings: SamplerSettings) -> None:
        if settings.dynamic_cfg:
            raise VideoliftError(
                f"--dynamic-cfg is CogVideoX's; {self.pipeline_class} has no dynamic guidance"
            )
        super().check_sampling(pipe, settings)

    @staticmethod
    def shift(scheduler: Any) -> float:
        cfg = scheduler.config
        if cfg.get("use_flow_sigmas") and cfg.get("flow_shift") is not None:  # UniPC / DPM (Wan's own)
            return float(cfg["flow_shift"])
        return float(cfg.get("shift", 1.0) or 1.0)  # FlowMatchEulerDiscreteScheduler

    def sigmas(self, pipe: Any, timesteps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """sigma' in (0, 1] of integer timesteps t in [0, N), higher t noisier: FlowMatchEulerDiscreteScheduler's
        ``sigmas[N - 1 - t]`` with the pipeline scheduler's shift (its grid is (N, ..., 1) / N, shifted).
        Computed in float32 as the scheduler computes it, so sigma' and sigma' * N (the timestep fed) are
        its ``sigmas`` and ``timesteps`` bit for bit."""
        sigma = (timesteps.to(torch.float32) + 1) / pipe.scheduler.config.num_train_timesteps
        s = self.shift(pipe.scheduler)
        return (s * sigma / (1 + (s - 1) * sigma)).to(dtype)

    def velocity(
        self, pipe: Any, transformer: Any, noisy: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """The transformer's prediction for ``noisy`` latents, laid out as they are."""
        raise NotImplementedError

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
        s = sigma.view(-1, *(1,) * (latents.dim() - 1))
        noisy = (1 - s) * latents + s * noise
        timestep = sigma * pipe.scheduler.config.num_train_timesteps
        pred = self.velocity(pipe, transformer, noisy.to(text.dtype), timestep, text)
        target = noise - latents
        return ((pred.float() - target) ** 2).flatten(1).mean(dim=1)
