"""Write the aligned model so that plain diffusers loads it.

- full fine-tune -> ``OUT/pipeline``: ``CogVideoXPipeline.from_pretrained("OUT/pipeline")`` (or
                                      ``WanPipeline``: the base model's own pipeline class)
- LoRA           -> ``OUT/lora``:     ``pipe = CogVideoXPipeline.from_pretrained(BASE)``;
                                      ``pipe.load_lora_weights("OUT/lora")``

Both are written to a temporary sibling and renamed into place, so a crash never leaves a
half-written model where a loader would find it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from videolift.models.base import FULL_DIR, LORA_DIR


def _replace_dir(tmp: Path, final: Path) -> Path:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def _fresh_tmp(out: Path, name: str) -> Path:
    tmp = out / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def export_full(pipe: Any, transformer: torch.nn.Module, out: Path, dtype: torch.dtype) -> Path:
    """The whole pipeline with the trained transformer (in ``dtype``); frozen parts as loaded."""
    if transformer.dtype != dtype:  # diffusers warns about .to() even when it is a no-op
        transformer.to(dtype)
    pipe.transformer = transformer
    tmp = _fresh_tmp(out, FULL_DIR)
    pipe.save_pretrained(tmp)
    return _replace_dir(tmp, out / FULL_DIR)


def export_lora(pipe: Any, transformer: torch.nn.Module, out: Path) -> Path:
    """The transformer's LoRA adapter (with its rank/alpha metadata) in diffusers' LoRA format."""
    from peft.utils import get_peft_model_state_dict

    tmp = _fresh_tmp(out, LORA_DIR)
    type(pipe).save_lora_weights(
        tmp,
        transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),
    )
    return _replace_dir(tmp, out / LORA_DIR)


def gathered_transformer(accelerator: Any, model: Any) -> torch.nn.Module | None:
    """The full trained module on the main process (None elsewhere). Collective: call on all ranks.

    Under DDP and DeepSpeed ZeRO-2 every rank holds complete weights; FSDP shards them, so the
    full state dict is gathered and loaded into a fresh copy.
    """
    from accelerate.utils import DistributedType

    unwrapped = accelerator.unwrap_model(model)
    if accelerator.distributed_type != DistributedType.FSDP:
        return unwrapped if accelerator.is_main_process else None
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return None
    fresh = type(unwrapped).from_config(unwrapped.config)
    fresh.load_state_dict(state)
    return fresh
