"""Fine-tune the toy VAE's decoder to draw sharp outlines; the encoder stays frozen.

The transformer's samples have soft, ragged outlines, and the oracle grades an outline's softness as
blur (Normal from 1.5 px). The decoder is taught to decode the latents of a clip, and of the same clip
blurred by up to ``max_blur`` px, into the sharp clip, with an image-gradient (edge) loss beside
L1 + MSE. The frozen encoder keeps every latent, cached latent and trained transformer valid: only
the decoding changes (as the fine-tuned decoders shipped for latent image models do).
Measured in docs/toy-world.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2.functional import gaussian_blur
from tqdm import tqdm


@dataclass
class DecoderPhase:
    steps: int = 1200
    batch: int = 8
    window: int = 3  # random 3-frame windows, as the VAE phase
    lr: float = 2e-4
    blur_share: float = 0.5  # share of inputs blurred before encoding (the target stays sharp)
    max_blur: float = 3.0  # their Gaussian sigma ~ U(0, max_blur) px
    edge_weight: float = 20.0  # L1 between the image gradients of output and target
    defect_rate: float = 0.0  # clean clips: the decoder should not learn to draw blur


def blur_clips(x: torch.Tensor, sigmas: np.ndarray) -> torch.Tensor:
    """Blur each clip (B, C, T, H, W) spatially by its own sigma in px (0 = unchanged)."""
    out = []
    for clip, sigma in zip(x, sigmas, strict=True):
        if sigma <= 0.05:
            out.append(clip)
            continue
        size = 2 * int(3 * sigma + 1) + 1
        frames = clip.permute(1, 0, 2, 3)  # T C H W: blurred per frame
        out.append(gaussian_blur(frames, [size, size], [float(sigma)] * 2).permute(1, 0, 2, 3))
    return torch.stack(out)


def edge_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between vertical and horizontal finite differences of output and target."""
    dy = (y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])
    dx = (y[..., :, 1:] - y[..., :, :-1]) - (x[..., :, 1:] - x[..., :, :-1])
    return dy.abs().mean() + dx.abs().mean()


def sharpen_decoder(
    vae: Any,
    sample: Callable[[int], tuple[np.ndarray, list[str]]],
    phase: DecoderPhase,
    seed: int = 0,
    deadline: float | None = None,
    log: Callable[[dict], None] | None = None,
) -> dict[str, float]:
    """Train ``vae``'s decoder in place; returns the final reconstruction and edge losses (EMA) and the
    updates made (``steps_run``: fewer than ``phase.steps`` when the ``deadline`` stopped it)."""
    from videolift.toy.pretrain_t2v import training_windows

    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=0.0)
    rng = np.random.default_rng([seed, 31])
    torch.manual_seed(seed)
    vae.train()
    ema: dict[str, float] = {}
    bar = tqdm(range(phase.steps), desc="decoder", unit="step")
    steps_run = 0
    for step in bar:
        x = training_windows(sample(phase.batch)[0], phase.window, rng)
        sigmas = rng.uniform(0, phase.max_blur, len(x)) * (rng.random(len(x)) < phase.blur_share)
        with torch.no_grad():
            z = vae.encode(blur_clips(x, sigmas)).latent_dist.sample()
        y = vae.decode(z).sample
        recon = (y - x).abs().mean() + ((y - x) ** 2).mean()
        edges = edge_loss(y, x)
        loss = recon + phase.edge_weight * edges
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        steps_run += 1
        for key, value in (("recon", recon.item()), ("edge", edges.item())):
            ema[key] = value if key not in ema else 0.98 * ema[key] + 0.02 * value
        bar.set_postfix(recon=f"{ema['recon']:.4f}", edge=f"{ema['edge']:.4f}")
        if log and step % 50 == 0:
            log({"phase": "decoder", "step": step, "recon": recon.item(), "edge": edges.item()})
        if deadline is not None and time.time() > deadline:
            break
    vae.eval()
    vae.requires_grad_(False)
    return {
        "recon_loss": ema.get("recon", float("nan")),
        "edge_loss": ema.get("edge", float("nan")),
        "steps_run": steps_run,
    }
