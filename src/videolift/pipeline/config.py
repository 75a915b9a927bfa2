"""The pipeline file of ``videolift run`` (and the demo's preset): every stage's settings, validated.

Unknown keys are refused, so a typo fails before hours of work; ``PipelineConfig.load`` applies
``--set`` edits and names the file and field of any bad value: out-of-range counts, ``align.settings``
that are not ``AlignConfig``'s, and input files or directories that do not exist are refused there,
before any stage runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from videolift.core.distributed import MAX_TIMEOUT_SECONDS
from videolift.core.errors import DataError, OptionError, VideoliftError
from videolift.core.jsonl import parse_problem, validation_field, yaml_problem
from videolift.core.settings import StrictModel, expand_home, field_default, read_settings
from videolift.critic.sft_config import SFTConfig

TOY = "toy"  # model name that resolves to the committed toy-world bases

# AlignConfig fields that the align stage (pipeline.stages.align_stage) fills in itself, so
# `align.settings` may not set them: where they come from instead. (`seed` and `cache_dir` are only
# defaults there: settings may override them.)
PIPELINE_ALIGN_FIELDS = {
    "model": "set by the pipeline: the model is `t2v`",
    "scores": "set by the pipeline: the score stage's WORKDIR/align_scores.jsonl",
    "videos": "set by the pipeline: the generated WORKDIR/align_videos",
    "out": "set by the pipeline: WORKDIR/aligned_METHOD",
    "real": "set by the pipeline: give the real set as `align.real` (or `align.real_toy`)",
    "method": "set by the pipeline: one run per method of `align.methods`",
    "resume": "set by the pipeline: it resumes a checkpoint of the same settings by itself",
    "overwrite": "set by the pipeline: a stage whose settings changed starts afresh by itself",
}


class Sampler(StrictModel):
    steps: int = Field(50, ge=1, description="sampling steps")
    guidance: float | None = Field(
        None,
        ge=0,
        description="classifier-free guidance scale (default: the family's, CogVideoX 6, Wan 5, Wan 2.2 A14B 4, LTX-Video 3)",
    )
    guidance_2: float | None = Field(
        None,
        ge=0,
        description="the low-noise expert's guidance scale, for two-expert Wan 2.2 (A14B) only (default: "
        "Wan-AI's 3, with `guidance` 4)",
    )
    dynamic_cfg: bool = Field(False, description="CogVideoX's dynamic guidance (use_dynamic_cfg)")
    lossless: bool = Field(False, description="lossless H.264 (yuv444p, crf 0), for tiny toy videos")
    batch_size: int | None = Field(
        None, ge=1, description="videos per pipeline call (default: by clip size, as `eval --batch-size`)"
    )
    frames: int | None = Field(None, ge=1, description="frames (default: the model's)")
    height: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    fps: int | None = Field(
        None,
        ge=1,
        description="frame rate written to the MP4s (default: the family's, CogVideoX 8, Wan 2.1 16, Wan 2.2 TI2V-5B 24, LTX-Video 25)",
    )
    negative_prompt: str | None = Field(None, description="what guidance steers away from (default: empty)")
    vae_tiling: bool = Field(
        False, description="tiled and sliced VAE decoding (`generate --vae-tiling`): less GPU memory, slower"
    )
    offload: Literal["none", "model", "sequential"] = Field(
        "none",
        description="`generate --offload`: model or sequential CPU offload (less GPU memory, the same videos)",
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None,
        description="`generate --dtype` (default: on a GPU the model's recommended one, float16 for CogVideoX-2B, "
        "else bfloat16; float32 on the CPU)",
    )


class PromptSet(StrictModel):
    file: Path | None = Field(
        None, description="prompt file (.txt/.jsonl/.csv; # starts a .txt comment line); toy runs may omit it"
    )
    n: int = Field(64, ge=1, description="toy world: number of distinct prompts drawn from the split")
    per_prompt: int = Field(1, ge=1, description="videos per prompt")
    seed: int = 0


class HRA(StrictModel):
    source: Literal["file", "toy-panel"] = Field("toy-panel", description="human ratings, or simulated ones")
    file: Path | None = Field(None, description="canonical HRA JSONL (source: file)")
    videos: Path | None = Field(None, description="videos root of the HRA file (source: file)")
    prompts: PromptSet = Field(default_factory=lambda: PromptSet(n=200, per_prompt=4))
    annotators: int = Field(3, ge=1, description="simulated annotators per video (toy panel)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of the rated videos held out")
    group_by: Literal["video", "prompt"] = Field(
        "video",
        description="keep each video, or each prompt, on one side of the split (`hra split --group-by`): "
        "prompt measures the critic on prompts it never saw",
    )


def _train_default(name: str) -> Any:
    """`critic train`'s default of a setting: what the critic stage trains with when it is unset."""
    return field_default(SFTConfig, name)


