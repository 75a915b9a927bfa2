"""Which of the transformer's weights an alignment run trains (LoRA adapters, its blocks or every weight),
and where the transformer trains."""

from __future__ import annotations

from typing import Any

import torch

from videolift.align.config import AlignConfig
from videolift.core.errors import VideoliftError


def make_trainable(transformer: torch.nn.Module, cfg: AlignConfig) -> list[torch.nn.Parameter]:
    """Full: the blocks' weights (``full_scope`` all: every weight), in fp32 (master weights under mixed
    precision). LoRA: peft adapters in fp32 on a frozen base left in its loaded dtype."""
    if cfg.finetune == "lora":
        from diffusers.training_utils import cast_training_params
        from peft import LoraConfig

        config = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            init_lora_weights=True,
            target_modules=list(cfg.lora_targets),
        )
        try:
            transformer.add_adapter(config)
        except ValueError as err:  # peft: "Target modules {...} not found in the base model"
            names = [
                n for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear) and "blocks." in n
            ]
            # "transformer_blocks.0.attn1.to_q" -> "attn1.to_q", the name peft matches
            linear = sorted({n.split("blocks.", 1)[1].split(".", 1)[1] for n in names})
            raise VideoliftError(
                f"--lora-targets {','.join(cfg.lora_targets)}: {err} The transformer blocks' linear layers: "
                f"{', '.join(linear)}"
            ) from err
        cast_training_params(transformer, torch.float32)
    else:
        if transformer.dtype != torch.float32:
            transformer.to(torch.float32)
        transformer.requires_grad_(cfg.full_scope == "all")
        if cfg.full_scope == "blocks":  # CogVideoX's transformer_blocks, Wan's blocks
            blocks = [
                m
                for n, m in transformer.named_children()
                if isinstance(m, torch.nn.ModuleList) and n.endswith("blocks")
            ]
            if not blocks:
                raise VideoliftError(
                    f"{type(transformer).__name__} has no list of blocks to train: use --full-scope all"
                )
            for module in blocks:
                module.requires_grad_(True)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    params = trainable_parameters(transformer)
    if not params:
        raise VideoliftError(f"no trainable parameters (LoRA targets {cfg.lora_targets} matched nothing?)")
    return params


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def place_for_training(transformer: torch.nn.Module, accelerator: Any) -> None:
    """Train mode, on the process's device. Under FSDP the weights stay where they are: ``prepare``
    moves and shards one block at a time, where moving first would put the whole fp32 model on every
    GPU (Wan 14B: 56 GB)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        transformer.to(accelerator.device)
    transformer.train()
