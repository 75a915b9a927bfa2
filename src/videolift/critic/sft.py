"""Supervised fine-tuning of a video-VLM on (video, user text, answer) examples, with accelerate.

The one loop that critic training (``critic.train``) and the toy VLM's caption pretraining share.
Loss on answer tokens only; LoRA on the language
model (vision tower and projector frozen by default) or full fine-tuning; AdamW, cosine schedule with
linear warmup, gradient accumulation and clipping; checkpoints every N updates and ``resume``.

Output directory::

    OUT/adapter_model.safetensors, adapter_config.json   (LoRA; or model.safetensors + config.json for full)
    OUT/processor + tokenizer files                        (AutoProcessor.from_pretrained(OUT))
    OUT/critic_spec.json                                   (a critic's ``finalize``: written after the model)
    OUT/train_config.json, OUT/train_log.jsonl             (settings; one line per update: loss, lr, grad norm,
                                                            examples/s)
    OUT/tensorboard/                                       (the same curves for TensorBoard)
    OUT/checkpoints/step-000100/                           (accelerate state: trainable weights, optimizer, RNG)

Data order depends only on the seed and the epoch: each epoch is a seeded permutation cut into
per-device batches, dealt round-robin to the processes, so a resumed run sees the same batches.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass as checked_dataclass

from videolift.core.checkpoints import (
    clear_partial,
    complete_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_trainable_only,
)
from videolift.core.distributed import deepspeed_clipping, fresh_accelerator
from videolift.core.environment import environment
from videolift.core.errors import DataError, VideoError, VideoliftError
from videolift.core.files import lock_run, writing
from videolift.core.jsonl import (
    append_jsonl,
    atomic_write,
    finite_values,
    iter_json_lines,
    read_json,
    trim_step_log,
    validation_field,
)
from videolift.core.settings import refuse_bool_number
from videolift.critic.data import FrameCache, SFTExample

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
    {"save_every", "keep_checkpoints", "frame_cache_mb", "gradient_checkpointing", "val_every"}
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


def settings_error(exc: ValidationError, what: str = "critic settings") -> VideoliftError:
    """A bad setting as a user error naming its option and value (``--batch-size 0: ...``)."""
    field, msg = validation_field(exc)
    if not field:
        return VideoliftError(f"{what}: {msg}")
    value = exc.errors()[0].get("input")
    shown = f" {value}" if isinstance(value, int | float | str) and not isinstance(value, bool) else ""
    return VideoliftError(f"{option_name(field)}{shown}: {msg}")


@checked_dataclass(config=ConfigDict(extra="forbid", allow_inf_nan=False))
class SFTConfig:
    """Hyper-parameters of the fine-tuning loop (the CLI options of ``critic train``). Validated when
    made: a value out of range raises a VideoliftError naming its option, before anything runs."""

    adapter: Literal["lora", "full"] = "lora"  # LoRA on the language model, or full fine-tuning
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] | None = None  # leaf names (q_proj, ...); None: every LM linear layer
    tune_vision: bool = False  # train the vision tower too (LoRA on its linear layers / full)
    tune_projector: bool = False  # train the projector too (saved whole with LoRA)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1)  # overrides epochs
    batch_size: int = Field(4, ge=1)  # per device
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, ge=0)  # 0: no clipping
    max_answer_tokens: int | None = Field(256, ge=1)
    seed: int = Field(0, ge=0)
    save_every: int = Field(200, ge=0)  # updates between checkpoints (0: only the final model)
    val_every: int = Field(0, ge=0)  # updates between validation losses (0: each epoch's end), with val data
    keep_checkpoints: int = Field(2, ge=1)
    gradient_checkpointing: bool = False
    dtype: str = "float32"  # weights dtype at load; mixed precision comes from the accelerate config
    frame_cache_mb: int = Field(2048, ge=0)  # sampled frames kept in memory across epochs (per process)
    num_frames: int = Field(8, ge=1)
    frame_sampling: Literal["uniform", "pairs"] = "uniform"  # videolift.core.video.FRAME_SAMPLERS
    max_pixels: int | None = Field(None, ge=1)
    min_pixels: int | None = Field(None, ge=1)
    extra: dict[str, Any] = Field(default_factory=dict)  # caller's settings, checked on resume

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


# ---- model set-up -------------------------------------------------------------------------------


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


def prepare_model(model: Any, family: Any, cfg: SFTConfig):
    """Apply LoRA or freeze modules per config; returns the (possibly peft-wrapped) model."""
    if cfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.2x; the old name goes in v6
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if cfg.adapter == "full":
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
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    with warnings.catch_warnings():  # peft probes a deprecated transformers attribute
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, lora)


# ---- data order ---------------------------------------------------------------------------------


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """This process's batches of an epoch: a seeded permutation, cut, dealt round-robin; every process
    gets the same count (the last incomplete round is dropped) so DDP steps stay in lockstep."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    per_rank = len(batches) // world
    return batches[rank::world][:per_rank]


