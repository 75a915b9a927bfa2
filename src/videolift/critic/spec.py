"""The critic's input spec: everything that decides what the model sees and is asked.

Saved as ``critic_spec.json`` next to the adapter (or full model) and the processor. Scoring and
evaluation read it instead of taking their own options, and ``check_*`` refuse a checkpoint whose
processor, model type or requested settings disagree with it, so scoring feeds what training fed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from videolift.core.errors import DataError, VideoliftError
from videolift.core.jsonl import atomic_write, read_json, validation_field
from videolift.core.reward import RewardConfig
from videolift.core.schema import DIMENSIONS, Dimension, parse_dimension
from videolift.core.settings import StrictModel
from videolift.critic.prompts import DEFAULT_QUESTIONS, DESCRIBE_INSTRUCTION, ONE_PASS_QUESTION

SPEC_FILE = "critic_spec.json"
SPEC_VERSION = 1


class CriticSpec(StrictModel):
    version: int = SPEC_VERSION
    base_model: str = Field(description="base VLM directory or Hub id the critic was fine-tuned from")
    model_type: str = Field(description="config.model_type of the base (selects the VLM family)")
    adapter: Literal["lora", "full"] = Field("lora", description="peft LoRA adapter or a full model")
    num_frames: int = Field(8, ge=1, description="frames fed per clip")
    frame_sampling: Literal["uniform", "pairs"] = Field(
        "uniform",
        description="uniform: num_frames spread over the whole clip regardless of its fps; pairs: num_frames / 2 "
        "steps spread so, each as a frame and the next (motion inside every 2-frame temporal patch); "
        "the processor's own sampling is off",
    )
    max_pixels: int | None = Field(None, description="per-frame pixel budget (Qwen-VL family); None: default")
    min_pixels: int | None = Field(None, description="per-frame pixel floor (Qwen-VL family); None: default")
    video_processor: dict[str, Any] = Field(
        default_factory=dict, description="the saved video processor's resizing settings, checked on load"
    )
    layout: Literal["per_dimension", "one_pass"] = "per_dimension"
    dimensions: list[Dimension] = Field(default_factory=lambda: list(DIMENSIONS))
    questions: dict[Dimension, str] = Field(default_factory=lambda: dict(DEFAULT_QUESTIONS))
    one_pass_question: str = ONE_PASS_QUESTION
    describe: bool = Field(
        False,
        description="describe-then-rate (extension): the critic answers describe_instruction first and "
        "each question carries that description",
    )
    describe_instruction: str = DESCRIBE_INSTRUCTION
    describe_max_new_tokens: int = Field(64, ge=1, description="generation budget of the description")
    check: bool = Field(
        False,
        description="check-then-rate (extension): the questions of check_dimensions carry the caption words "
        "that check_model, reading the caption as its answer to check_instruction, finds unlikely for the video",
    )
    check_model: str | None = Field(None, description="VLM that checks captions; None: the base model")
    check_dimensions: list[Dimension] = Field(
        default_factory=lambda: [Dimension.semantic_consistency],
        description="the questions that carry the check (per_dimension layout; one_pass always does); "
        "it is evidence about the caption",
    )
    check_instruction: str = DESCRIBE_INSTRUCTION
    check_threshold: float = Field(
        0.05, gt=0, lt=1, description="a caption token the check model gives less probability is unexpected"
    )
    check_frames: int | None = Field(
        None,
        ge=1,
        description="frames the check model reads, spread uniformly over the clip (None: the critic's own "
        "frames); for a check model pretrained on another view than the critic is fed",
    )
    reasons: bool = Field(True, description="answers carry reasons (False: the paper's label-only ablation)")
    max_new_tokens: int = Field(128, ge=1, description="generation budget per answer")
    reward: RewardConfig = Field(default_factory=RewardConfig)

    @field_validator("dimensions", "check_dimensions", mode="before")
    @classmethod
    def _dims(cls, value: Any) -> Any:
        dims = [parse_dimension(v) for v in value]
        if not dims or len(set(dims)) != len(dims):
            raise ValueError("dimensions must be a non-empty list without repeats")
        return [d for d in DIMENSIONS if d in dims]  # canonical order

    @model_validator(mode="after")
    def _pairs_even(self) -> CriticSpec:
        if self.frame_sampling == "pairs" and self.num_frames % 2:
            raise ValueError(f"frame_sampling 'pairs' needs an even num_frames, got {self.num_frames}")
        return self

    def question(self, dim: Dimension) -> str:
        return self.questions[dim]

    def check_in(self, dim: Dimension | None) -> bool:
        """Whether the question of ``dim`` (None: the one-pass question) carries the caption check."""
        return self.check and (dim is None or dim in self.check_dimensions)

    @property
    def checker(self) -> str:
        """The model that checks captions (check-then-rate critics)."""
        return self.check_model or self.base_model

    @property
    def check_view(self) -> tuple[int, str]:
        """(frames, sampling) the check model reads."""
        return (self.check_frames, "uniform") if self.check_frames else (self.num_frames, self.frame_sampling)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SPEC_FILE
        with atomic_write(path) as handle:
            handle.write(json.dumps(self.model_dump(mode="json"), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> CriticSpec:
        path = Path(directory) / SPEC_FILE
        if not path.exists():
            raise VideoliftError(
                f"{directory}: not a critic checkpoint (no {SPEC_FILE}); train one with `videolift critic train`"
            )
        data = read_json(path)
        if isinstance(data, dict) and data.get("version", SPEC_VERSION) > SPEC_VERSION:
            raise DataError(
                f"spec version {data['version']} is newer than this videolift supports", file=path
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            field, msg = validation_field(exc)
            raise DataError(msg, file=path, field=field) from None

    def check_settings(self, **requested: Any) -> None:
        """Refuse requested settings (non-None) that differ from what the critic was trained with."""
        wrong = [
            f"{name}={value!r} (trained with {getattr(self, name)!r})"
            for name, value in requested.items()
            if value is not None and value != getattr(self, name)
        ]
        if wrong:
            raise VideoliftError(
                "the critic must be fed as it was trained; mismatched settings: " + ", ".join(wrong)
            )


def view_key(num_frames: int, sampling: str) -> dict[str, Any]:
    """Cache-key entries of a frame view; uniform sampling adds none, so caches from before pairs stay valid."""
    return {"num_frames": num_frames, **({"frame_sampling": sampling} if sampling != "uniform" else {})}


def _plain(value: Any) -> Any:
    """JSON-able form; size dicts (plain or transformers' SizeDict) without their unset entries."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, int | float | str | bool) else str(value)


def video_processor_settings(processor: Any) -> dict[str, Any]:
    """The resizing-relevant settings of a processor's video processor, as plain JSON."""
    video = processor.video_processor
    keys = (
        "size",
        "crop_size",
        "patch_size",
        "temporal_patch_size",
        "merge_size",
        "do_resize",
        "do_center_crop",
    )
    return {key: _plain(getattr(video, key)) for key in keys if getattr(video, key, None) is not None}


def check_checkpoint(spec: CriticSpec, processor: Any, model_type: str, directory: str | Path) -> None:
    """The saved processor and the loaded model must be the ones the spec describes."""
    if model_type != spec.model_type:
        raise VideoliftError(
            f"{directory}: critic was trained on a {spec.model_type!r} model, but the base loads as {model_type!r}"
        )
    found = video_processor_settings(processor)
    if spec.video_processor and found != spec.video_processor:
        diff = sorted(
            k for k in set(found) | set(spec.video_processor) if found.get(k) != spec.video_processor.get(k)
        )
        raise VideoliftError(
            f"{directory}: the processor's video settings differ from {SPEC_FILE} ({', '.join(diff)}): "
            f"saved {[spec.video_processor.get(k) for k in diff]}, loaded {[found.get(k) for k in diff]}"
        )
