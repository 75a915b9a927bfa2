"""What a run says about itself as it trains: the line it starts with and its log lines (means of the losses and
weights between two lines, reduced over the ranks)."""

from __future__ import annotations

import time
from typing import Any

import torch

from videolift.align.config import AlignConfig


def describe_run(
    cfg: AlignConfig, data: dict, n_real: int, world: int, params: list, step: int, per_step: int
) -> str:
    """The line a run starts with: what it trains on, how, and from which step to which."""
    dropped = [
        f"{data[key]} {why}"
        for key, why in (
            ("dropped_null_reward", "without a reward"),
            ("dropped_not_all_good", "not all Good"),
        )
        if data.get(key)
    ]
    return (
        f"align: {cfg.method}, {cfg.finetune} fine-tune, {data['kept']} synthetic videos "
        + (f"of {data['rated']} ({', '.join(dropped)} dropped) " if dropped else "")
        + f"(weights {data['weight_min']:.3g}..{data['weight_max']:.3g}"
        + (", drawn by weight" if cfg.syn_sampling == "weighted" else "")
        + f"), {data['real']} real (lambda "
        f"{cfg.lambda_real}); per step: {cfg.batch_size} syn + {n_real} real x {world} processes x "
        f"{cfg.grad_accum} accumulation = {per_step} videos; "
        f"{sum(p.numel() for p in params):,} trainable parameters"
        + (expert_note(cfg.expert, data["expert"]) if cfg.expert else "")
        + f"; steps {step} -> {cfg.max_steps}"
        + (f"; {cfg.text_dropout:.0%} of prompts dropped to the empty one" if cfg.text_dropout else "")
    )


def expert_note(expert: str, trained: dict) -> str:
    low, high = trained["timesteps"]
    component = trained["component"]
    other = "frozen" if trained.get("other_loaded", True) else "frozen, not loaded: no --validation-prompts"
    return f" of the {expert}-noise expert ({component}, trained at t in [{low}, {high}); the other {other})"


class StepLog:
    """Means of the losses and weights over the micro-steps since the last log line, across ranks."""

    def __init__(self, samples_per_step: int, world: int):
        self.samples_per_step, self.world = samples_per_step, world
        self._reset()

    def _reset(self) -> None:
        self.acc: torch.Tensor | None = None  # loss, syn weighted, syn plain, real, weight, count
        self.started, self.steps, self.paused = time.perf_counter(), 0, 0.0

    def add(self, loss: torch.Tensor, per_sample: torch.Tensor, coef: torch.Tensor, n_syn: int) -> None:
        """``coef``: the batch's loss coefficients where the loss is (a copy from the host here would wait
        for the GPU). Summed there too, read once per log line; in float64 (float32 where the device has
        none: Apple's MPS)."""
        wide = torch.float32 if per_sample.device.type == "mps" else torch.float64
        per = per_sample.detach().to(wide)
        w = coef[:n_syn].to(wide) * n_syn
        one = per.new_ones(())
        row = torch.stack(
            [
                loss.detach().to(wide),
                (w * per[:n_syn]).mean(),
                per[:n_syn].mean(),
                per[n_syn:].mean() if len(per) > n_syn else 0 * one,
                w.mean(),
                one,
            ]
        )
        self.acc = row if self.acc is None else self.acc + row

    def row(self, accelerator: Any, step: int, lr: float, grad_norm: Any, has_real: bool) -> dict:
        """The log line of ``step`` (collective: every rank must call it), then start afresh."""
        acc = torch.zeros(6, dtype=torch.float64) if self.acc is None else self.acc
        means = accelerator.reduce(acc.to(accelerator.device), reduction="mean").cpu()
        means = (means[:5] / means[5]).tolist()
        elapsed = time.perf_counter() - self.started - self.paused
        row = {
            "step": step,
            "loss": means[0],
            "loss_syn_weighted": means[1],
            "loss_syn": means[2],
            "loss_real": means[3] if has_real else None,
            "weight_mean": means[4],
            "lr": lr,
            "grad_norm": None if grad_norm is None else float(grad_norm),
            "steps_per_s": self.steps / elapsed,
            "samples_per_s": self.steps * self.samples_per_step / elapsed,
            "world_size": self.world,
        }
        self._reset()
        return row