class Critic(StrictModel):
    adapter: Literal["lora", "full"] = "full"
    lr: float = Field(1e-4, gt=0)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="updates to train (default: from epochs)")
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1, description="micro-batches per update (`critic train --grad-accum`)")
    lora_r: int | None = Field(
        None,
        ge=1,
        description=f"LoRA rank (default: `critic train`'s {_train_default('lora_r')}; paper: 128 for 13B)",
    )
    lora_alpha: int | None = Field(
        None, gt=0, description=f"LoRA alpha (default: {_train_default('lora_alpha')}; paper: 2 x rank)"
    )
    # Unset: `critic train`'s defaults. What a large critic on a GPU needs, by `critic train`'s names.
    lora_targets: list[str] | None = Field(
        None, description="`critic train --lora-targets` (default: every LM linear)"
    )
    weight_decay: float | None = Field(
        None, ge=0, description=f"AdamW weight decay (default {_train_default('weight_decay')})"
    )
    warmup_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description=f"share of updates warming up (default {_train_default('warmup_ratio')})",
    )
    gradient_checkpointing: bool = Field(False, description="`critic train --gradient-checkpointing`")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None,
        description=f"`critic train --dtype` (default {_train_default('dtype')}; see docs/critic.md before bf16)",
    )
    max_pixels: int | None = Field(
        None, ge=1, description="`critic train --max-pixels`: per-frame pixel budget"
    )
    min_pixels: int | None = Field(None, ge=1, description="`critic train --min-pixels`")
    num_frames: int = Field(8, ge=1, description="frames sampled per clip (the toy VLM was pretrained on 9)")
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
    score_batch_size: int = Field(24, ge=1)
    save_every: int = Field(
        200, ge=0, description="updates between checkpoints: a killed run resumes from the last (0: none)"
    )
    ddp_timeout: int | None = Field(
        None,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description=f"`critic train --ddp-timeout`: seconds a process waits for the others at a collective "
        f"(default {_train_default('ddp_timeout')})",
    )
    val_every: int | None = Field(
        None,
        ge=0,
        description="log the held-out split's validation loss every N updates (0: at each epoch's end; "
        "`critic train --val-every`); unset: none",
    )

    @model_validator(mode="after")
    def _pixel_budget(self) -> Critic:
        if self.min_pixels and self.max_pixels and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is above max_pixels {self.max_pixels}")
        return self

    @model_validator(mode="after")
    def _check_settings_need_check(self) -> Critic:
        """As `critic train` refuses --check-* without --check: else a plain critic is trained, its spec
        recording the frames and threshold of a check it never had. Given ones only (the default stays)."""
        given = sorted({"check_threshold", "check_frames"} & self.model_fields_set)
        if not self.check and given:
            raise ValueError(f"{', '.join(given)}: needs critic.check: true (they set up the check it adds)")
        return self

    @field_validator("lora_targets")
    @classmethod
    def _some_targets(cls, value: list[str] | None) -> list[str] | None:
        """[] would train every LM linear layer, as unset does, but as another stage setting."""
        if value is not None and not [v for v in value if v.strip()]:
            raise ValueError(
                "names no layer: give at least one (e.g. [q_proj, v_proj]), or leave it unset for every LM linear layer"
            )
        return value

    @field_validator("frame_sampling")
    @classmethod
    def _pairs_even(cls, value: str, info: ValidationInfo) -> str:
        """As the critic's spec will check, once its stage starts."""
        frames = info.data.get("num_frames")
        if value == "pairs" and frames is not None and frames % 2:
            raise ValueError(f"'pairs' needs an even num_frames, got {frames}")
        return value


