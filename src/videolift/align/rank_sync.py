"""Whether an alignment run's processes still train the same, finite weights: each rank's checksum of
its trained weights, gathered after a resume, before every checkpoint and at the end."""

from __future__ import annotations

from typing import Any

import torch

from videolift.align.trainable import trainable_parameters
from videolift.core.errors import VideoliftError


def params_checksum(params: list[torch.Tensor]) -> list[float]:
    """Order-sensitive fingerprint of weights, cheap enough to compare ranks every checkpoint."""
    with torch.no_grad():
        total = [0.0, 0.0, 0.0]
        for i, p in enumerate(params, start=1):
            p64 = p.detach().double()
            total[0] += float(p64.sum())
            total[1] += float((p64 * p64).sum())
            total[2] += i * float(p64.abs().sum())
    return total


def assert_ranks_in_sync(accelerator: Any, model: Any, step: int) -> list[list[float]]:
    """Gather every rank's (step, weight checksum); raise if any rank diverged or the weights are no
    longer finite (every rank sees the same rows, so all raise together). Collective."""
    from accelerate.utils import DistributedType

    local = [float(step), *params_checksum(trainable_parameters(accelerator.unwrap_model(model)))]
    rows = accelerator.gather(torch.tensor([local], dtype=torch.float64, device=accelerator.device)).cpu()
    if not torch.isfinite(rows).all():
        raise VideoliftError(
            f"training diverged: the weights are NaN or infinite at step {step} (no checkpoint of it is "
            "written). Lower --lr or --max-grad-norm, or bring the rewards to [0, 1] (--weight-transform "
            "normalized); the loss of each logged step is in logs/train.jsonl"
        )
    if accelerator.distributed_type == DistributedType.FSDP:  # shards differ by design
        return []
    if not torch.allclose(rows, rows[:1].expand_as(rows), rtol=1e-9, atol=1e-12):
        raise RuntimeError(f"ranks out of sync at step {step}: (step, checksums) per rank = {rows.tolist()}")
    return rows.tolist()
