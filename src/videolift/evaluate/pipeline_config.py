"""The pipeline file of ``videolift run`` (and the demo's preset): every stage's settings, validated.

Unknown keys are refused, so a typo fails before hours of work; ``PipelineConfig.load`` applies
``--set`` edits and names the file and field of any bad value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from videolift.core.errors import DataError, VideoliftError
from videolift.core.jsonl import validation_field

TOY = "toy"  # model name that resolves to the committed toy-world bases


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sampler(_Strict):
    steps: int = Field(50, description="sampling steps")
    guidance: float = Field(6.0, description="classifier-free guidance scale")
    dynamic_cfg: bool = Field(False, description="CogVideoX's dynamic guidance (use_dynamic_cfg)")
    lossless: bool = Field(False, description="lossless H.264 (yuv444p, crf 0), for tiny toy videos")
    batch_size: int = Field(4, description="videos per pipeline call")
    frames: int | None = Field(None, description="frames (default: the model's)")
    height: int | None = None
    width: int | None = None
    fps: int = Field(8, description="frame rate written to the MP4s (Wan 2.1: 16)")
    negative_prompt: str | None = Field(None, description="what guidance steers away from (default: empty)")


class PromptSet(_Strict):
    file: Path | None = Field(None, description="prompt file (.txt/.jsonl/.csv); toy runs may omit it")
    n: int = Field(64, description="toy world: number of distinct prompts drawn from the split")
    per_prompt: int = Field(1, description="videos per prompt")
    seed: int = 0


class HRA(_Strict):
    source: Literal["file", "toy-panel"] = Field("toy-panel", description="human ratings, or simulated ones")
    file: Path | None = Field(None, description="canonical HRA JSONL (source: file)")
    videos: Path | None = Field(None, description="videos root of the HRA file (source: file)")
    prompts: PromptSet = Field(default_factory=lambda: PromptSet(n=200, per_prompt=4))
    annotators: int = Field(3, description="simulated annotators per video (toy panel)")
    test_fraction: float = 0.2


class Critic(_Strict):
    adapter: Literal["lora", "full"] = "full"
    lr: float = 1e-4
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 8
    num_frames: int = Field(8, description="frames sampled per clip (the toy VLM was pretrained on 9)")
    layout: Literal["per_dimension", "one_pass"] = "per_dimension"
    describe: bool = Field(
        False, description="describe-then-rate critic (extension, `critic train --describe`)"
    )
    check: bool = Field(False, description="check-then-rate critic (extension, `critic train --check`)")
    check_threshold: float = Field(0.05, gt=0, lt=1, description="`critic train --check-threshold`")
    frame_sampling: Literal["uniform", "pairs"] = Field(
        "uniform", description="`critic train --frame-sampling`"
    )
    check_frames: int | None = Field(None, ge=1, description="`critic train --check-frames`")
    label_only_baseline: bool = Field(True, description="also train the --no-reasons ablation")
    parallel: bool = Field(
        False,
        description="train the critic and its label-only baseline at the same time, each in its own "
        "process with one thread (the demo on 2 cores: 23 % less time for both; on one GPU: twice the memory)",
    )
    score_batch_size: int = 24
    save_every: int = Field(
        200, ge=0, description="updates between checkpoints: a killed run resumes from the last (0: none)"
    )


class Align(_Strict):
    prompts: PromptSet = Field(default_factory=lambda: PromptSet(n=200, per_prompt=4, seed=1))
    methods: list[Literal["rwl", "rs"]] = Field(default_factory=lambda: ["rwl", "rs"])
    real: Path | None = Field(None, description="real video-text JSONL for the real-data term")
    real_toy: int = Field(
        0,
        ge=0,
        description="toy runs: render this many clean train-split clips as the real set (instead of `real`)",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="AlignConfig fields (lr, max_steps, ...)"
    )
    rewards: Literal["critic", "oracle"] = Field(
        "critic",
        description="what scores the alignment videos: the trained critic (the LiFT loop), or in the toy "
        "world the oracle, a perfect critic (measures alignment apart from the critic's errors)",
    )

    @model_validator(mode="after")
    def _one_real_set(self) -> Align:
        if self.real is not None and self.real_toy:
            raise ValueError("set either `real` (a JSONL) or `real_toy` (clips to render), not both")
        return self


class Evaluate(_Strict):
    prompts: PromptSet = Field(default_factory=lambda: PromptSet(n=64, per_prompt=2, seed=2))
    oracle: bool | None = Field(None, description="rate with the toy oracle too (default: on in toy runs)")


class PipelineConfig(_Strict):
    workdir: Path = Path("runs/lift")
    t2v: str = Field(TOY, description="T2V pipeline dir or Hub id ('toy': the committed toy base)")
    vlm: str = Field(TOY, description="critic base VLM dir or Hub id ('toy': the committed toy VLM)")
    seed: int = 0
    sampler: Sampler = Field(default_factory=Sampler)
    hra: HRA = Field(default_factory=HRA)
    critic: Critic = Field(default_factory=Critic)
    align: Align = Field(default_factory=Align)
    evaluate: Evaluate = Field(default_factory=Evaluate)

    @property
    def toy(self) -> bool:
        return self.t2v == TOY or self.hra.source == "toy-panel"

    @model_validator(mode="after")
    def _oracle_needs_toy(self) -> PipelineConfig:
        if self.align.rewards == "oracle" and not self.toy:
            raise ValueError("align.rewards 'oracle' needs the toy world (t2v: toy or hra.source: toy-panel)")
        return self

    @classmethod
    def load(cls, path: str | Path, sets: Sequence[str] = (), **overrides: Any) -> PipelineConfig:
        """The config in ``path``; ``sets`` are ``dotted.key=value`` edits (YAML values) applied
        first, then the top-level ``overrides`` that are not None."""
        path = Path(path)
        if not path.exists():
            raise DataError("pipeline config not found", file=path)
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise DataError(f"expected a mapping of settings, got a {type(data).__name__}", file=path)
        for item in sets:
            _apply_set(data, item, path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            field, msg = validation_field(exc)
            raise DataError(msg, file=path, field=field) from None
        if not cfg.workdir.is_absolute() and overrides.get("workdir") is None:
            cfg.workdir = path.parent / cfg.workdir
        from videolift.data.generate import is_hub_id

        for field in ("t2v", "vlm"):  # before any stage runs, and naming the file's field
            model = getattr(cfg, field)
            if model != TOY and not Path(model).expanduser().exists() and not is_hub_id(model):
                raise DataError(
                    f"{model!r}: no such directory (relative paths are read from {Path.cwd()}), "
                    "and not a Hub id like owner/name",
                    file=path,
                    field=field,
                )
        return cfg


def _apply_set(data: dict[str, Any], item: str, path: Path) -> None:
    """One ``--set a.b.c=VALUE``: VALUE parsed as YAML (``1`` an int, ``[rwl]`` a list, ``x`` a string)."""
    key, eq, raw = item.partition("=")
    if not eq or not key.strip():
        raise DataError(f"--set {item!r}: expected KEY=VALUE, e.g. align.settings.seed=1", file=path)
    *parents, leaf = key.strip().split(".")
    node = data
    for i, part in enumerate(parents):
        if node.get(part) is None:  # absent, or an empty section in the YAML
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise DataError(f"--set {item!r}: {'.'.join(parents[: i + 1])} is not a section", file=path)
    node[leaf] = yaml.safe_load(raw)


def toy_asset(name: str) -> str:
    """Directory of a committed toy-world base model ("t2v" or "vlm")."""
    path = Path(__file__).resolve().parent.parent / "toy" / "assets" / name
    if not (path / "config.json").exists() and not (path / "model_index.json").exists():
        command = "pretrain" if name == "t2v" else "pretrain-vlm"
        raise VideoliftError(
            f"the committed toy {name} base is missing at {path}; build it with "
            f"`videolift toy {command} --out {path}`"
        )
    return str(path)
