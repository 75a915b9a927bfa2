"""Write the aligned model so that plain diffusers loads it.

- full fine-tune -> ``OUT/pipeline``: ``CogVideoXPipeline.from_pretrained("OUT/pipeline")`` (or
                                      ``WanPipeline``: the base model's own pipeline class)
- LoRA           -> ``OUT/lora``:     ``pipe = CogVideoXPipeline.from_pretrained(BASE)``;
                                      ``pipe.load_lora_weights("OUT/lora")``

A two-expert Wan 2.2's run trains one expert: the full export is the pipeline with that expert replaced; the
LoRA is saved as diffusers' WanLoraLoaderMixin saves one (``transformer.`` keys), which loads into
``transformer_2`` with ``pipe.load_lora_weights("OUT/lora", load_into_transformer_2=True)`` (``EXPERT_FILE``
says so, for videolift's own loading).

Both are written to a temporary sibling and renamed into place, so a crash never leaves a
half-written model where a loader would find it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from videolift.align.config import AlignConfig
from videolift.align.trainable import trainable_parameters
from videolift.core.files import holds_weights, replace_dir, writing
from videolift.core.hub import base_directory  # (a module attribute here: tests replace it)
from videolift.models.base import EXPERT_FILE, FULL_DIR, LORA_DIR, is_empty


def _fresh_tmp(out: Path, name: str) -> Path:
    tmp = out / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def cast_for_export(transformer: torch.nn.Module, dtype: torch.dtype) -> None:
    """``transformer`` in ``dtype``, but for the modules its class keeps in fp32 (Wan's time embedder,
    norms and modulation table: ``_keep_in_fp32_modules``, matched by name part as diffusers loads them)."""
    keep = getattr(transformer, "_keep_in_fp32_modules", None) or []
    with torch.no_grad():
        for name, tensor in [*transformer.named_parameters(), *transformer.named_buffers()]:
            want = torch.float32 if any(part in keep for part in name.split(".")) else dtype
            if tensor.is_floating_point() and tensor.dtype != want:
                tensor.data = tensor.data.to(want)


def export_full(
    pipe: Any,
    transformer: torch.nn.Module,
    out: Path,
    dtype: torch.dtype,
    source: Path | None = None,
    name: str = "transformer",
    copy: tuple[str, ...] | None = None,
) -> Path:
    """The whole pipeline with the trained transformer (in ``dtype``) as its component ``name``. The frozen
    parts (a frozen expert too) are saved as loaded, or, given the base's ``source`` directory, copied from
    it (those named in ``copy``, default: all it holds): a run in bf16 holds them in bf16, and saving those
    would lose their precision for good (and make the aligned model, aligned again, miss the latent cache its
    base filled)."""
    cast_for_export(transformer, dtype)
    setattr(pipe, name, transformer)
    tmp = _fresh_tmp(out, FULL_DIR)
    frozen = [n for n, c in pipe.components.items() if n != name and isinstance(c, torch.nn.Module)]
    copied = [
        n for n in frozen if source is not None and holds_weights(source / n) and (copy is None or n in copy)
    ]
    with writing(tmp, "the aligned pipeline"):
        if not copied:
            pipe.save_pretrained(tmp)
        else:  # the frozen parts are not written only to be replaced (10 GB for CogVideoX's T5 and VAE)
            pipe.save_config(tmp)  # model_index.json
            for name, component in pipe.components.items():
                if component is not None and name not in copied:
                    component.save_pretrained(tmp / name)
            for name in copied:
                shutil.copytree(source / name, tmp / name)  # (follows the Hub cache's symlinks)
    return replace_dir(tmp, out / FULL_DIR)


def export_lora(pipe: Any, transformer: torch.nn.Module, out: Path, name: str = "transformer") -> Path:
    """The transformer's LoRA adapter (with its rank/alpha metadata) in diffusers' LoRA format; for the
    component ``name`` other than ``transformer`` (a low-noise expert), with ``EXPERT_FILE`` naming it."""
    from peft.utils import get_peft_model_state_dict

    tmp = _fresh_tmp(out, LORA_DIR)
    with writing(tmp, "the LoRA weights"):
        type(pipe).save_lora_weights(
            tmp,
            transformer_lora_layers=get_peft_model_state_dict(transformer),
            transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),
        )
        if name != "transformer":
            (tmp / EXPERT_FILE).write_text(json.dumps({"component": name}) + "\n")
    return replace_dir(tmp, out / LORA_DIR)


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


def export_trained(
    cfg: AlignConfig, accelerator: Any, pipe: Any, model: Any, ema: Any, weight_dtype: Any, name: str
) -> Path | None:
    """Copy EMA weights in when enabled, then write what plain diffusers loads, the trained module as the
    pipeline's component ``name`` (main process only; collective); the exported directory on the main
    process, else None."""
    if ema is not None:
        ema.copy_to(trainable_parameters(accelerator.unwrap_model(model)))
    trained = gathered_transformer(accelerator, model)
    if not accelerator.is_main_process:
        return None
    if cfg.finetune == "lora":
        return export_lora(pipe, trained, cfg.out, name)
    # Frozen parts held in reduced precision are copied from the base's files instead, and so is a frozen
    # expert never loaded (in fp32 it alone: the others are saved as loaded)
    unloaded = tuple(n for n, c in pipe.components.items() if is_empty(c))
    reduced = weight_dtype != torch.float32
    source = base_directory(cfg.model) if reduced or unloaded else None  # None: saved as loaded
    for missing in (n for n in unloaded if source is None or not holds_weights(source / n)):  # loaded now
        setattr(pipe, missing, load_component(pipe, cfg.model, missing, weight_dtype))
    return export_full(pipe, trained, cfg.out, weight_dtype, source, name, None if reduced else unloaded)


def load_component(pipe: Any, model: str, name: str, dtype: torch.dtype) -> torch.nn.Module:
    """The weights of the pipeline's ``empty_component`` ``name``, loaded from ``model`` in ``dtype`` as the
    pipeline would have loaded them."""
    return type(getattr(pipe, name)).from_pretrained(model, subfolder=name, dtype=dtype)
