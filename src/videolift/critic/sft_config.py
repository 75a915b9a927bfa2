"""Settings of the supervised fine-tuning loop (``critic train``'s options) and the names of its outputs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass as checked_dataclass

from videolift.core.distributed import MAX_TIMEOUT_SECONDS, TRAINING_TIMEOUT_SECONDS
from videolift.core.errors import UsageError
from videolift.core.jsonl import validation_field
from videolift.core.settings import refuse_bool_number

TRAIN_CONFIG = "train_config.json"
TRAIN_LOG = "train_log.jsonl"
TENSORBOARD = "tensorboard"  # OUT/tensorboard: the train log's curves
TRAIN_SUMMARY = "train_summary.json"  # written last: marks a finished run
CHECKPOINTS = "checkpoints"
# What save_pretrained writes for a model or a peft adapter (processor files are rewritten as they are).
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "adapter_model.*",
    "model*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin*",
)
# ``extra`` keys recorded since a version (base_weights: 2026-12-06, check_weights: 2026-12-07); a run that
# did not record them resumes.
NEWER_EXTRA = frozenset({"base_weights", "check_weights"})
STEP_DIGITS = 6  # checkpoints/step-000100: the names critic train has always written
# Settings a --resume may change: when checkpoints are written and how much memory a step takes, not what
# is trained (gradient checkpointing recomputes the same activations): e.g. a run out of GPU memory
# continues with --gradient-checkpointing.
RESUMABLE_CHANGES = frozenset(
    {"save_every", "keep_checkpoints", "frame_cache_mb", "gradient_checkpointing", "val_every", "ddp_timeout"}
    | {"vision_cache_mb", "extra.cache_dir"}
)


# Settings of the critic's spec that are `critic train` options of the same name.
_SPEC_OPTIONS = frozenset(
    {"layout", "dimensions", "check_model", "check_instruction", "check_dimensions", "check_threshold"}
    | {"check_frames", "max_new_tokens"}
)


def option_name(field: str) -> str:
    """The ``critic train`` option of a setting (``batch_size`` -> ``--batch-size``); others as they are."""
    options = {f.name for f in fields(SFTConfig)} - {"betas", "frame_cache_mb", "extra"} | _SPEC_OPTIONS
    return "--" + field.replace("_", "-") if field in options else field


def settings_error(exc: ValidationError, what: str = "critic settings") -> UsageError:
    """A bad setting as a usage error naming its option and value (``--batch-size 0: ...``): the settings
    are ``critic train``'s options (the pipeline, whose settings come from its file, makes it exit 1)."""
    field, msg = validation_field(exc)
    if not field:
        return UsageError(f"{what}: {msg}")
    value = exc.errors()[0].get("input")
    shown = f" {value}" if isinstance(value, int | float | str) and not isinstance(value, bool) else ""
    return UsageError(f"{option_name(field)}{shown}: {msg}")


