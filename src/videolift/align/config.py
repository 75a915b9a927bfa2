"""``AlignConfig``: every knob of reward-weighted alignment, documented in one place.

The field descriptions are the CLI help and the reference of docs/align.md. Defaults follow the
LiFT release (AdamW 0.9/0.95, wd 1e-4, lr 1e-5, 200 warmup steps, clip 1.0); the paper's global
batch of 64 is ``batch_size x grad_accum x processes``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import to_jsonable_python

from videolift.core.distributed import MAX_TIMEOUT_SECONDS, TRAINING_TIMEOUT_SECONDS
from videolift.core.errors import DataError, OptionError
from videolift.core.files import HashMemo, content_hash, out_dir_problem, weights_digest
from videolift.core.hub import hub_commit
from videolift.core.jsonl import validation_field
from videolift.core.memory import BATCH_PIXELS
from videolift.core.settings import StrictModel, expand_home, read_settings

# The folders of OUT a run writes (its latent cache aside): --overwrite deletes them, the export replaces
# its own (models.base's FULL_DIR and LORA_DIR, named here: that module imports torch, the CLI must not).
RUN_DIRS = ("checkpoints", "logs", "validation", "pipeline", "lora")

HASH_MEMO = "file_hashes.json"  # in the cache directory: content hashes of videos and weights, by path

# Fields that may change between a run and its --resume without changing what is being trained
# (``out`` too: a run directory moved to another disk resumes where it now is).
RESUMABLE_CHANGES = frozenset(
    {
        "max_steps",
        "resume",
        "overwrite",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "num_workers",
        "ddp_timeout",  # how long ranks wait for each other, not what they compute
        "out",
        "hash_content",  # how cached files are named, not what they hold
        # how many videos the VAE encodes at once, not what it encodes (but to or from 1, ~2e-5: cache.py)
        "encode_batch_size",
        # memory, not the updates: activations recomputed in backward are the same (a run out of GPU
        # memory continues with it)
        "gradient_checkpointing",
        # what is sampled to watch the run, not what it trains (align.validation)
        "validation_prompts",
        "validation_every",
        "validation_steps",
        "validation_seed",
        "validation_guidance",
        "validation_guidance_2",
        "validation_real",
        "validation_real_videos",
    }
)


def option_of(field: str) -> str:
    """The `videolift align` option of a field (``batch_size`` -> ``--batch-size``)."""
    top = field.split(".")[0]
    return "--lora/--full" if top == "finetune" else "--" + top.replace("_", "-")


Beta = Annotated[float, Field(ge=0, lt=1)]
# What runs did before an option existed, where that is not the option's default: a full fine-tune
# trained every weight until --full-scope came (2026-12-06).
BEFORE_THE_OPTION = {"full_scope": "all"}


# Fields naming files or directories (the model: when local): --resume compares where they lead, so
# `dir/` and `dir`, or a relative and an absolute spelling of one file, are the same setting.
PATH_FIELDS = frozenset(
    {"model", "scores", "videos", "real", "real_videos", "cache_dir", "reward_config"}
    | {"validation_prompts", "validation_real", "validation_real_videos"}
)


def _same_place(a: Any, b: Any) -> bool:
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _default(info: Any) -> Any:
    return to_jsonable_python(info.get_default(call_default_factory=True))


class _Together(ValueError):
    """Settings refused together, by field name: ``load`` blames the command line when it gave one of them."""

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields


class AlignConfig(StrictModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN / inf settings train nothing

    # ---- inputs / outputs -------------------------------------------------------------------------
    model: str = Field(description="diffusers pipeline directory or Hub id of the T2V model to align")
    family: str | None = Field(
        None,
        description="T2V model family: cogvideox | wan | ltx (default: read from the model's model_index.json)",
    )
    scores: Path = Field(description="JSONL from `critic score`: video, prompt, ratings, reward")
    videos: Path = Field(description="root that the scores file's video paths are relative to")
    out: Path = Field(description="output directory: exported model, checkpoints, logs, cache")
    real: Path | None = Field(None, description="optional real video-text JSONL (`video`, `prompt`)")
    real_videos: Path | None = Field(
        None, description="root of the real set's video paths (default: the real JSONL's directory)"
    )
    cache_dir: Path | None = Field(None, description="latent/text cache directory (default OUT/cache)")

    # ---- objective ------------------------------------------------------------------------------
    method: Literal["rwl", "rs"] = Field(
        "rwl",
        description="rwl: reward-weighted likelihood (paper); rs: rejection sampling, weight 1 for "
        "videos rated Good on every dimension, the rest dropped",
    )
    lambda_real: float = Field(1.0, ge=0, description="weight of the real-data term (paper: 1)")
    weight_transform: Literal["raw", "normalized", "exp"] = Field(
        "raw",
        description="reward -> loss weight. raw: w = r (paper). Extensions: normalized: w = r / mean(r); "
        "exp: w = exp(r / temperature), rescaled to mean 1",
    )
    exp_temperature: float = Field(0.1, gt=0, description="temperature of weight_transform=exp")
    reward_config: Path | None = Field(
        None,
        description="extension: recompute each synthetic video's reward from its labels in the scores "
        "file with this reward config (YAML/JSON: label scores, aggregation, per-dimension weights) "
        "instead of using its `reward`; tries another mapping without scoring the videos again",
    )
    syn_sampling: Literal["uniform", "weighted"] = Field(
        "uniform",
        description="how synthetic videos are drawn. uniform: each equally often, its loss times its "
        "weight (paper). Extension: weighted: drawn with probability proportional to the weight, each "
        "loss times the mean weight: the same objective in expectation, with far less variance when a "
        "few videos carry most of the weight (e.g. exp weights)",
    )
    synthetic_min_timestep: int = Field(
        0,
        ge=0,
        description="extension: synthetic videos train only at t >= this (of the scheduler's "
        "num_train_timesteps), where layout, content and motion are decided; real videos train at "
        "every t. 0: every t for both (paper). Keeps the model from learning its own samples' blur",
    )
    text_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="extension: each training video's prompt is replaced by the empty prompt with this "
        "probability, so the unconditional prediction that classifier-free guidance subtracts is "
        "fine-tuned along with the conditional one. 0: off (paper)",
    )

    # ---- what is trained --------------------------------------------------------------------------
    finetune: Literal["full", "lora"] = Field(
        "full",
        description="full: the transformer's weights (paper; see full_scope); lora: peft adapters only",
    )
    full_scope: Literal["blocks", "all"] = Field(
        "blocks",
        description="what a full fine-tune trains: blocks, the transformer blocks (the paper's release); "
        "all, every transformer weight (patch and time embeddings, output layers too)",
    )
    expert: Literal["high", "low"] | None = Field(
        None,
        description="high | low: which expert of a two-expert Wan 2.2 A14B pipeline the run trains (required there, refused "
        "for one-transformer models). high: `transformer`, the steps whose shifted timestep is at least "
        "boundary_ratio x 1000; low: `transformer_2`, the rest. The run draws only that expert's timesteps and "
        "trains only its weights; the other stays as loaded. Both: two runs, --expert high, then --expert low "
        "with --model OUT/pipeline of the first (full), or each from the base (LoRA: load the low one with "
        "load_into_transformer_2=True) (docs/align.md)",
    )
    lora_rank: int = Field(64, ge=1, description="LoRA rank")
    lora_alpha: float = Field(64.0, gt=0, description="LoRA alpha (scale = alpha / rank)")
    lora_targets: list[str] = Field(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"],
        description="module names LoRA adapts, comma-separated on the command line (default: the "
        "attention projections; add ff.net.0.proj,ff.net.2 for the feed-forward layers)",
    )

    # ---- optimisation -----------------------------------------------------------------------------
    lr: float = Field(1e-5, gt=0, description="AdamW learning rate")
    betas: tuple[Beta, Beta] = Field((0.9, 0.95), description="AdamW betas, each in [0, 1)")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    lr_scheduler: Literal["constant_with_warmup", "cosine", "linear"] = Field(
        "constant_with_warmup", description="learning-rate schedule after warm-up (paper: not stated)"
    )
    warmup_steps: int = Field(200, ge=0, description="linear warm-up, in optimizer steps")
    max_steps: int = Field(1000, ge=1, description="optimizer steps to train")
    batch_size: int = Field(1, ge=1, description="synthetic videos per process per micro-step")
    real_batch_size: int | None = Field(
        None,
        ge=1,
        description="real videos per process per micro-step (default: batch_size); also the batches of "
        "--validation-real",
    )
    grad_accum: int = Field(1, ge=1, description="micro-steps per optimizer step")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="autocast precision; frozen encoders also run in it (paper: bf16)"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward")
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="EMA of the trained weights, exported instead of the raw ones; off if unset. diffusers' "
        "EMAModel: decay 0 at the first update, then min(ema_decay, (1 + s) / (10 + s))",
    )
    seed: int = Field(
        0, ge=0, lt=2**32, description="seed of init, data order, latent sampling, timesteps, noise"
    )

    # ---- preprocessing (part of the cache key) ----------------------------------------------------
    frames: int | None = Field(None, ge=1, description="keep the first N frames (default: all)")
    frame_stride: int = Field(1, ge=1, description="take every k-th frame before cutting to `frames`")
    height: int | None = Field(None, ge=1, description="resize (cover) + centre-crop height (default: as is)")
    width: int | None = Field(None, ge=1, description="resize (cover) + centre-crop width (default: as is)")
    hash_content: bool = Field(
        False,
        description="key cached videos by their SHA-256 instead of path + size + mtime, so copied or "
        "moved videos reuse the cache (each file is hashed once, memoised in CACHE/file_hashes.json)",
    )
    vae_tiling: bool = Field(
        False,
        description="encode videos for the cache in overlapping spatial tiles (diffusers' "
        "vae.enable_tiling): much less accelerator memory for large frames, slightly different latents",
    )
    encode_batch_size: int | None = Field(
        None,
        ge=1,
        description="videos per VAE call when caching (default: by clip size, as many as hold "
        f"{BATCH_PIXELS:,} frame pixels, at most 16: 16 toy clips of 9x64x64, one 49x480x720 clip)",
    )

    # ---- bookkeeping ------------------------------------------------------------------------------
    checkpoint_every: int = Field(100, ge=1, description="optimizer steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="most recent checkpoints kept on disk")
    log_every: int = Field(1, ge=1, description="optimizer steps between log lines")
    num_workers: int = Field(2, ge=0, description="DataLoader workers reading cached tensors")
    ddp_timeout: int = Field(
        TRAINING_TIMEOUT_SECONDS,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="seconds a process waits for the others at a collective (multi-process runs; NCCL's own "
        "default, 10 minutes, can end a run while the main process writes a large model's export)",
    )
    resume: bool = Field(False, description="continue from the last complete checkpoint in OUT")
    validation_prompts: Path | None = Field(
        None,
        description="prompt file (.txt/.jsonl/.csv; # starts a .txt comment line) sampled into "
        "OUT/validation/step-N/ before training, every --validation-every steps and at the end, with fixed "
        "seeds (docs/align.md)",
    )
    validation_every: int | None = Field(
        None,
        ge=1,
        description="optimizer steps between validation samples and held-out losses (default: --checkpoint-every)",
    )
    validation_steps: int = Field(50, ge=1, description="denoising steps of the validation samples")
    validation_seed: int = Field(
        0,
        ge=0,
        lt=2**32,
        description="base seed of the validation samples (as `videolift generate --seed`) and of the held-out "
        "loss's noise",
    )
    validation_guidance: float | None = Field(
        None,
        gt=0,
        description="classifier-free guidance scale of the validation samples (default: the model's, as "
        "`videolift generate`'s: CogVideoX 6, Wan 5, Wan 2.2 A14B 4, LTX-Video 3)",
    )
    validation_guidance_2: float | None = Field(
        None,
        gt=0,
        description="the low-noise expert's guidance scale of the validation samples, for two-expert Wan 2.2 "
        "(A14B) only (default: Wan-AI's 3)",
    )
    validation_real: Path | None = Field(
        None,
        description="held-out video-text JSONL (`video`, `prompt`, as --real) whose diffusion loss, at noise "
        "and timesteps fixed for the run, goes to OUT/logs/validation.jsonl before training, every "
        "--validation-every steps and at the end (docs/align.md)",
    )
    validation_real_videos: Path | None = Field(
        None, description="root of --validation-real's videos (default: its folder)"
    )
    overwrite: bool = Field(
        False,
        description="start afresh: delete an earlier run's checkpoints, logs, exported model and summary in "
        "OUT (its latent cache stays: keyed by content)",
    )

    @field_validator("lora_targets", mode="before")
    @classmethod
    def _split_targets(cls, value: object) -> object:
        """``--lora-targets to_q,to_v`` arrives as one string."""
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not value:
            raise ValueError("needs at least one module name")
        return value

    @field_validator(
        "model",
        "scores",
        "videos",
        "out",
        "real",
        "real_videos",
        "cache_dir",
        "validation_prompts",
        "validation_real",
        "validation_real_videos",
        mode="before",
    )
    @classmethod
    def _not_blank(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():  # Path("") is the current directory
            raise ValueError("is empty")
        return value

    @field_validator("model")
    @classmethod
    def _model_home(cls, value: str) -> str:
        return expand_home(value)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: object) -> object:
        """YAML reads an unquoted ``mixed_precision: no`` as false (accelerate's files quote it); the dtype
        names that ``--dtype`` options take mean the same."""
        if value is False:
            return "no"
        return {"bfloat16": "bf16", "float16": "fp16"}.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> AlignConfig:
        if self.resume and self.overwrite:
            raise _Together(
                "resume and overwrite exclude each other: continue the run, or start it again",
                "resume",
                "overwrite",
            )
        if self.validation_real_videos is not None and self.validation_real is None:
            raise _Together(
                "validation_real_videos (--validation-real-videos) needs validation_real (--validation-real), "
                "the clips it holds",
                "validation_real_videos",
                "validation_real",
            )
        if (self.height is None) != (self.width is None):
            raise _Together("give both height and width, or neither", "height", "width")
        # In it, the run's checkpoints and exported weights would count as the model's (its digest).
        models, advice = [("model (--model)", self.model)], "give the run its own directory"
        if problem := out_dir_problem(self.out, models, advice, inside=True, label=f"out (--out) {self.out}"):
            raise _Together(problem, "out", "model")
        # In a folder of OUT the run deletes (--overwrite) or replaces (its export): gone before it is read
        # again (a frozen expert's files, copied at the end; a bf16 run's encoders).
        local = Path(self.model).expanduser()
        for name in RUN_DIRS if local.is_dir() else ():
            if (own := (self.out / name).resolve()) == local.resolve() or own in local.resolve().parents:
                raise _Together(
                    f"model (--model) {self.model} is in {self.out / name}, which this run deletes "
                    f"(--overwrite) or replaces (its export): {advice}",
                    "out",
                    "model",
                )
        return self

    # ---- derived ------------------------------------------------------------------------------------
    @property
    def cache_root(self) -> Path:
        return self.cache_dir or self.out / "cache"

    @property
    def real_root(self) -> Path | None:
        if self.real is None:
            return None
        return self.real_videos or self.real.parent

    @property
    def validation_root(self) -> Path | None:
        if self.validation_real is None:
            return None
        return self.validation_real_videos or self.validation_real.parent

    @property
    def real_bs(self) -> int:
        return self.real_batch_size or self.batch_size

    def weight_options_unused(self) -> list[str]:
        """Options of the synthetic weights set away from their defaults where they weigh nothing: under RS
        (weight 1 for every video kept, by its labels), and --exp-temperature without exp weights."""
        names = ("weight_transform", "exp_temperature", "reward_config") if self.method == "rs" else ()
        if self.method == "rwl" and self.weight_transform != "exp":
            names = ("exp_temperature",)
        return [n for n in names if getattr(self, n) != type(self).model_fields[n].get_default()]

    def real_options_without_real(self) -> list[str]:
        """Options of the real-data term set away from their defaults while there is no real set."""
        if self.real is not None:
            return []
        names = ("lambda_real", "real_videos") + (() if self.validation_real else ("real_batch_size",))
        return [n for n in names if getattr(self, n) != type(self).model_fields[n].get_default()]

    def preprocessing(self) -> dict:
        """What the cached latents depend on besides model and video (the cache key)."""
        tiling = {"vae_tiling": True} if self.vae_tiling else {}  # untiled keys as before the option
        return {
            "frames": self.frames,
            "stride": self.frame_stride,
            "height": self.height,
            "width": self.width,
            **tiling,
        }

    def input_hashes(self, memo: HashMemo | None = None) -> dict[str, str | None]:
        """SHA-256 of the files the run reads by path (None: unset or missing, which loading reports), and
        the content of a local model's weight files: --resume must not continue on edited ones, nor on a
        base rebuilt at the same path; and a Hub id's commit in the local Hub cache (``model_commit``; None
        for a local model, or an id not cached yet: the run records the one it loaded), nor on an id
        updated upstream. ``memo``: weight hashes known from earlier runs (not saved here: a run refused by
        its checks writes nothing)."""
        files = {"scores": self.scores, "real": self.real, "reward_config": self.reward_config}
        hashes = {
            name: content_hash(p) if p is not None and p.is_file() else None for name, p in files.items()
        }
        hashes["model"] = weights_digest(self.model, memo or HashMemo(self.cache_root / HASH_MEMO))
        hashes["model_commit"] = hub_commit(self.model)
        return hashes

    def training_fingerprint(self) -> str:
        """Hash of the fields that define the run (not the ones --resume may change)."""
        unset = {"expert"} if self.expert is None else set()  # one-transformer runs hash as before it came
        data = self.model_dump(mode="json", exclude=set(RESUMABLE_CHANGES) | unset)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def resume_conflicts(self, saved: dict) -> list[str]:
        """How these settings differ from those a checkpoint was written with (a JSON ``model_dump``).

        An option newer than the checkpoint is no conflict at its default (what the older version did),
        so a run started by one version resumes under the next; any other difference changes the run.
        """
        now = self.model_dump(mode="json", exclude=set(RESUMABLE_CHANGES))
        conflicts = []
        for name in sorted(set(now) | (set(saved) - RESUMABLE_CHANGES)):
            if name == "family" and now[name] is None:
                continue  # detected from the model, which is compared on its own
            if name == "full_scope" and self.finetune == "lora":
                continue  # a LoRA run trains its adapters whatever the scope (finetune is compared)
            if name not in now:
                conflicts.append(f"{name}: {saved[name]!r} in the checkpoint, not an option of this version")
            elif name in saved:
                if now[name] != saved[name] and not (
                    name in PATH_FIELDS and _same_place(now[name], saved[name])
                ):
                    conflicts.append(f"{name}: {saved[name]!r} in the checkpoint, {now[name]!r} now")
            elif (info := type(self).model_fields[name]).is_required():
                conflicts.append(f"{name}: required now, absent from the checkpoint")
            elif now[name] != (default := BEFORE_THE_OPTION.get(name, _default(info))):
                conflicts.append(
                    f"{name}: {now[name]!r} now; the checkpoint predates it (it did {default!r})"
                )
        return conflicts

    # ---- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, **overrides) -> AlignConfig:
        """From a YAML file (optional), with keyword overrides on top (None values ignored)."""
        data: dict = {}
        if path is not None:
            path = Path(path)
            data = read_settings(path, name="config file", fields="AlignConfig fields")
        given = {k: v for k, v in overrides.items() if v is not None}
        data.update(given)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            field, msg = validation_field(exc)
            # A bad value from the command line is not blamed on the file, and is named by its option; settings
            # refused together (height without width) may come from both. The command line's mistakes, a
            # missing required option too, are usage errors (exit status 2), the file's are not.
            error = exc.errors()[0]
            if field and error["type"] == "missing":
                raise OptionError(f"{option_of(field)} is required: give it here or in --config") from None
            if field and field.split(".")[0] in given:
                value = error.get("input")
                typed = isinstance(value, int | float | str) and not isinstance(value, bool) and value != ""
                raise OptionError(f"{option_of(field)}{f' {value}' if typed else ''}: {msg}") from None
            if path is None:
                source: Any = "command line"
            else:
                source = f"{path} with the command-line options" if given and not field else path
            together = getattr(error.get("ctx", {}).get("error"), "fields", ())
            # the command line's when it gave every setting, or one of those refused together
            refused = OptionError if path is None or set(together) & set(given) else DataError
            raise refused(msg, file=source, field=field) from None
