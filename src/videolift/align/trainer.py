"""The LiFT alignment loop: L = mean_syn(w * loss) + lambda * mean_real(loss), through accelerate.

The trainer knows diffusers pipelines only in general (a ``transformer`` to train, frozen other
components); everything model-specific — loading, encoding, latent sampling, the diffusion loss —
goes through the model spec (``videolift.models``). Randomness and data order are functions of
(seed, rank, micro-step), so a resumed run replays exactly what the uninterrupted one would do.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videolift.align.checkpoints import check_loaded_commit, clear_after, save_checkpoint
from videolift.align.config import RUN_DIRS, AlignConfig
from videolift.align.data import CachedItem, StepDataset, Stream, WeightedStream, batches_drawn
from videolift.align.export import export_trained
from videolift.align.held_out import held_out_loss, held_out_steps, keep_held_out_log, record_held_out
from videolift.align.inputs import cache_all, check_shapes
from videolift.align.loss import batch_loss, step_generator
from videolift.align.optimizer import make_ema, make_optimizer
from videolift.align.preflight import Preflight, check_folders, preflight
from videolift.align.rank_sync import assert_ranks_in_sync
from videolift.align.step_log import StepLog, describe_run
from videolift.align.summary import write_summary
from videolift.align.trainable import make_trainable, place_for_training, trainable_parameters
from videolift.align.validation import sampler_settings, samples_dir, samples_due, write_samples
from videolift.align.weights import Sample
from videolift.core.checkpoints import (
    STATE_FILE,
    checkpoint_world,
    load_checkpoint,
    run_layout,
    save_trainable_only,
)
from videolift.core.distributed import fresh_accelerator, launched_processes
from videolift.core.errors import VideoliftError
from videolift.core.files import holds_weights
from videolift.core.hub import base_directory, hub_commit
from videolift.core.jsonl import append_jsonl, atomic_write, finite_values, read_json
from videolift.core.progress import library_bars
from videolift.core.signals import StopRequest, Terminated, stop_at_update_end
from videolift.models.base import is_empty, resolve_dtype
from videolift.models.families import get_spec


@dataclass
class AlignResult:
    out: Path
    export_dir: Path | None
    steps: int
    world_size: int
    data: dict = field(default_factory=dict)
    last_log: dict = field(default_factory=dict)


# ---- the run, piece by piece ------------------------------------------------------------------------------
def _accelerator(cfg: AlignConfig) -> Any:
    from accelerate.utils import DistributedType

    # cpu=True without CUDA, as every stage: accelerate would otherwise pick a Mac's MPS device, which has
    # no float64 (the ranks' weight checksums) and would make a run's device depend on which stage ran first.
    accelerator = fresh_accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=not torch.cuda.is_available(),
        ddp_timeout=cfg.ddp_timeout,
    )
    launched = launched_processes()
    if launched != accelerator.num_processes:  # e.g. torchrun on a machine without GPUs: N runs, not one
        raise VideoliftError(
            f"launched {launched} processes but accelerate runs {accelerator.num_processes}: the ranks would "
            "not synchronise; on CPU set ACCELERATE_USE_CPU=1 (see docs/align.md)"
        )
    if (
        cfg.mixed_precision == "fp16"
        and accelerator.scaler is None
        and accelerator.distributed_type != DistributedType.DEEPSPEED  # (DeepSpeed's engine scales)
    ):
        # accelerate gives fp16 its autocast and GradScaler on a GPU only: on the CPU the frozen parts would
        # load in float16 with nothing casting for them (a LoRA run's first step: "mat1 and mat2 must have
        # the same dtype"; a full one trains in fp32 and exports fp16), after the whole latent cache.
        raise VideoliftError(
            "--mixed-precision fp16: accelerate runs fp16 autocast and its gradient scaler on a GPU only, "
            f"and this run is on the {accelerator.device.type}; use --mixed-precision bf16 or no"
        )
    if accelerator.distributed_type == DistributedType.FSDP and (cfg.finetune == "lora" or cfg.ema_decay):
        raise VideoliftError("FSDP supports full fine-tuning without EMA; use DDP or ZeRO-2 for LoRA / EMA")
    return accelerator


def _load_model(
    cfg: AlignConfig, weight_dtype: torch.dtype, trained: str | None = None
) -> tuple[Any, Any, str, tuple[int, int], list[torch.nn.Parameter]]:
    """The pipeline with frozen encoders (and a frozen expert) in the mixed-precision dtype and the trained
    component (``trained``, or found now) made trainable (fp32 master weights); (spec, pipe, the trained
    component's name, the timesteps it trains at, its trained parameters). A frozen expert is loaded only to
    sample validation videos with; otherwise it is its config without weights (``empty_component``: the
    export copies its files from the base)."""
    spec = get_spec(cfg.family)
    dtype: Any = resolve_dtype(weight_dtype)
    if cfg.finetune == "full" and dtype != torch.float32:
        # The fp32 master weights start from the checkpoint's own values, not from a bf16 rounding of them.
        dtype = {trained or "transformer": torch.float32, "default": dtype}
    unused = () if cfg.validation_prompts or trained is None else spec.frozen_experts(cfg.expert)
    # Only an expert the base's files hold whole, for the export to copy: a Hub snapshot downloaded
    # without it (a first run) or cut short has it loaded (downloaded) as before.
    source = base_directory(cfg.model) if unused else None
    unused = tuple(n for n in unused if source is not None and holds_weights(source / n))
    pipe = spec.load(cfg.model, dtype=dtype, device="cpu", without=unused)
    spec.check_trainable(pipe)
    found = spec.trained_component(pipe.config, cfg.expert)
    if isinstance(dtype, dict) and found not in dtype:  # the index was unreadable before the load
        raise VideoliftError(
            f"{cfg.model}: its model_index.json could not be read before loading, so {found} was not loaded "
            "in float32 for a full fine-tune; run again (the index is cached now) or use a local copy"
        )
    trained = found
    low, high = t_range = spec.timestep_range(pipe, cfg.expert)
    if low >= high:
        raise VideoliftError(
            f"--expert {cfg.expert}: the pipeline's boundary_ratio {pipe.config.get('boundary_ratio')} leaves "
            "this expert no timestep to train"
        )
    if cfg.synthetic_min_timestep >= high:
        where = (
            f"the {cfg.expert}-noise expert's timesteps, [{low}, {high})"
            if cfg.expert
            else f"the scheduler's num_train_timesteps ({high})"
        )
        raise VideoliftError(f"--synthetic-min-timestep {cfg.synthetic_min_timestep}: must be below {where}")
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
    params = make_trainable(getattr(pipe, trained), cfg)  # before caching: bad targets fail in seconds
    return spec, pipe, trained, t_range, params


def _step_dataset(
    cfg: AlignConfig,
    synthetic: list[Sample],
    cached: tuple[list, list, Path | None],
    rank: int,
    world: int,
    origin: tuple[int, int] = (0, 0),
) -> StepDataset:
    """Micro-step k of the run is item k: synthetic draws (by weight, or uniform with weighted loss)
    and real ones, a pure function of (seed, rank, k) (and of ``origin``, where the uniform streams stood
    at the checkpoint resumed: ``_stream_origin``)."""
    syn_paths, real_paths, empty_text = cached
    weights = [s.weight for s in synthetic]
    if cfg.syn_sampling == "weighted":  # draw by weight, scale by the mean weight: same objective
        syn_stream = WeightedStream(weights, cfg.batch_size, seed=cfg.seed, rank=rank, world=world)
        weights = [float(np.mean(weights))] * len(weights)
    else:
        syn_stream = Stream(
            len(weights), cfg.batch_size, seed=cfg.seed, rank=rank, world=world, origin=origin
        )
    real_items = [CachedItem(lat, txt, 1.0) for lat, txt in real_paths]
    return StepDataset(
        [CachedItem(lat, txt, w) for (lat, txt), w in zip(syn_paths, weights, strict=True)],
        syn_stream,
        real_items,
        Stream(len(real_items), cfg.real_bs, seed=cfg.seed + 1, rank=rank, world=world, origin=origin)
        if real_items
        else None,
        lambda_real=cfg.lambda_real,
        length=cfg.max_steps * cfg.grad_accum,
        empty_text=empty_text,
        text_dropout=cfg.text_dropout,
    )


def _stream_origin(cfg: AlignConfig, checkpoint: Path | None, world: int) -> tuple[int, int]:
    """Where the uniform streams of a run resumed from ``checkpoint`` go on: (its micro-step, the batches
    of all ranks drawn before it). Checkpoints before 2026-12-07 do not record the batches: their run
    drew ``micro-step x its process count``. Without a checkpoint (0, 0)."""
    if checkpoint is None:
        return 0, 0
    state = read_json(checkpoint / STATE_FILE)
    micro = int(state["step"]) * cfg.grad_accum
    drawn = state.get("stream_batches")
    return micro, int(drawn) if drawn is not None else micro * (checkpoint_world(checkpoint) or world)


def _clear_run(out: Path) -> None:
    """What a run writes in OUT, but its latent cache: an earlier run's, for --overwrite."""
    for name in RUN_DIRS:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("train_summary.json", "align_config.json"):
        (out / name).unlink(missing_ok=True)


# ---- the run's phases, in order ------------------------------------------------------------------------
@dataclass
class _Run(Preflight):
    """A run once its model is ready to train: what the phases after ``_load_for_training`` share."""

    spec: Any
    pipe: Any
    trained_name: str  # the pipeline component trained: transformer, or transformer_2 (the low-noise expert)
    t_range: tuple[int, int]  # the integer timesteps it trains at
    params: list[torch.nn.Parameter]  # the trained ones
    held_paths: list  # the held-out clips' cached (latent, text) paths
    dataset: StepDataset
    n_real: int  # real clips per micro-batch
    model: Any  # the transformer as accelerate prepared it
    optimizer: Any
    scheduler: Any
    ema: Any
    writer: Any = None  # TensorBoard's, on the main process
    origin: tuple[int, int] = (0, 0)  # where the uniform streams went on from (``_stream_origin``)

    @property
    def pinned(self) -> bool:
        """Page-locked batches: copied to the GPU without a stall."""
        return self.accelerator.device.type == "cuda"

    @property
    def samples_per_step(self) -> int:
        return (self.cfg.batch_size + self.n_real) * self.world * self.cfg.grad_accum


def _load_for_training(ready: Preflight, progress: bool) -> _Run:
    """The model loaded, every video and prompt cached, the optimizer, LR scheduler and EMA made and the
    transformer prepared by accelerate; then, on the main process, OUT cleared for --overwrite and
    align_config.json written. Collective."""
    cfg, accelerator = ready.cfg, ready.accelerator
    spec, pipe, trained_name, t_range, params = _load_model(cfg, ready.weight_dtype, ready.trained)
    _record_commit(ready)
    if cfg.expert:
        frozen = [c for n, c in pipe.components.items() if n in spec.frozen_experts(cfg.expert)]
        loaded = not any(is_empty(c) for c in frozen)  # (left out only when nothing samples with it)
        ready.data["expert"] = {"component": trained_name, "timesteps": list(t_range), "other_loaded": loaded}
    if ready.prompts:
        sampler_settings(cfg, spec, pipe)  # a size the model cannot sample: refused now, not at step 0
    *cached, held_paths, cache_stats = cache_all(
        cfg, spec, pipe, accelerator, ready.synthetic, ready.real, ready.hashes, progress,
        held_out=ready.held_samples,
    )  # fmt: skip
    check_shapes(*cached, held_paths)
    ready.data["cache"] = asdict(cache_stats)
    origin = _stream_origin(cfg, ready.resume_from, ready.world)
    dataset = _step_dataset(cfg, ready.synthetic, tuple(cached), ready.rank, ready.world, origin)
    n_real = cfg.real_bs if dataset.real else 0

    trained = getattr(pipe, trained_name)  # a frozen expert stays on the CPU
    place_for_training(trained, accelerator)
    optimizer, scheduler = make_optimizer(cfg, params, accelerator, micro_batch=cfg.batch_size + n_real)
    # EMA made from the fp32 weights before DeepSpeed casts them: a bf16 average barely moves
    ema = make_ema(cfg, params, accelerator)
    model, optimizer = accelerator.prepare(trained, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    save_trainable_only(accelerator)  # a LoRA run's checkpoints: its adapters, not the whole transformer
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    if ready.main:
        if cfg.overwrite:  # every check passed: the earlier run goes (a refused one leaves it whole)
            _clear_run(cfg.out)
        with atomic_write(cfg.out / "align_config.json") as handle:
            handle.write(cfg.model_dump_json(indent=1))
    accelerator.wait_for_everyone()
    return _Run(
        **vars(ready),
        spec=spec,
        pipe=pipe,
        trained_name=trained_name,
        t_range=t_range,
        params=params,
        held_paths=held_paths,
        dataset=dataset,
        n_real=n_real,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        ema=ema,
        origin=origin,
    )


def _record_commit(ready: Preflight) -> None:
    """Once the model is loaded: the commit a Hub id resolved to (the main process's Hub cache answers for
    all), refused when the checkpoint to resume was written on another, else recorded by every checkpoint
    (``inputs``) and the summary (``data``). Collective."""
    from accelerate.utils import broadcast_object_list

    commit = broadcast_object_list([hub_commit(ready.cfg.model) if ready.main else None])[0]
    check_loaded_commit(ready.cfg, ready.resume_from, commit)
    ready.inputs["model_commit"] = commit
    if commit is not None:
        ready.data["model_commit"] = commit


def _resume(run: _Run) -> int:
    """The step the run starts from: the resumed checkpoint's (its state loaded) or 0. The main process
    drops the checkpoints and log lines after it; then the ranks' weights are compared (collective)."""
    step = 0
    if run.resume_from is not None:
        saved = load_checkpoint(run.accelerator, run.resume_from, strict=False)  # frozen weights: the base's
        step = int(saved["step"])
        if run.ema is not None:
            # accelerate loads a registered object's state onto the CPU (load_custom_state: map_location
            # "cpu") and EMAModel.load_state_dict keeps those tensors: on a GPU the next update would take
            # CPU averages minus CUDA weights. Back beside the weights, in the dtype they were saved in.
            run.ema.to(device=run.accelerator.device)
        run.say(f"resumed from {run.resume_from} at step {step}")
        before = checkpoint_world(run.resume_from)
        if before is not None and before != run.world:
            per_process = run.samples_per_step // run.world
            run.say(
                f"warning: checkpoint written by {before} processes, now {run.world}: {per_process * before} "
                f"videos per step before it, {run.samples_per_step} from it on, at the same learning rate; the "
                f"step count, LR schedule, optimizer{' and EMA' if run.ema is not None else ''} go on from step "
                f"{step} of {run.cfg.max_steps}, and the videos from where the checkpoint's run stopped drawing"
            )
    if run.main:
        run.log_dir.mkdir(parents=True, exist_ok=True)
        clear_after(run.ckpt_root, run.log_dir / "train.jsonl", step)
        keep_held_out_log(run.log_dir, step, run.held_set)
    assert_ranks_in_sync(run.accelerator, run.model, step)
    return step


def _loader(run: _Run, step: int) -> torch.utils.data.DataLoader:
    """The batches of the micro-steps from ``step`` on."""
    return torch.utils.data.DataLoader(
        run.dataset,
        batch_size=None,
        sampler=range(step * run.cfg.grad_accum, len(run.dataset)),
        num_workers=run.cfg.num_workers,
        pin_memory=run.pinned,
    )


def _open_writer(run: _Run, step: int, held: list[Any]) -> None:
    """TensorBoard's writer on the main process, from ``step`` on."""
    if run.main:
        from torch.utils.tensorboard import SummaryWriter

        # Purged from step 1 on a fresh start too: a killed attempt may have logged steps before any checkpoint.
        run.writer = SummaryWriter(str(run.log_dir / "tensorboard"), purge_step=step + 1)
        held.append(run.writer)  # closed (its events flushed) however the run ends, with OUT's lock


def _measure_start(run: _Run, step: int) -> None:
    """The validation samples and the held-out loss of the step the run starts from, when due and not
    already there. Collective."""
    from accelerate.utils import broadcast_object_list

    # The model before training (what later samples are compared with), or the samples of the step a
    # killed run had checkpointed but not yet sampled. The main process decides for all: a rank that saw
    # the folder otherwise (a node's own file system, a slow mount) would skip a collective the others run.
    if run.prompts and samples_due(run.cfg, step):
        missing = broadcast_object_list([not samples_dir(run.cfg, step).is_dir() if run.main else None])
        if missing[0]:
            write_samples(
                run.cfg, run.spec, run.pipe, run.model, run.accelerator, run.prompts, step, run.writer
            )
    # As for the samples: before training, or the step a killed run had checkpointed but not measured.
    if run.held_paths and samples_due(run.cfg, step):
        missing = broadcast_object_list(
            [step not in held_out_steps(run.log_dir, run.held_set) if run.main else None]
        )
        if missing[0]:
            _measure_held_out(run, step)


def _measure_held_out(run: _Run, at: int) -> None:
    """The held-out loss of the weights at step ``at``, logged (collective)."""

    def per_sample(params: torch.Tensor, text: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        zero = params.new_zeros(len(params))  # at the trained expert's timesteps, as training draws them
        spec, pipe, model = run.spec, run.pipe, run.model
        return batch_loss(spec, pipe, model, params, text, zero, generator, t_range=run.t_range)[1]

    loss = held_out_loss(
        per_sample,
        run.model,
        run.accelerator,
        run.held_paths,
        run.cfg.real_bs,
        run.cfg.validation_seed,
    )
    run.data["val_loss"] = loss
    if run.main:
        record_held_out(run.log_dir, at, loss, len(run.held_paths), run.held_set, run.writer)


def _updates(
    run: _Run, loader: Any, step: int, progress: bool, stop: StopRequest
) -> tuple[int, list[int] | None, dict]:
    """Train from ``step`` to the last: each micro-step's loss and backward pass, each update's optimizer,
    scheduler and EMA steps and what is due after it, or a SIGTERM's stop (``stop``). Returns the step
    reached, this rank's first batch's ids (None: no micro-step ran) and the last log line ({}: none was
    written)."""
    from tqdm import tqdm

    cfg, accelerator, model, pinned = run.cfg, run.accelerator, run.model, run.pinned
    bar = tqdm(total=cfg.max_steps, initial=step, desc="align", disable=not (progress and run.main))
    log = StepLog(run.samples_per_step, run.world)
    first_ids: list[int] | None = None
    last_log: dict = {}
    for micro, batch in zip(range(step * cfg.grad_accum, len(run.dataset)), loader, strict=True):
        first_ids = batch["ids"] if first_ids is None else first_ids
        coef = batch["coef"].to(accelerator.device, non_blocking=pinned)
        with accelerator.accumulate(model):
            loss, per_sample = batch_loss(
                run.spec,
                run.pipe,
                model,
                batch["params"].to(accelerator.device, non_blocking=pinned),
                batch["text"].to(accelerator.device, non_blocking=pinned),
                coef,
                step_generator(cfg.seed, run.rank, micro, accelerator.device),
                n_syn=batch["n_syn"],
                syn_min_timestep=cfg.synthetic_min_timestep,
                t_range=run.t_range,
            )
            accelerator.backward(loss)
            grad_norm = None
            if accelerator.sync_gradients:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        log.add(loss, per_sample, coef, batch["n_syn"])
        if not accelerator.sync_gradients:
            continue
        lr = run.scheduler.get_last_lr()[0]  # the rate this update used
        # An update fp16's gradient scaler skipped (inf/NaN gradients) moves no weight: as accelerate's own
        # prepared scheduler (diffusers' examples), it does not use up a step of the warm-up or decay either.
        if not run.optimizer.step_was_skipped:
            run.scheduler.step()
        if run.ema is not None:
            run.ema.step(trainable_parameters(accelerator.unwrap_model(model)))
        step += 1
        log.steps += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            last_log = _log_update(run, log, bar, step, lr, grad_norm)
        _after_update(run, log, step)
        if stop.due(accelerator):
            _stop_at(run, log, step)
    bar.close()
    if run.writer is not None:
        run.writer.close()
    return step, first_ids, last_log


def _log_update(run: _Run, log: StepLog, bar: Any, step: int, lr: float, grad_norm: Any) -> dict:
    """The log line of update ``step`` (collective): in logs/train.jsonl, TensorBoard and the progress bar
    on the main process. A loss no longer finite stops the run."""
    line = log.row(run.accelerator, step, lr, grad_norm, bool(run.n_real))
    if run.main:
        append_jsonl(run.log_dir / "train.jsonl", finite_values(line))
        for key, value in line.items():
            if isinstance(value, float) and key != "step":
                run.writer.add_scalar(f"align/{key}", value, step)
        bar.set_postfix(loss=f"{line['loss']:.4g}")
    if not math.isfinite(line["loss"]):  # reduced over the ranks: all stop here
        raise VideoliftError(
            f"training diverged: the loss is {line['loss']} at step {step} (its line is the last of "
            "logs/train.jsonl; no checkpoint of it is written). Lower --lr or --max-grad-norm, or bring "
            "the rewards to [0, 1] (--weight-transform normalized)"
        )
    return line


def _after_update(run: _Run, log: StepLog, step: int) -> None:
    """What else is due after update ``step``, in this order: the held-out loss, the checkpoint, the
    validation samples (collective). Their time is left out of the log's throughput."""
    cfg = run.cfg
    if run.held_paths and samples_due(cfg, step):  # before the checkpoint: a checkpointed step has its line
        measuring = time.perf_counter()
        _measure_held_out(run, step)
        log.paused += time.perf_counter() - measuring
    if _checkpoint_due(cfg, step):
        _checkpoint(run, log, step)
    if run.prompts and samples_due(cfg, step):
        sampling = time.perf_counter()
        write_samples(cfg, run.spec, run.pipe, run.model, run.accelerator, run.prompts, step, run.writer)
        log.paused += time.perf_counter() - sampling


def _checkpoint_due(cfg: AlignConfig, step: int) -> bool:
    return step % cfg.checkpoint_every == 0 or step == cfg.max_steps


def _checkpoint(run: _Run, log: StepLog, step: int) -> None:
    """Checkpoint update ``step`` (collective), the ranks' weights compared first."""
    cfg = run.cfg
    assert_ranks_in_sync(run.accelerator, run.model, step)
    state = {
        "step": step,
        "fingerprint": cfg.training_fingerprint(),
        "config": cfg.model_dump(mode="json"),  # what --resume compares against
        "inputs": run.inputs,  # and the content of the files it names
        "world_size": run.world,
        "layout": run_layout(run.accelerator),  # what --resume must run under (check_resume_layout)
        # the batches of all ranks the uniform streams drew before this step: where a resume goes on
        "stream_batches": batches_drawn(run.origin, step * cfg.grad_accum, run.world),
    }
    saving = time.perf_counter()
    save_checkpoint(run.accelerator, run.ckpt_root, step, state, cfg.keep_checkpoints)
    log.paused += time.perf_counter() - saving  # not training: out of the throughput


def _stop_at(run: _Run, log: StepLog, step: int) -> None:
    """SIGTERM asked the run to stop (``stop_at_update_end``): update ``step`` is checkpointed unless it
    just was, and the run ends as an interrupted one does."""
    if not _checkpoint_due(run.cfg, step):
        _checkpoint(run, log, step)
    raise Terminated(f"after update {step} of {run.cfg.max_steps}, checkpointed")


def _finish(run: _Run, step: int, first_ids: list[int] | None, last_log: dict) -> AlignResult:
    """The export (EMA weights when enabled) and train_summary.json, which every rank contributes to
    (collective); the run's result."""
    from accelerate.utils import gather_object

    final_sync = assert_ranks_in_sync(run.accelerator, run.model, step)
    export_dir = export_trained(
        run.cfg, run.accelerator, run.pipe, run.model, run.ema, run.weight_dtype, run.trained_name
    )
    ranks = gather_object([{"rank": run.rank, "first_ids": first_ids}])
    if run.main:
        last_log = write_summary(run, step, export_dir, last_log, ranks, final_sync)
        run.say(f"done: {step} steps; model in {export_dir}")
    run.accelerator.wait_for_everyone()
    return AlignResult(run.cfg.out, export_dir, step, run.world, run.data, last_log)


# ---- the run ---------------------------------------------------------------------------------------------
def train(
    cfg: AlignConfig, *, progress: bool = True, log: Callable[[str], None] | None = None
) -> AlignResult:
    """Run (or resume) the alignment ``cfg`` describes. ``log``: where the main process's messages go
    (what it trains on, warnings, where the model is; default: printed). ``progress=False``: no bars at
    all, diffusers' and transformers' loading and saving bars included."""
    from videolift.core.distributed import end_process_group, process_group_exists

    # The process group ends with the run that made it; one an earlier job in this process made is the
    # caller's (`videolift run` under torchrun evaluates after aligning, and may align twice).
    own_group = not process_group_exists()
    # OUT's lock, then the TensorBoard writer: closed here however the run ends, the lock last (a caller
    # that keeps a failed run's error keeps its frame, and would keep the lock held there).
    held: list[Any] = []
    try:
        # With bars on, the libraries' own state stands (the command line sets it from --no-progress).
        with nullcontext() if progress else library_bars(False):
            result = _train(cfg, progress, held, tell=log)
    finally:
        for opened in reversed(held):
            opened.close()
    if own_group:
        end_process_group()
    return result


def _train(
    cfg: AlignConfig, progress: bool, held: list[Any], tell: Callable[[str], None] | None = None
) -> AlignResult:
    """The run's phases in order; every rank goes through each (most are collective)."""
    check_folders(cfg)
    ready = preflight(cfg, _accelerator(cfg), held, tell)  # all that can be refused before the model loads
    run = _load_for_training(ready, progress)
    step = _resume(run)
    loader = _loader(run, step)
    run.say(describe_run(run.cfg, run.data, run.n_real, run.world, run.params, step, run.samples_per_step))
    _open_writer(run, step, held)
    _measure_start(run, step)
    with stop_at_update_end() as stop:
        step, first_ids, last_log = _updates(run, loader, step, progress, stop)
    return _finish(run, step, first_ids, last_log)
