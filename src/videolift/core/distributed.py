"""Settings accelerate leaves to the DeepSpeed engine, filled from videolift's own options."""

from __future__ import annotations

from typing import Any


def deepspeed_clipping(accelerator: Any, max_grad_norm: float) -> None:
    """Under DeepSpeed the engine clips gradients (accelerate's ``clip_grad_norm_`` does nothing there):
    give it ``--max-grad-norm`` unless the DeepSpeed config sets its own ``gradient_clipping``."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        if ds.get("gradient_clipping") in (None, "auto"):
            ds["gradient_clipping"] = max_grad_norm
