"""The held-out loss an SFT run logs as ``val_loss`` (``run_sft``'s ``validation``): when it is
measured, and its measure over the processes."""

from __future__ import annotations

import math
from typing import Any

from videolift.critic.data import FrameCache, SFTExample, example_frames
from videolift.critic.sft_config import SFTConfig


def validates(cfg: SFTConfig, step: int, total: int, micro: int, per_epoch: int) -> bool:
    """Whether the update ``step`` (ending at micro-batch ``micro``) is followed by a validation pass:
    every ``val_every`` updates, else when it completed an epoch; and after the last update."""
    if step == total:
        return True
    if cfg.val_every:
        return step % cfg.val_every == 0
    return (micro + 1) // per_epoch > (micro + 1 - cfg.grad_accum) // per_epoch


def validation_loss(
    model: Any, accelerator: Any, collate: Any, examples: list[SFTExample], frames: FrameCache, cfg: SFTConfig
) -> float:
    """The mean cross-entropy of every answer token of ``examples`` (unweighted), in eval mode, over the
    processes. Each process runs as many batches (one out of examples repeats a batch it does not count),
    so the forward passes DDP and FSDP synchronise stay matched."""
    import torch

    from videolift.critic.collate import Item, answer_loss

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = examples[rank::world]
    batches = [mine[i : i + cfg.batch_size] for i in range(0, len(mine), cfg.batch_size)]
    rounds = math.ceil(math.ceil(len(examples) / world) / cfg.batch_size)
    totals = torch.zeros(2, dtype=torch.float64)  # loss x tokens, tokens
    model.eval()  # no dropout: the loss of the weights as they are
    try:
        with torch.no_grad():
            for k in range(rounds):
                batch = batches[k] if k < len(batches) else examples[:1]
                items = [Item(example_frames(ex, frames), ex.user_text, ex.answer, 1.0) for ex in batch]
                loss, tokens = answer_loss(
                    model, {n: v.to(accelerator.device) for n, v in collate(items).items()}
                )
                if k < len(batches):
                    totals += torch.tensor([float(loss) * tokens, tokens], dtype=torch.float64)
    finally:
        model.train()
    totals = accelerator.reduce(totals.to(accelerator.device), reduction="sum").cpu()
    return float(totals[0] / totals[1].clamp_min(1))