class Align(StrictModel):
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
    parallel: bool = Field(
        False,
        description="align with each method at the same time, each in its own process with one thread "
        "(the demo on 2 cores; on one GPU: twice the memory)",
    )

    @field_validator("methods")
    @classmethod
    def _some_method(cls, value: list[str]) -> list[str]:
        """[] would generate and score the alignment videos, align nothing and evaluate the base alone."""
        if not value:
            raise ValueError(
                "names no method: give at least one of rwl, rs (the run aligns the model with each)"
            )
        return value

    @field_validator("settings")
    @classmethod
    def _settings_home(cls, value: dict[str, Any]) -> dict[str, Any]:
        """`~` in the path settings, as AlignConfig reads them (and as the stage keys its inputs)."""
        from videolift.align.config import PATH_FIELDS

        return {k: expand_home(v) if k in PATH_FIELDS and isinstance(v, str) else v for k, v in value.items()}

    @model_validator(mode="after")
    def _one_real_set(self) -> Align:
        if self.real is not None and self.real_toy:
            raise ValueError("set either `real` (a JSONL) or `real_toy` (clips to render), not both")
        return self


class Evaluate(StrictModel):
    prompts: PromptSet = Field(default_factory=lambda: PromptSet(n=64, per_prompt=2, seed=2))
    oracle: bool | None = Field(None, description="rate with the toy oracle too (default: on in toy runs)")
    clip: str | None = Field(
        None,
        description="a CLIP model (transformers CLIPModel dir or Hub id) that also scores every video: CLIPSIM "
        "and temporal consistency (`eval --clip`), a rater independent of the critic",
    )

    @field_validator("clip")
    @classmethod
    def _clip_home(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty (leave it out for no CLIP scores)")
        return None if value is None else expand_home(value)


class PipelineConfig(StrictModel):
    workdir: Path = Path("runs/lift")
    t2v: str = Field(TOY, description="T2V pipeline dir or Hub id ('toy': the committed toy base)")
    vlm: str = Field(TOY, description="critic base VLM dir or Hub id ('toy': the committed toy VLM)")
    seed: int = Field(0, ge=0, lt=2**32, description="seed of every stage (numpy takes 0..2**32-1)")
    sampler: Sampler = Field(default_factory=Sampler)
    hra: HRA = Field(default_factory=HRA)
    critic: Critic = Field(default_factory=Critic)
    align: Align = Field(default_factory=Align)
    evaluate: Evaluate = Field(default_factory=Evaluate)

    @property
    def toy(self) -> bool:
        return self.t2v == TOY or self.hra.source == "toy-panel"

    @field_validator("workdir", "t2v", "vlm", mode="before")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():  # Path("") is the current directory
            raise ValueError("is empty")
        return value

    @field_validator("t2v", "vlm")
    @classmethod
    def _model_home(cls, value: str) -> str:
        return expand_home(value)

    @model_validator(mode="after")
    def _oracle_needs_toy(self) -> PipelineConfig:
        if self.align.rewards == "oracle" and not self.toy:
            raise ValueError("align.rewards 'oracle' needs the toy world (t2v: toy or hra.source: toy-panel)")
        if self.toy:  # the toy world's videos are rated by the oracle, in its pixels: nothing else fits
            from videolift.toy.oracle import CLIP_SIZE, sizes_not_rated

            if other := sizes_not_rated(self.sampler.frames, self.sampler.height, self.sampler.width):
                raise ValueError(
                    f"sampler.{', sampler.'.join(other)}: the toy world's oracle rates clips of "
                    f"{CLIP_SIZE} (frames x height x width); leave it unset"
                )
        return self

    @classmethod
    def load(cls, path: str | Path, sets: Sequence[str] = (), **overrides: Any) -> PipelineConfig:
        """The config in ``path``; ``sets`` are ``dotted.key=value`` edits (YAML values) applied
        first, then the top-level ``overrides`` that are not None."""
        path = Path(path)
        data = read_settings(path, name="pipeline config", fields="settings")
        for item in sets:
            _apply_set(data, item, path)
        given = {k: v for k, v in overrides.items() if v is not None}
        data.update(given)
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            field, msg = validation_field(exc)
            if field.split(".")[0] in given:  # a bad value from the command line is not blamed on the file
                raise OptionError(msg, file="command line", field=field) from None
            raise _settings_error(msg, path, field, sets) from None
        if not cfg.workdir.is_absolute() and overrides.get("workdir") is None:
            cfg.workdir = path.parent / cfg.workdir
        from videolift.core.files import refuse_file_as_dir

        refuse_file_as_dir(cfg.workdir, "workdir")  # `run` (even --plan) and `demo`, before any stage
        if problem := _workdir_problem(cfg):  # the workdir as the stages will read it
            if "workdir" in given:
                raise OptionError(problem, file="command line", field="workdir")
            raise _settings_error(problem, path, "workdir", sets)
        if problem := _align_settings_problem(cfg.align.settings):
            field, msg = problem
            field = "align.settings" + (f".{field}" if field else "")
            raise _settings_error(msg, path, field, sets)
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
        for field, value, kind, needed in cfg._inputs():  # the stages' inputs, looked for now
            problem = needed if value is None else _input_problem(Path(value), kind)
            if problem:
                raise DataError(problem, file=path, field=field)
            if value is not None and kind == "file":
                _read_input(field, Path(value))  # its content too: not found hours later by its stage
        return cfg

    def _inputs(self) -> list[tuple[str, Any, str, str | None]]:
        """The files and directories the stages will read that the config names (none the pipeline
        writes itself), as (field, path or None, "file" | "dir", why it is needed when unset, or None
        when it is optional). Paths the run does not read (the prompts of ratings that are given)
        are left out."""
        hra, settings = self.hra, self.align.settings
        if hra.source == "file":
            needs = "hra.source 'file' needs {}: the ratings are read, not made"
            inputs = [
                ("hra.file", hra.file, "file", needs.format("the HRA JSONL")),
                ("hra.videos", hra.videos, "dir", needs.format("the root of its videos' paths")),
            ]
        else:
            inputs = [("hra.prompts.file", hra.prompts.file, "file", None)]
        prompts_needed = (
            None if self.toy else "needed beyond the toy world: only toy runs draw their own prompts"
        )
        return [
            *inputs,
            ("align.prompts.file", self.align.prompts.file, "file", prompts_needed),
            ("evaluate.prompts.file", self.evaluate.prompts.file, "file", prompts_needed),
            ("align.real", self.align.real, "file", None),
            ("align.settings.reward_config", settings.get("reward_config"), "file", None),
            ("align.settings.real_videos", settings.get("real_videos"), "dir", None),
            ("align.settings.validation_prompts", settings.get("validation_prompts"), "file", None),
            ("align.settings.validation_real", settings.get("validation_real"), "file", None),
            ("align.settings.validation_real_videos", settings.get("validation_real_videos"), "dir", None),
        ]


def _align_settings_problem(settings: dict[str, Any]) -> tuple[str, str] | None:
    """(field, message) of the first of ``settings`` that the align stage's ``AlignConfig`` would
    refuse, checked by ``AlignConfig`` itself (the fields the pipeline fills in given stand-ins);
    field "" for a problem of the settings together, e.g. height without width."""
    from videolift.align.config import AlignConfig

    for key in settings:
        if key in PIPELINE_ALIGN_FIELDS:
            return key, PIPELINE_ALIGN_FIELDS[key]
    stand_ins = {"model": TOY, "scores": "align_scores.jsonl", "videos": "align_videos", "out": "aligned"}
    try:
        AlignConfig.model_validate(stand_ins | settings)
    except ValidationError as exc:
        return validation_field(exc)
    return None


def _read_input(field: str, path: Path) -> None:
    """Read an input file as its stage will, raising the stage's own error (file, line, field)."""
    from videolift.align.weights import read_real
    from videolift.core.reward import RewardConfig
    from videolift.data.hra_file import read_hra
    from videolift.data.prompt_files import read_prompts

    if field == "hra.file":
        read_hra(path)  # as `hra split` and the split stage read it
    elif field.endswith("prompts.file") or field == "align.settings.validation_prompts":
        read_prompts(path)
    elif field == "align.real":
        read_real(path)
    elif field == "align.settings.validation_real":
        read_real(path, "--validation-real")
    elif field == "align.settings.reward_config":
        RewardConfig.load(path)


def _input_problem(path: Path, kind: str) -> str | None:
    """Why ``path`` cannot be read as an input ``kind`` ("file" or "dir"), or None if it can."""
    if not path.exists():
        problem = "no such file" if kind == "file" else "no such directory"
    elif kind == "file" and path.is_dir():
        problem = "a directory, not a file"
    elif kind == "dir" and not path.is_dir():
        problem = "a file, not a directory"
    else:
        return None
    where = "" if path.is_absolute() else f" (relative paths are read from {Path.cwd()})"
    return f"{str(path)!r}: {problem}{where}"


def _workdir_problem(cfg: PipelineConfig) -> str | None:
    """As `align` refuses an OUT in its model (its checkpoints would count as the model's weights): at
    load, not at the align stage. (The committed toy base is never a workdir's home: not checked.)"""
    from videolift.core.files import out_dir_problem

    if cfg.t2v == TOY:
        return None
    advice, label = "give the run a workdir outside the model", f"workdir {cfg.workdir}"
    return out_dir_problem(cfg.workdir, [("t2v", cfg.t2v)], advice, inside=True, label=label)


def _settings_error(msg: str, path: Path, field: str, sets: Sequence[str]) -> DataError:
    """A refused setting of the file; the command line's (exit status 2) when a ``--set`` gave it or
    edited the section refused as a whole."""
    note = _set_note(field, sets)
    return (OptionError if note else DataError)(msg + note, file=path, field=field)


def _set_note(field: str, sets: Sequence[str]) -> str:
    """What the ``--set`` edits had to do with a bad ``field``: they gave it, or edited the section whose
    settings together are refused (e.g. critic's min_pixels above its max_pixels)."""
    keys = [i.partition("=")[0].strip() for i in sets]
    if given := [k for k in keys if f"{field}.".startswith(f"{k}.")]:
        return f" (set by --set {given[-1]}=...)"
    if inside := [k for k in keys if k.startswith(f"{field}.")]:
        return f" (edited by --set {', '.join(inside)})"
    return ""


def _apply_set(data: dict[str, Any], item: str, path: Path) -> None:
    """One ``--set a.b.c=VALUE``: VALUE parsed as YAML (``1`` an int, ``[rwl]`` a list, ``x`` a string)."""
    key, eq, raw = item.partition("=")
    if not eq or not key.strip():
        raise OptionError(f"--set {item!r}: expected KEY=VALUE, e.g. align.settings.seed=1", file=path)
    *parents, leaf = key.strip().split(".")
    node = data
    for i, part in enumerate(parents):
        if node.get(part) is None:  # absent, or an empty section in the YAML
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise OptionError(f"--set {item!r}: {'.'.join(parents[: i + 1])} is not a section", file=path)
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise OptionError(f"--set {item!r}: the value is not YAML ({yaml_problem(exc)})", file=path) from None
    except (ValueError, RecursionError) as exc:  # an integer over 4,300 digits, nesting past the stack
        raise OptionError(
            f"--set {item!r}: the value is not YAML ({parse_problem(exc)})", file=path
        ) from None


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
