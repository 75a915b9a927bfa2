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

Around the loop: its settings (``sft_config``), the model made trainable (``sft_model``), its output
directory, checkpoints and final model (``sft_outputs``) and its validation loss (``sft_validation``).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videolift.core.checkpoints import run_layout, save_trainable_only
from videolift.core.distributed import deepspeed_clipping, fresh_accelerator
from videolift.core.errors import VideoliftError
from videolift.core.jsonl import append_jsonl, finite_values
from videolift.core.signals import StopRequest, Terminated, stop_at_update_end
from videolift.critic.data import FrameCache, SFTExample, example_frames
from videolift.critic.sft_config import TRAIN_LOG, SFTConfig, SFTResult
from videolift.critic.sft_model import eos_ids, load_model
from videolift.critic.sft_outputs import (
    check_output_dir,
    logged_seconds,
    resume_from,
    save_final,
    save_step_checkpoint,
    start_run,
    tensorboard_writer,
)
from videolift.critic.sft_validation import validates, validation_loss
from videolift.critic.vision_cache import DIGESTS, video_digests

# The public API (docs/critic.md): the loop, its settings and result.
__all__ = ["SFTConfig", "SFTResult", "epoch_batches", "plan", "run_sft"]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """This process's batches of an epoch: a seeded permutation, cut, dealt round-robin; every process
    gets the same count (the last incomplete round is dropped) so DDP steps stay in lockstep."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    per_rank = len(batches) // world
    return batches[rank::world][:per_rank]


def plan(n_examples: int, cfg: SFTConfig, rank: int, world: int) -> tuple[int, int]:
    """(batches per epoch per process, optimizer updates in the run)."""
    per_epoch = len(epoch_batches(n_examples, cfg.batch_size, cfg.seed, 0, rank, world))
    if per_epoch == 0:
        raise VideoliftError(
            f"{n_examples} examples make no full round of batch {cfg.batch_size} x {world} processes"
        )
    return per_epoch, cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch) // cfg.grad_accum)


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


@dataclass
class _Training:
    """What the loop trains with, set up once: the accelerator (and this process's place in it), the
    prepared model and optimizer, the schedule and the plan of the run."""

    cfg: SFTConfig
    out: Path
    accelerator: Any
    main: bool
    world: int
    rank: int
    model: Any
    optimizer: Any
    scheduler: Any
    params: list[Any]
    processor: Any
    family: Any
    per_epoch: int
    total: int
    n_trainable: int
    video_features: Any = None  # a critic.vision_cache.VideoFeatureCache, or None: encoded with each batch
    uncached_because: str | None = None  # why None (critic.vision_cache.cache_reason)


@dataclass
class _Progress:
    """Where the run is: its update, its clock, the losses of the update under way and the last ones,
    and the main process's progress bar and TensorBoard writer."""

    step: int
    started: float
    tick: float
    bar: Any
    writer: Any
    losses: list[Any] = field(default_factory=list)
    last_loss: float | None = None
    last_val: float | None = None
    stopped: bool = False


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
    """``run_sft``'s run, phase by phase: set up (every check, then OUT started), resumed, its batches
    and validation made ready, trained, finished (the model saved unless it stopped early)."""
    from videolift.critic.collate import ChatCollator

    if not examples:
        raise VideoliftError("no training examples")
    if stop_at_step is not None and stop_at_step < 1:
        raise VideoliftError(f"stop_at_step {stop_at_step}: must be 1 or more")
    run = _set_up(examples, base, Path(out), cfg, held, resume=resume, overwrite=overwrite)
    step = resumed = resume_from(run.accelerator, run.out, resume, run.total, log)
    if run.main:
        per_update = cfg.batch_size * cfg.grad_accum * run.world
        log(
            f"{len(examples)} examples, {run.per_epoch} batches/epoch/process; batch {cfg.batch_size} x "
            f"accum {cfg.grad_accum} x {run.world} processes = {per_update} per update; "
            f"{run.total} updates; {run.n_trainable:,} trainable parameters ({cfg.adapter})"
        )
        if note := odd_frames_note(run.processor, cfg.num_frames):
            log(note)
        if note := cut_answers_note(run.processor.tokenizer, examples, cfg.max_answer_tokens):
            log(note)
        if run.video_features is not None:
            log(
                f"vision tower frozen: each video's features computed once and kept (up to {cfg.vision_cache_mb} MB)"
            )
        elif cfg.vision_cache_mb:  # said, as a run that trains its tower (or shards it) is slower for it
            log(f"video features encoded with each batch: {run.uncached_because}")

    collate = ChatCollator(
        run.processor,
        run.family,
        eos_token_ids=eos_ids(run.accelerator.unwrap_model(run.model)),
        max_answer_tokens=cfg.max_answer_tokens,
    )
    frames = FrameCache(cfg.num_frames, cfg.frame_cache_mb << 20, cfg.frame_sampling)
    prepare = _micro_batches(run, examples, collate, frames)
    validate = None
    if validation:
        validate = functools.partial(
            validation_loss, run.model, run.accelerator, collate, validation, frames, cfg
        )
    state = _start_clock(run, step, progress, held)
    with stop_at_update_end() as stop:
        _train(run, state, prepare, validate, stop_at_step, stop)
    return _finish(run, state, resumed, finalize)


def odd_frames_note(processor: Any, num_frames: int) -> str | None:
    """What a frame count that is not a multiple of the video processor's temporal patch does (Qwen-VL:
    frames go in pairs), or None. qwen-vl-utils always samples a multiple; the processor pads the last
    patch with copies of the last frame, a still end the motion question sees in every clip."""
    patch = getattr(getattr(processor, "video_processor", None), "temporal_patch_size", None) or 1
    if num_frames % patch == 0:
        return None
    even = num_frames + patch - num_frames % patch
    return (
        f"note: --num-frames {num_frames} is not a multiple of this model's temporal patch ({patch} frames): "
        f"its processor repeats the last frame to fill the patch, so every clip ends still; "
        f"--num-frames {even} samples a frame there instead"
    )


def cut_answers_note(tokenizer: Any, examples: list[SFTExample], budget: int | None) -> str | None:
    """What ``--max-answer-tokens`` cuts, or None: the collator trains a longer answer's first ``budget``
    tokens followed by the end-of-turn token, so the model learns to stop there (mid-reason; a one-pass
    answer loses its last dimensions' lines)."""
    if budget is None:
        return None
    answers = list({ex.answer for ex in examples})  # HRA data repeats answers ("Good.")
    lengths = dict(
        zip(answers, map(len, tokenizer(answers, add_special_tokens=False)["input_ids"]), strict=True)
    )
    cut = [lengths[ex.answer] for ex in examples if lengths[ex.answer] > budget]
    if not cut:
        return None
    return (
        f"note: {len(cut)} of {len(examples)} answers are longer than --max-answer-tokens {budget} (the longest "
        f"{max(cut)} tokens): each is trained up to there and then ended, as if it stopped there; raise "
        "--max-answer-tokens to train them whole"
    )


def _set_up(
    examples: list[SFTExample],
    base: str,
    out: Path,
    cfg: SFTConfig,
    held: list[Any],
    *,
    resume: bool,
    overwrite: bool,
) -> _Training:
    """Everything checked, then the run started in OUT: the accelerator, the plan, the model loaded with
    its optimizer and schedule and prepared, OUT's lock and config (``start_run``)."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    accelerator = _accelerator(cfg)
    main = accelerator.is_main_process
    # Every check (OUT, the model and its adapter, the batches) before OUT is written: a refused run
    # leaves no train_config.json that would make its corrected rerun "an unfinished run".
    world, rank = accelerator.num_processes, accelerator.process_index
    check_output_dir(
        out, cfg, resume=resume, overwrite=overwrite, world=world, layout=run_layout(accelerator)
    )
    per_epoch, total = plan(len(examples), cfg, rank, world)
    model, processor, family = load_model(base, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    _check_scaled_weights(accelerator, params, cfg)
    n_trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * total), total)
    start_run(accelerator, out, cfg, overwrite=overwrite, held=held)
    model, optimizer = accelerator.prepare(model, optimizer)
    video_features, uncached_because = _video_feature_cache(accelerator, model, family, cfg)
    # FSDP2's prepare replaces every parameter with a sharded one (and points the optimizer at it): the
    # list taken before holds no gradients, so clipping it clipped nothing and logged a norm of 0.
    params = [p for p in model.parameters() if p.requires_grad]
    accelerator.register_for_checkpointing(scheduler)
    save_trainable_only(accelerator)
    return _Training(
        cfg, out, accelerator, main, world, rank, model, optimizer, scheduler, params, processor, family,
        per_epoch, total, n_trainable, video_features, uncached_because,
    )  # fmt: skip


def _micro_batches(
    run: _Training, examples: list[SFTExample], collate: Any, frames: FrameCache
) -> Callable[[int], dict[str, Any]]:
    """The maker of micro-batch ``micro`` (counted from the run's start) on the CPU: its examples those
    of this process's share of the epoch's seeded batches (``epoch_batches``)."""
    from videolift.critic.collate import Item

    cfg, per_epoch = run.cfg, run.per_epoch
    epochs: dict[int, list[list[int]]] = {}

    def prepare(micro: int) -> dict[str, Any]:
        """Micro-batch ``micro`` on the CPU: its videos decoded, its frames and text processed."""
        epoch, index = divmod(micro, per_epoch)
        if epoch not in epochs:  # one permutation an epoch, not one a micro-batch (30 ms at 90k examples)
            epochs.clear()
            epochs[epoch] = epoch_batches(len(examples), cfg.batch_size, cfg.seed, epoch, run.rank, run.world)
        items = [
            Item(
                example_frames(examples[i], frames),
                examples[i].user_text,
                examples[i].answer,
                examples[i].weight,
            )
            for i in epochs[epoch][index]
        ]
        batch = collate(items)
        if run.video_features is not None:  # here, on the CPU, while the update before trains
            batch[DIGESTS] = video_digests(batch)
        return batch

    return prepare


def _start_clock(run: _Training, step: int, progress: bool, held: list[Any]) -> _Progress:
    """The run's state at update ``step``, its clock started, and on the main process its progress bar
    and TensorBoard writer opened."""
    main = run.main
    # A resumed run's time goes on from its log's last kept line (the time between runs left out).
    started = time.time() - logged_seconds(run.out, step, main)
    bar = _progress_bar(run.total, step) if progress and main else None
    if bar is not None:
        held.append(bar)  # closed however the run ends (a diverged run's error then starts its own line)
    writer = tensorboard_writer(run.out, step) if main else None
    if writer is not None:
        held.append(writer)  # closed (its events flushed) however the run ends, with OUT's lock
    tick = time.perf_counter()  # the update's start: its examples/s leave checkpoint saves out
    return _Progress(step, started, tick, bar, writer)


def _train(
    run: _Training,
    state: _Progress,
    prepare: Callable[[int], dict[str, Any]],
    validate: Callable[[], float] | None,
    stop_at_step: int | None,
    stop: StopRequest,
) -> None:
    """The updates from ``state.step`` to the last (or ``stop_at_step``, or a SIGTERM's ``stop``): each
    logged, validated when due, checkpointed every ``save_every`` updates."""
    cfg, accelerator = run.cfg, run.accelerator
    # Each micro-batch is made in a thread while the one before trains (decoding releases the GIL): at
    # real sizes a video takes ~0.15 s to decode, and LiFT-HRA makes ~90k examples an epoch.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="critic-batches") as prefetch:
        micros = range(state.step * cfg.grad_accum, run.total * cfg.grad_accum)
        for micro, batch in _prefetched(prefetch, prepare, micros):
            batch = {k: v if k == DIGESTS else v.to(accelerator.device) for k, v in batch.items()}
            grad_norm = _micro_step(run, state, batch)
            if not accelerator.sync_gradients:
                continue
            lr = _end_update(run, state)
            now = time.perf_counter()  # the update's end: a validation pass is not its time
            val_loss = None
            if validate is not None and validates(cfg, state.step, run.total, micro, run.per_epoch):
                val_loss = state.last_val = validate()
            if run.main:
                _log_update(run, state, micro, lr, grad_norm, now - state.tick, val_loss)
            step = state.step
            scheduled = (
                cfg.save_every and step % cfg.save_every == 0 and step < run.total
            ) or step == stop_at_step
            stopping = stop.due(accelerator)  # a SIGTERM's (collective: every rank stops here)
            if scheduled or stopping:
                save_step_checkpoint(accelerator, run.out, step, cfg.keep_checkpoints)
            if stopping:
                raise Terminated(f"after update {step} of {run.total}, checkpointed")
            state.tick = time.perf_counter()
            if stop_at_step is not None and step >= stop_at_step and step < run.total:
                state.stopped = True
                break


def _micro_step(run: _Training, state: _Progress, batch: dict[str, Any]) -> Any:
    """One micro-batch's forward and backward pass (and the optimizer's step when it completes an
    update), its loss kept for the update's; the gradients' norm at an update's last micro-batch, else None."""
    from videolift.critic.collate import answer_loss

    accelerator, optimizer = run.accelerator, run.optimizer
    if run.video_features is not None:
        batch = run.video_features.inputs(batch)
    with accelerator.accumulate(run.model):
        loss, _ = answer_loss(run.model, batch)
        accelerator.backward(loss)
        grad_norm = None
        if accelerator.sync_gradients:
            grad_norm = _clipped_norm(accelerator, run.params, run.cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    state.losses.append(loss.detach())
    return grad_norm


def _end_update(run: _Training, state: _Progress) -> float:
    """An update done: the schedule stepped, the update counted and its loss averaged over its
    micro-batches and the processes (a diverged one stops the run); the learning rate it used."""
    import torch

    lr = run.scheduler.get_last_lr()[0]  # the rate this update used
    run.scheduler.step()
    state.step += 1
    state.last_loss = float(run.accelerator.reduce(torch.stack(state.losses).mean(), reduction="mean"))
    state.losses = []
    if not math.isfinite(state.last_loss):  # every rank sees the reduced loss: all stop here
        raise VideoliftError(
            f"{run.out}: training diverged at update {state.step} (loss {state.last_loss}): the weights are "
            "no longer usable. Lower --lr, keep --max-grad-norm above 0, or load in bfloat16 rather than "
            "float16; the checkpoints before it are kept (`critic export` writes one as a critic)"
        )
    return lr


def _log_update(
    run: _Training,
    state: _Progress,
    micro: int,
    lr: float,
    grad_norm: Any,
    took: float,
    val_loss: float | None,
) -> None:
    """The update's line in OUT's train log and its points in TensorBoard, and the progress bar moved on
    (main process)."""
    cfg, step, last_loss = run.cfg, state.step, state.last_loss
    per_update = cfg.batch_size * cfg.grad_accum * run.world
    record = {
        "step": step,
        "epoch": round((micro + 1) / run.per_epoch, 4),  # epochs completed after this update
        "loss": round(last_loss, 6),
        "lr": lr,
        "grad_norm": None if grad_norm is None else round(float(grad_norm), 6),
        "examples_per_s": round(per_update / max(took, 1e-9), 3),
        "seconds": round(time.time() - state.started, 2),
    } | ({} if val_loss is None else {"val_loss": round(val_loss, 6)})
    append_jsonl(run.out / TRAIN_LOG, finite_values(record))
    for key in ("loss", "lr", "grad_norm", "examples_per_s", "val_loss"):
        if record.get(key) is not None:
            state.writer.add_scalar(f"critic/{key}", record[key], step)
    if state.bar is not None:
        state.bar.update(1)
        state.bar.set_postfix(loss=f"{last_loss:.4f}", refresh=False)


def _finish(run: _Training, state: _Progress, resumed: int, finalize: Any) -> SFTResult:
    """The run's result; unless it stopped early, the model and processor saved (then ``finalize``)
    with the run's summary."""
    if state.bar is not None:
        state.bar.close()
    result = SFTResult(
        run.out, state.step, state.last_loss, time.time() - state.started, resumed, run.n_trainable,
        state.stopped, run.main,
    )  # fmt: skip
    result.val_loss = state.last_val
    if not state.stopped:
        save_final(run.accelerator, run.model, run.processor, run.out, finalize, result)
    run.accelerator.wait_for_everyone()
    return result


def _video_feature_cache(accelerator: Any, model: Any, family: Any, cfg: SFTConfig) -> tuple[Any, str | None]:
    """The run's cache of its videos' features (``critic.vision_cache``), or None and why where it would not
    be exact."""
    from videolift.critic.vision_cache import VideoFeatureCache, cache_reason

    inner = accelerator.unwrap_model(model)
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # under peft
    if why := cache_reason(accelerator, inner, family, cfg.vision_cache_mb << 20):
        return None, why
    return VideoFeatureCache(accelerator, inner, cfg.vision_cache_mb << 20), None


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
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    # cpu=True without a GPU: otherwise torchrun on CPU gives unsynchronised single-process runs.
    accelerator = fresh_accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=not torch.cuda.is_available(),
        ddp_timeout=cfg.ddp_timeout,
        # Trained weights a video's loss never uses (LLaVA-NeXT-Video's image_newline, with --tune-vision a
        # tower's layers after the one its features come from, SigLIP's pooling head) would stop DDP at its
        # second update ("Expected to have finished reduction in the prior iteration"), as Trainer's default
        # ddp_find_unused_parameters avoids too; the cost is a walk of the autograd graph per backward.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    deepspeed_clipping(accelerator, cfg.max_grad_norm)
    set_seed(cfg.seed)
    return accelerator


def _check_scaled_weights(accelerator: Any, params: list[Any], cfg: SFTConfig) -> None:
    """fp16 mixed precision (accelerate's, not DeepSpeed's own) scales the loss with torch's GradScaler,
    whose unscale_ refuses float16 gradients ("Attempting to unscale FP16 gradients", torch/amp/grad_scaler.py):
    trained weights loaded in float16 would end the run at its first update. Refused before OUT is written."""
    import torch

    if getattr(accelerator, "scaler", None) is None:
        return
    if half := sum(p.numel() for p in params if p.dtype == torch.float16):
        raise VideoliftError(
            f"--dtype {cfg.dtype} with fp16 mixed precision (the accelerate config): {half:,} trained weights "
            "would be float16, whose gradients fp16's gradient scaler refuses to unscale; load in float32 (the "
            "default: fp16 autocast still computes in float16), or use bf16 mixed precision"
            + ("" if cfg.adapter == "lora" else ", or --adapter lora (its adapters are float32)")
        )


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
    # Under fp16 autocast the gradients are the loss's times the GradScaler's scale (65536 at first) until
    # unscaled, as clip_grad_norm_ does; unscaled now, the optimizer's scaler step does not again (a no-op
    # without fp16 autocast)
    accelerator.unscale_gradients()
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(norms).norm() if norms else None


def _progress_bar(total: int, done: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="training", unit="update", dynamic_ncols=True)