@checked_dataclass(config=ConfigDict(extra="forbid", allow_inf_nan=False))
class SFTConfig:
    """Hyper-parameters of the fine-tuning loop (the CLI options of ``critic train``). Validated when
    made: a value out of range raises a UsageError naming its option, before anything runs."""

    # critic.cli reads `critic train`'s options from these fields: their help text and defaults.
    adapter: Literal["lora", "full"] = Field(
        "lora", description="LoRA on the language model, or full fine-tuning."
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank (paper: 128 for 13B).")
    lora_alpha: int = Field(32, gt=0, description="LoRA alpha (paper: 2 x r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA layers' input.")
    lora_targets: list[str] | None = Field(
        None,
        description="Comma-separated layer names (leaves), e.g. q_proj,v_proj (default: every LM linear "
        "layer).",
    )
    tune_vision: bool = Field(
        False,
        description="Also train the vision tower: LoRA on its linear layers, or all of it with --adapter "
        "full (frozen by default).",
    )
    tune_projector: bool = Field(
        False, description="Also train the projector, saved whole with LoRA (frozen by default)."
    )
    lr: float = Field(1e-4, gt=0, description="Peak learning rate (paper: 1e-5 at 13B).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), description="AdamW betas (no option of `critic train`)."
    )
    warmup_ratio: float = Field(0.03, ge=0, le=1, description="Linear warmup as a fraction of the updates.")
    epochs: float = Field(3.0, gt=0, description="Passes over the examples (fractions allowed).")
    max_steps: int | None = Field(None, ge=1, description="Number of updates (overrides --epochs).")
    batch_size: int = Field(4, ge=1, description="Examples per device per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per update.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping (0: off).")
    max_answer_tokens: int | None = Field(256, ge=1, description="Longer answers are cut.")
    seed: int = Field(0, ge=0, description="Seeds LoRA init and data order.")
    save_every: int = Field(200, ge=0, description="Updates between checkpoints (0: only the final model).")
    val_every: int = Field(
        0,
        ge=0,
        description="Updates between validation losses on --val-data (0: at each epoch's end); and at the "
        "last.",
    )
    keep_checkpoints: int = Field(2, ge=1, description="Latest checkpoints kept.")
    ddp_timeout: int = Field(
        TRAINING_TIMEOUT_SECONDS,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds a process waits for the others at a collective (multi-process runs; NCCL's "
        "own default, 10 minutes, can end a run while the main process saves a large model).",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in backward: less memory, the same updates (a --resume may "
        "switch it).",
    )
    dtype: str = Field(
        "float32", description="Weights dtype at load (mixed precision: the accelerate config)."
    )
    frame_cache_mb: int = Field(
        2048,
        ge=0,
        description="MB of sampled frames kept in memory across epochs, per process (no option of "
        "`critic train`).",
    )
    vision_cache_mb: int = Field(
        2048,
        ge=0,
        description="MB of video features kept in memory per process when the vision tower and projector are "
        "frozen (Qwen2-VL, Qwen2.5-VL): each video is encoded once, not at every question and epoch; 0: off.",
    )
    num_frames: int = Field(8, ge=1, description="Frames fed per clip.")
    # The samplers of videolift.core.video.FRAME_SAMPLERS.
    frame_sampling: Literal["uniform", "pairs"] = Field(
        "uniform",
        description="uniform: spread over the clip. pairs: NUM_FRAMES/2 steps spread over the clip, each a "
        "frame and the next, so each 2-frame temporal patch (Qwen-VL) holds one step of motion.",
    )
    max_pixels: int | None = Field(None, ge=1, description="Per-frame pixel budget (Qwen-VL family).")
    min_pixels: int | None = Field(None, ge=1, description="Per-frame pixel floor (Qwen-VL family).")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="The caller's settings, checked on resume (no option)."
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_bool_number(cls.__pydantic_fields__[info.field_name].annotation, value)

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        from videolift.models.base import DTYPES

        if value not in DTYPES:
            raise ValueError(f"unknown dtype; use one of {', '.join(DTYPES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SFTConfig:
        if self.frame_sampling == "pairs" and self.num_frames % 2:
            raise ValueError(f"--frame-sampling pairs needs an even --num-frames, got {self.num_frames}")
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"--min-pixels {self.min_pixels} is above --max-pixels {self.max_pixels}")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _as_user_error(cls, values: Any, handler: Any) -> SFTConfig:
        try:
            return handler(values)
        except ValidationError as exc:
            raise settings_error(exc) from None

    def comparable(self, recorded: dict[str, Any] | None = None) -> dict[str, Any]:
        """What must not change between a run and its resumption; given the settings a run ``recorded``,
        without the ``extra`` keys it did not record yet (a run of an earlier version resumes)."""
        now = json.loads(json.dumps(asdict(self)))
        if recorded is not None:
            for key in NEWER_EXTRA - set(recorded.get("extra") or {}):
                now["extra"].pop(key, None)
        return now


@dataclass
class SFTResult:
    out: Path
    steps: int
    final_loss: float | None
    seconds: float
    resumed_from: int
    trainable_params: int
    stopped_early: bool
    main_process: bool = True
    val_loss: float | None = None  # on the validation examples after the last update, if any were given
