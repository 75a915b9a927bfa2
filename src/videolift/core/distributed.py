"""Distributed settings: how long ranks wait for each other, and what accelerate leaves to DeepSpeed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

# Sharded jobs (generate, critic score) split their items evenly, but a rank may still finish its share
# long before another (long videos, a resumed run): torch's default 30 minutes at a barrier would kill
# the finished rank and with it the run.
SHARDED_JOB_TIMEOUT = timedelta(hours=12)


def process_state() -> Any:
    """accelerate's state of this launch's processes, made with ``SHARDED_JOB_TIMEOUT`` if this is its
    first use (the state is made once per process; later settings are ignored); CPU-only without a GPU
    (torchrun on CPU would otherwise give unsynchronised single-process runs)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=SHARDED_JOB_TIMEOUT)


def deepspeed_clipping(accelerator: Any, max_grad_norm: float) -> None:
    """Under DeepSpeed the engine clips gradients (accelerate's ``clip_grad_norm_`` does nothing there):
    give it ``--max-grad-norm`` unless the DeepSpeed config sets its own ``gradient_clipping``."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        if ds.get("gradient_clipping") in (None, "auto"):
            ds["gradient_clipping"] = max_grad_norm
