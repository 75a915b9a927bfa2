"""What updates an alignment run's trained weights: AdamW and its learning-rate schedule, the DeepSpeed
settings accelerate cannot infer here, and the EMA of the weights when ``ema_decay`` is set."""

from __future__ import annotations

from typing import Any

import torch

from videolift.align.config import AlignConfig
from videolift.core.distributed import deepspeed_clipping


def make_optimizer(cfg: AlignConfig, params: list, accelerator: Any, micro_batch: int) -> tuple[Any, Any]:
    """AdamW over ``params`` and its LR scheduler; under DeepSpeed, the micro-batch size and the gradient
    clipping put in its config."""
    from accelerate.utils import DistributedType
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, eps=cfg.adam_eps
    )
    # Not passed to prepare(): accelerate would step it once per process. Stepped once per optimizer step.
    scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.max_steps
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # no prepared DataLoader to infer these
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = micro_batch
    deepspeed_clipping(accelerator, cfg.max_grad_norm)
    return optimizer, scheduler


def make_ema(cfg: AlignConfig, params: list, accelerator: Any) -> Any:
    """The exponential moving average of ``params`` (None without ``ema_decay``)."""
    if not cfg.ema_decay:
        return None
    from diffusers.training_utils import EMAModel

    # foreach: a few fused kernels a step on a GPU rather than one per tensor (the CPU keeps the loop,
    # whose rounding the toy results were measured with)
    return EMAModel(params, decay=cfg.ema_decay, foreach=accelerator.device.type == "cuda")