# ---- checkpoints --------------------------------------------------------------------------------


def checkpoints(out: Path) -> dict[int, Path]:
    """Complete checkpoints of the run in ``out`` by update (a checkpoint killed mid-save is not one)."""
    return complete_checkpoints(out / CHECKPOINTS)


class RunConflict(VideoliftError):
    """OUT holds another run: a finished one, or an unfinished one with other settings."""


class AlreadyFinished(RunConflict):
    """--resume of a run that has finished with the same settings: there is nothing left to do."""


def check_output_dir(out: Path, cfg: SFTConfig, *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: a finished or different run in OUT needs --overwrite, a resumed one the same
    settings. Only reads: ``_start_run`` clears what --overwrite replaces, once everything is checked."""
    config = out / TRAIN_CONFIG
    if overwrite:
        return
    if (out / TRAIN_SUMMARY).exists():
        if resume and config.exists() and not _changed(before := read_json(config), cfg.comparable(before)):
            raise AlreadyFinished(
                f"{out}: this run has finished (same settings); nothing to resume. Its critic is {out}; "
                "pass --overwrite to train it again"
            )
        raise RunConflict(f"{out}: already holds a finished model; pass --overwrite to replace it")
    if config.exists():
        before = read_json(config)
        now = cfg.comparable(before)
        if not resume:
            raise VideoliftError(
                f"{out}: holds an unfinished run; pass --resume to continue it or --overwrite"
            )
        if changed := _changed(before, now):
            before, now = _flat(before), _flat(now)
            detail = "; ".join(f"{k}: was {before.get(k)!r}, now {now.get(k)!r}" for k in changed)
            raise RunConflict(
                f"{out}: cannot resume with different settings ({detail}); only "
                f"{', '.join(sorted(RESUMABLE_CHANGES))} may change on --resume"
            )


def _flat(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings with the caller's ``extra`` ones as ``extra.NAME``."""
    extra = settings.get("extra") or {}
    return {k: v for k, v in settings.items() if k != "extra"} | {f"extra.{k}": v for k, v in extra.items()}


def _changed(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings (a caller's by its own name, ``extra.NAME``) that differ and that --resume may not
    change."""
    before, now = _flat(before), _flat(now)
    return sorted(
        k for k in set(before) | set(now) if before.get(k) != now.get(k) and k not in RESUMABLE_CHANGES
    )


def run_sft(
    examples: list[SFTExample], base: str, out: str | Path, cfg: SFTConfig, **options: Any
) -> SFTResult:
    """Fine-tune ``base`` on ``examples`` into ``out``. Options (``_run_sft``'s keywords): ``resume``,
    ``overwrite``, ``stop_at_step``, ``finalize``, ``log``, ``progress``, ``validation`` (examples
    whose mean answer-token loss is logged as ``val_loss``, every ``cfg.val_every`` updates or at each
    epoch's end, and at the last update). ``finalize(out, model,
    processor)`` runs on the main process after the model and processor are saved (the critic writes its
    spec there).
    ``stop_at_step`` stops after that update's checkpoint, as an interruption would (for tests and
    time-boxed runs); ``resume`` continues from the latest checkpoint. ``progress``: a progress bar of
    the updates (main process)."""
    # OUT's lock, then the TensorBoard writer: closed here however the run ends, the lock last (a caller
    # that keeps a failed run's error keeps its frame, and would keep the lock held there).
    held: list[Any] = []
    try:
        return _run_sft(examples, base, out, cfg, held, **options)
    finally:
        for opened in reversed(held):
            opened.close()


def _run_sft(
    examples: list[SFTExample],
    base: str,
    out: str | Path,
    cfg: SFTConfig,
    held: list[Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_at_step: int | None = None,
    finalize: Any = None,
    log: Any = print,
    progress: bool = False,
    validation: list[SFTExample] | None = None,
) -> SFTResult:
    import torch
    from transformers import get_cosine_schedule_with_warmup

    from videolift.critic.collate import ChatCollator, Item, answer_loss

    if not examples:
        raise VideoliftError("no training examples")
    if stop_at_step is not None and stop_at_step < 1:
        raise VideoliftError(f"stop_at_step {stop_at_step}: must be 1 or more")
    out = Path(out)
    accelerator = _accelerator(cfg)
    main = accelerator.is_main_process
    # Every check (OUT, the model and its adapter, the batches) before OUT is written: a refused run
    # leaves no train_config.json that would make its corrected rerun "an unfinished run".
    check_output_dir(out, cfg, resume=resume, overwrite=overwrite)
    world, rank = accelerator.num_processes, accelerator.process_index
    per_epoch, total = plan(len(examples), cfg, rank, world)
    model, processor, family = _load_model(base, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    total_micro = total * cfg.grad_accum
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * total), total)
    _start_run(accelerator, out, cfg, overwrite=overwrite, held=held)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    save_trainable_only(accelerator)

    step = resumed = _resume(accelerator, out, resume, total, log)
    if main:
        log(
            f"{len(examples)} examples, {per_epoch} batches/epoch/process; batch {cfg.batch_size} x "
            f"accum {cfg.grad_accum} x {world} processes = {cfg.batch_size * cfg.grad_accum * world} per update; "
            f"{total} updates; {n_trainable:,} trainable parameters ({cfg.adapter})"
        )

    collate = ChatCollator(
        processor,
        family,
        eos_token_ids=_eos_ids(accelerator.unwrap_model(model)),
        max_answer_tokens=cfg.max_answer_tokens,
    )
    frames = FrameCache(cfg.num_frames, cfg.frame_cache_mb << 20, cfg.frame_sampling)
    epochs: dict[int, list[list[int]]] = {}

    def prepare(micro: int) -> dict[str, torch.Tensor]:
        """Micro-batch ``micro`` on the CPU: its videos decoded, its frames and text processed."""
        epoch, index = divmod(micro, per_epoch)
        if epoch not in epochs:  # one permutation an epoch, not one a micro-batch (30 ms at 90k examples)
            epochs.clear()
            epochs[epoch] = epoch_batches(len(examples), cfg.batch_size, cfg.seed, epoch, rank, world)
        items = [
            Item(
                _frames_of(examples[i], frames), examples[i].user_text, examples[i].answer, examples[i].weight
            )
            for i in epochs[epoch][index]
        ]
        return collate(items)

    # A resumed run's time goes on from its log's last kept line (the time between runs left out).
    started, losses, last_loss, stopped = time.time() - _logged_seconds(out, step, main), [], None, False
    last_val = None
    bar = _progress_bar(total, step) if progress and main else None
    writer = _tensorboard(out, step) if main else None
    if writer is not None:
        held.append(writer)  # closed (its events flushed) however the run ends, with OUT's lock
    per_update = cfg.batch_size * cfg.grad_accum * world
    tick = time.perf_counter()  # the update's start: its examples/s leave checkpoint saves out
    # Each micro-batch is made in a thread while the one before trains (decoding releases the GIL): at
    # real sizes a video takes ~0.15 s to decode, and LiFT-HRA makes ~90k examples an epoch.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="critic-batches") as prefetch:
        for micro, batch in _prefetched(prefetch, prepare, range(step * cfg.grad_accum, total_micro)):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.accumulate(model):
                loss, _ = answer_loss(model, batch)
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients:
                    grad_norm = _clipped_norm(accelerator, params, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(loss.detach())
            if not accelerator.sync_gradients:
                continue
            lr = scheduler.get_last_lr()[0]  # the rate this update used
            scheduler.step()
            step += 1
            last_loss = float(accelerator.reduce(torch.stack(losses).mean(), reduction="mean"))
            losses = []
            if not math.isfinite(last_loss):  # every rank sees the reduced loss: all stop here
                raise VideoliftError(
                    f"{out}: training diverged at update {step} (loss {last_loss}): the weights are no longer "
                    "usable. Lower --lr, keep --max-grad-norm above 0, or load in bfloat16 rather than float16; "
                    "the checkpoints before it are kept (`critic export` writes one as a critic)"
                )
            now = time.perf_counter()  # the update's end: a validation pass is not its time
            val_loss = None
            if validation and _validates(cfg, step, total, micro, per_epoch):
                val_loss = last_val = _validation_loss(model, accelerator, collate, validation, frames, cfg)
            if main:
                record = {
                    "step": step,
                    "epoch": round((micro + 1) / per_epoch, 4),  # epochs completed after this update
                    "loss": round(last_loss, 6),
                    "lr": lr,
                    "grad_norm": None if grad_norm is None else round(float(grad_norm), 6),
                    "examples_per_s": round(per_update / max(now - tick, 1e-9), 3),
                    "seconds": round(time.time() - started, 2),
                } | ({} if val_loss is None else {"val_loss": round(val_loss, 6)})
                append_jsonl(out / TRAIN_LOG, finite_values(record))
                for key in ("loss", "lr", "grad_norm", "examples_per_s", "val_loss"):
                    if record.get(key) is not None:
                        writer.add_scalar(f"critic/{key}", record[key], step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last_loss:.4f}", refresh=False)
            if (cfg.save_every and step % cfg.save_every == 0 and step < total) or step == stop_at_step:
                _save_checkpoint(accelerator, out, step, cfg.keep_checkpoints)
            tick = time.perf_counter()
            if stop_at_step is not None and step >= stop_at_step and step < total:
                stopped = True
                break

    if bar is not None:
        bar.close()
    result = SFTResult(out, step, last_loss, time.time() - started, resumed, n_trainable, stopped, main)
    result.val_loss = last_val
    if not stopped:
        _save_final(accelerator, model, processor, out, finalize, result)
    accelerator.wait_for_everyone()
    return result


def _prefetched(pool: Any, make: Callable[[int], Any], indices: Iterable[int]) -> Iterator[tuple[int, Any]]:
    """(i, make(i)) for each index, make(i + 1) running in ``pool`` while the caller works on i. An
    error of make(i) is raised when i is due; the one ahead of a caller that stops is cancelled if it has
    not started, else left to finish unused (the pool's shutdown waits for it)."""
    indices = iter(indices)
    ahead = [(i, pool.submit(make, i)) for i in itertools.islice(indices, 1)]
    while ahead:
        i, future = ahead.pop()
        ahead = [(j, pool.submit(make, j)) for j in itertools.islice(indices, 1)]
        try:
            yield i, future.result()
        except GeneratorExit:  # the caller stopped early: do not wait for, nor raise from, the one ahead
            for _, pending in ahead:
                pending.cancel()
            raise


def _accelerator(cfg: SFTConfig) -> Any:
    """The accelerator, seeded."""
    import torch
    from accelerate.utils import set_seed

    # cpu=True without a GPU: otherwise torchrun on CPU gives unsynchronised single-process runs.
    accelerator = fresh_accelerator(
        gradient_accumulation_steps=cfg.grad_accum, cpu=not torch.cuda.is_available()
    )
    deepspeed_clipping(accelerator, cfg.max_grad_norm)
    set_seed(cfg.seed)
    return accelerator


def _start_run(accelerator: Any, out: Path, cfg: SFTConfig, *, overwrite: bool, held: list[Any]) -> None:
    """OUT's first writes, once the run is known to start: OUT locked for the run (``lock_run``, the lock
    added to ``held``), the run --overwrite replaces cleared and the run's config written (every process
    has checked OUT before the main one changes it)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        held.append(lock_run(out, "videolift critic train"))
        if overwrite:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
            shutil.rmtree(out / TENSORBOARD, ignore_errors=True)
            # The model files too: one the new run does not write (a LoRA adapter beside new full
            # weights, or full weights beside a new adapter) would otherwise load with it. Other
            # files stay (first passes' caches, a caller's own data in OUT).
            for pattern in (TRAIN_CONFIG, TRAIN_LOG, TRAIN_SUMMARY, *MODEL_FILES):
                for path in out.glob(pattern):
                    path.unlink()
        with atomic_write(out / TRAIN_CONFIG) as handle:
            handle.write(json.dumps(cfg.comparable(), indent=1) + "\n")
    accelerator.wait_for_everyone()


def _load_model(base: str, cfg: SFTConfig) -> tuple[Any, Any, Any]:
    """The base VLM in training mode with only what ``cfg`` trains left trainable; its processor, family."""
    from videolift.models.vlm import get_family, load_vlm

    model, processor = load_vlm(base, dtype=cfg.dtype)
    family = get_family(model.config.model_type)
    family.configure_processor(processor, cfg.max_pixels, cfg.min_pixels)
    model.config.use_cache = False
    model = prepare_model(model, family, cfg)
    model.train()
    return model, processor, family


def plan(n_examples: int, cfg: SFTConfig, rank: int, world: int) -> tuple[int, int]:
    """(batches per epoch per process, optimizer updates in the run)."""
    per_epoch = len(epoch_batches(n_examples, cfg.batch_size, cfg.seed, 0, rank, world))
    if per_epoch == 0:
        raise VideoliftError(
            f"{n_examples} examples make no full round of batch {cfg.batch_size} x {world} processes"
        )
    return per_epoch, cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch) // cfg.grad_accum)


def _resume(accelerator: Any, out: Path, resume: bool, total: int, log: Any) -> int:
    """The update to start from: the latest checkpoint's when resuming (its log trimmed to it), else 0
    (and no log of an earlier run)."""
    root = out / CHECKPOINTS
    ckpt = latest_checkpoint(root) if resume else None
    # strict=False: checkpoints hold the trainable weights only (``save_trainable_only``).
    step = 0 if ckpt is None else load_checkpoint(accelerator, ckpt, strict=False)["step"]
    if accelerator.is_main_process:
        clear_partial(root)  # what a killed save or rotation left
        if ckpt is None:
            (out / TRAIN_LOG).unlink(missing_ok=True)
        else:
            trim_step_log(out / TRAIN_LOG, step)
            log(f"resumed from {ckpt.name} (update {step} of {total})")
    return step


def _clipped_norm(accelerator: Any, params: list[Any], max_norm: float) -> Any:
    """The gradients' norm, clipped to ``max_norm``; without clipping (0) measured only, in float32 (a
    clip to an infinite norm turns float16 gradients whose norm overflows into NaN), where every process
    holds whole gradients (not under DeepSpeed or FSDP: None)."""
    import torch
    from accelerate.utils import DistributedType

    if max_norm > 0:
        return accelerator.clip_grad_norm_(params, max_norm)
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        return None
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(norms).norm() if norms else None


def _validates(cfg: SFTConfig, step: int, total: int, micro: int, per_epoch: int) -> bool:
    """Whether the update ``step`` (ending at micro-batch ``micro``) is followed by a validation pass:
    every ``val_every`` updates, else when it completed an epoch; and after the last update."""
    if step == total:
        return True
    if cfg.val_every:
        return step % cfg.val_every == 0
    return (micro + 1) // per_epoch > (micro + 1 - cfg.grad_accum) // per_epoch


def _validation_loss(
    model: Any, accelerator: Any, collate: Any, examples: list[SFTExample], frames: FrameCache, cfg: SFTConfig
) -> float:
    """The mean cross-entropy of every answer token of ``examples`` (unweighted), in eval mode, over the
    processes. Each process runs as many batches (one out of examples repeats a batch it does not count),
    so the forward passes DDP and FSDP synchronise stay matched."""
    import torch

    from videolift.critic.collate import Item, answer_loss

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = examples[rank::world]
    batches = [mine[i : i + cfg.batch_size] for i in range(0, len(mine), cfg.batch_size)]
    rounds = math.ceil(math.ceil(len(examples) / world) / cfg.batch_size)
    totals = torch.zeros(2, dtype=torch.float64)  # loss x tokens, tokens
    model.eval()  # no dropout: the loss of the weights as they are
    try:
        with torch.no_grad():
            for k in range(rounds):
                batch = batches[k] if k < len(batches) else examples[:1]
                items = [Item(_frames_of(ex, frames), ex.user_text, ex.answer, 1.0) for ex in batch]
                loss, tokens = answer_loss(
                    model, {n: v.to(accelerator.device) for n, v in collate(items).items()}
                )
                if k < len(batches):
                    totals += torch.tensor([float(loss) * tokens, tokens], dtype=torch.float64)
    finally:
        model.train()
    totals = accelerator.reduce(totals.to(accelerator.device), reduction="sum").cpu()
    return float(totals[0] / totals[1].clamp_min(1))


def _tensorboard(out: Path, step: int) -> Any:
    """OUT/tensorboard's writer, its events after ``step`` (those of a killed attempt) purged."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / TENSORBOARD), purge_step=step + 1)


def _logged_seconds(out: Path, step: int, main: bool) -> float:
    """The ``seconds`` of the train log's line of ``step`` (0 for a fresh start, or on other ranks)."""
    if not (main and step and (out / TRAIN_LOG).exists()):
        return 0.0
    lines = [o for _, o in iter_json_lines(out / TRAIN_LOG, skip_partial_last=True) if o.get("step") == step]
    return float(lines[-1].get("seconds") or 0.0) if lines else 0.0


def _frames_of(example: SFTExample, frames: FrameCache) -> np.ndarray:
    """The example's frames; a video that opened when checked but fails to decode now is named by the
    data file's line that asked for it (the run resumes from its last checkpoint once it is fixed)."""
    try:
        return frames(example.video)
    except VideoError as exc:
        if example.origin is None:
            raise
        file, where = example.origin
        raise DataError(
            f"{exc}; fix or remove it, then rerun with --resume", file=file, field="video", **where
        ) from exc


def _progress_bar(total: int, done: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="training", unit="update", dynamic_ncols=True)


def _eos_ids(model: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    return [eos] if isinstance(eos, int) else list(eos or [])


def _save_checkpoint(accelerator: Any, out: Path, step: int, keep: int) -> None:
    save_checkpoint(accelerator, out / CHECKPOINTS, step, {"step": step}, keep, digits=STEP_DIGITS)


def _save_final(
    accelerator: Any, model: Any, processor: Any, out: Path, finalize: Any, result: SFTResult
) -> None:
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(model)  # collective under DeepSpeed / FSDP
    if accelerator.is_main_process:
        _write_model(accelerator.unwrap_model(model), state, processor, out, finalize)
        summary = finite_values({k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()})
        summary["environment"] = environment(accelerator.device)  # of this (the last) attempt
        with atomic_write(out / TRAIN_SUMMARY) as handle:
            handle.write(json.dumps(summary, indent=1) + "\n")


def _write_model(model: Any, state: dict[str, Any] | None, processor: Any, out: Path, finalize: Any) -> None:
    """The adapter (or full model) and processor as plain transformers / peft load them, then ``finalize``."""
    model.config.use_cache = True
    getattr(model, "base_model", model).config.use_cache = True
    with writing(out, "the critic"):
        model.save_pretrained(out, state_dict=state, safe_serialization=True)
        processor.save_pretrained(out)
    if finalize is not None:
        finalize(out, model, processor)


def find_checkpoint(out: Path, step: int | None = None) -> tuple[Path, int]:
    """The complete checkpoint of update ``step`` in ``out`` (default: the latest), and its step."""
    found = checkpoints(out)
    final = _finished_step(out)
    there_are = f"there are: {', '.join(map(str, sorted(found)))}" if found else "it has none"
    if final is not None and final not in found and step in (None, final):
        # Checkpoints are saved before the end, not at it: the last update is the run itself.
        raise VideoliftError(
            f"{out}: finished at update {final}, and is itself that critic: use it as it is "
            f"(--critic {out}); only earlier updates are checkpointed ({there_are})"
        )
    if not found:
        raise VideoliftError(f"{out}: no complete checkpoint in {out / CHECKPOINTS}")
    step = max(found) if step is None else step
    if step not in found:
        raise VideoliftError(f"{out}: no checkpoint of update {step} ({there_are})")
    return found[step], step


def _finished_step(out: Path) -> int | None:
    """The last update of a finished run (its summary is written last), or None."""
    try:
        return int(read_json(out / TRAIN_SUMMARY)["steps"])
    except (OSError, ValueError, KeyError, TypeError, VideoliftError):
        return None


def export_sft_checkpoint(ckpt: Path, base: str, cfg: SFTConfig, dest: Path, finalize: Any) -> None:
    """Write the model of checkpoint ``ckpt`` into ``dest`` as ``run_sft`` writes its final model.
    Checkpoints hold the trainable weights only; the rest comes from ``base``, prepared with the
    run's settings ``cfg``."""
    from safetensors.torch import load_file

    from videolift.models.vlm import get_family, load_vlm

    if not (ckpt / "model.safetensors").is_file():  # e.g. its files removed by hand
        raise VideoliftError(f"{ckpt}: incomplete checkpoint (no model.safetensors); export another --step")
    model, processor = load_vlm(base, dtype=cfg.dtype)
    family = get_family(model.config.model_type)
    family.configure_processor(processor, cfg.max_pixels, cfg.min_pixels)
    model = prepare_model(model, family, cfg)
    weights = {k.removeprefix("module."): v for k, v in load_file(ckpt / "model.safetensors").items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if missing := sorted(trainable - weights.keys()):
        raise VideoliftError(
            f"{ckpt}: lacks {len(missing)} trainable weights (e.g. {missing[0]}); "
            "was it made with other settings than the run's train_config.json?"
        )
    if unexpected := model.load_state_dict(weights, strict=False).unexpected_keys:
        raise VideoliftError(f"{ckpt}: holds weights the model lacks (e.g. {unexpected[0]})")
    _write_model(model, None, processor, dest, finalize)
