"""The VLM made ready for fine-tuning: LoRA or frozen modules as the settings say."""

from __future__ import annotations

import warnings
from typing import Any

from videolift.core.errors import VideoliftError
from videolift.critic.sft_config import SFTConfig


def lora_target_modules(model: Any, family: Any, cfg: SFTConfig) -> Any:
    """peft's ``target_modules``: the layers ``--lora-targets`` names (refused if none), else the family's."""
    if not cfg.lora_targets:
        return family.lora_target_regex(model, vision=cfg.tune_vision)
    wanted = set(cfg.lora_targets)
    names = [n for n in family.lora_targets(model, vision=cfg.tune_vision) if n.rsplit(".", 1)[-1] in wanted]
    if not names:
        raise VideoliftError(f"--lora-targets {','.join(cfg.lora_targets)}: matches no linear layer")
    return names


def check_lora_targets(base: str, cfg: SFTConfig) -> None:
    """``--lora-targets`` checked on the model built from its config on the meta device (no weights
    read): for critics whose first passes run long before the model is loaded to train."""
    if cfg.adapter != "lora" or not cfg.lora_targets:
        return
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForImageTextToText

    from videolift.models.vlm import get_family

    with init_empty_weights():
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(base))
    lora_target_modules(model, get_family(model.config.model_type), cfg)


def _require_grad(_module: Any, _inputs: Any, output: Any) -> None:
    """Forward hook: the output requires grad, so checkpointed layers above it see an input that does."""
    output.requires_grad_(True)


def _checkpointing(model: Any, tune_vision: bool) -> None:
    """Gradient checkpointing on, and the input embeddings' outputs made to require grad so that checkpointed
    layers above frozen ones pass gradients on: transformers 5 does it for every sub-model's embeddings, the
    vision tower's patch embedding too, so a frozen tower was recorded, recomputed and differentiated for
    each video (Qwen2-VL-7B: ~7K patches a clip) for nothing. A frozen tower's output needs no grad: then
    only the language model's embeddings get the hook (the same gradients, tested)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.2x; the old name goes in v6
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if not tune_vision:
        model.disable_input_require_grads()
        model.get_input_embeddings().register_forward_hook(_require_grad)


def prepare_model(model: Any, family: Any, cfg: SFTConfig):
    """Apply LoRA or freeze modules per config; returns the (possibly peft-wrapped) model."""
    if cfg.adapter == "full":
        if cfg.gradient_checkpointing:
            _checkpointing(model, cfg.tune_vision)
        for name in family.vision_modules(model):
            model.get_submodule(name).requires_grad_(cfg.tune_vision)
        for name in family.projector_modules(model):  # after the tower: Qwen's projector lives inside it
            model.get_submodule(name).requires_grad_(cfg.tune_projector)
        return model
    from peft import LoraConfig, get_peft_model

    target = lora_target_modules(model, family, cfg)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=target,
        modules_to_save=family.projector_modules(model) if cfg.tune_projector else None,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft probes a deprecated transformers attribute
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, lora)
    # After peft: on a checkpointing model it hooks every sub-model's embeddings again (enable_input_require_grads)
    if cfg.gradient_checkpointing:
        _checkpointing(model, cfg.tune_vision)
    return peft_model


def load_model(base: str, cfg: SFTConfig) -> tuple[Any, Any, Any]:
    """The base VLM in training mode with only what ``cfg`` trains left trainable; its processor, family."""
    from videolift.models.vlm import get_family, load_vlm

    model, processor = load_vlm(base, dtype=cfg.dtype)
    family = get_family(model.config.model_type)
    family.configure_processor(processor, cfg.max_pixels, cfg.min_pixels)
    model.config.use_cache = False
    model = prepare_model(model, family, cfg)
    model.train()
    return model, processor, family


def eos_ids(model: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    return [eos] if isinstance(eos, int) else list(eos or [])
