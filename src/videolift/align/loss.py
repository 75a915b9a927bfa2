"""The diffusion loss of one micro-batch from cached latents and text: what the trainer, the held-out loss and
the throughput benchmark compute. Its randomness (timesteps, noise) is a function of (seed, rank,
micro-step), so a resumed run draws what the uninterrupted one would have."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def step_generator(seed: int, rank: int, micro_step: int, device: Any) -> torch.Generator:
    """The RNG of one micro-step on one rank: independent of everything that ran before."""
    state = np.random.SeedSequence([seed, rank, micro_step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & (2**63 - 1))


def batch_loss(
    spec: Any,
    pipe: Any,
    model: Any,
    params: torch.Tensor,
    text: torch.Tensor,
    coef: torch.Tensor,
    generator: torch.Generator,
    *,
    n_syn: int = 0,
    syn_min_timestep: int = 0,
    t_range: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """sum_i coef_i * diffusion_loss_i, with latents drawn from cached distribution parameters,
    t ~ U[low, high) (``t_range``, default [0, num_train_timesteps): a two-expert model's trained expert's;
    the first ``n_syn`` rows: from ``syn_min_timestep`` up, if higher) and Gaussian noise. Returns (scalar
    loss, per-sample losses)."""
    device = params.device
    latents = spec.sample_latents(pipe, params.float(), generator)
    low, steps = t_range or (0, pipe.scheduler.config.num_train_timesteps)
    # torch draws U[low, high) as low + U[0, high - low): over [0, N) the values are as they always were
    timesteps = torch.randint(low, steps, (latents.shape[0],), generator=generator, device=device)
    if syn_min_timestep > low and n_syn:  # drawn after the default draw: with 0 the RNG stream is unchanged
        timesteps[:n_syn] = torch.randint(
            syn_min_timestep, steps, (n_syn,), generator=generator, device=device
        )
    noise = torch.randn(latents.shape, generator=generator, device=device, dtype=latents.dtype)
    # DeepSpeed casts the transformer itself to bf16 / fp16 and runs no autocast (accelerate leaves it to
    # the engine): its inputs must be in that dtype too, and the specs give it text's. Latents and noise
    # stay fp32: noising in bf16 rounds alpha_bar near 1 to 1 (no noise at small t, a zero loss).
    # Elsewhere the weights are fp32 (autocast, if any, casts inside) and this changes nothing.
    dtype = next((p.dtype for p in model.parameters() if p.requires_grad), latents.dtype)
    text = text.to(dtype)
    per_sample = spec.training_loss(pipe, model, latents, text, timesteps=timesteps, noise=noise)
    return (coef.to(per_sample.dtype) * per_sample).sum(), per_sample.detach()
