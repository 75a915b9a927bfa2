"""The fine-tuning run's output directory: refusing to mix runs, checkpoints and resuming, the final
model, and a checkpoint exported as one."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from videolift.core.checkpoints import (
    checkpoint_world,
    clear_partial,
    complete_checkpoints,
    latest_checkpoint,
    layout_conflict,
    load_checkpoint,
    run_layout,
    save_checkpoint,
)
from videolift.core.environment import environment
from videolift.core.errors import VideoliftError
from videolift.core.files import lock_run, writing
from videolift.core.jsonl import (
    atomic_write,
    finite_values,
    iter_json_lines,
    read_json,
    trim_step_log,
)
from videolift.critic.sft_config import (
    CHECKPOINTS,
    MODEL_FILES,
    RESUMABLE_CHANGES,
    STEP_DIGITS,
    TENSORBOARD,
    TRAIN_CONFIG,
    TRAIN_LOG,
    TRAIN_SUMMARY,
    SFTConfig,
    SFTResult,
)
from videolift.critic.sft_model import prepare_model


def checkpoints(out: Path) -> dict[int, Path]:
    """Complete checkpoints of the run in ``out`` by update (a checkpoint killed mid-save is not one)."""
    return complete_checkpoints(out / CHECKPOINTS)


class RunConflict(VideoliftError):
    """OUT holds another run: a finished one, or an unfinished one with other settings."""


class AlreadyFinished(RunConflict):
    """--resume of a run that has finished with the same settings: there is nothing left to do."""


def check_output_dir(
    out: Path,
    cfg: SFTConfig,
    *,
    resume: bool,
    overwrite: bool,
    world: int | None = None,
    layout: str | None = None,
) -> None:
    """Refuse to mix runs: a finished or different run in OUT needs --overwrite, a resumed one the same
    settings, (``layout``: this run's ``run_layout``) the layout its checkpoint was written under and
    (``world``: this run's process count) as many processes. Only reads: ``start_run`` clears what
    --overwrite replaces, once everything is checked."""
    config = out / TRAIN_CONFIG
    if overwrite:
        return
    if (out / TRAIN_SUMMARY).exists():
        before = read_json(config) if config.exists() else None
        changed = _changed(before, cfg.comparable(before)) if before is not None else []
        if resume and before is not None and not changed:
            raise AlreadyFinished(
                f"{out}: this run has finished (same settings); nothing to resume. Its critic is {out}; "
                "pass --overwrite to train it again"
            )
        if resume and changed:  # a finished run is not continued (its schedule ended): say what differs
            raise RunConflict(
                f"{out}: already holds a finished model, trained with other settings "
                f"({_differences(before, cfg.comparable(before), changed)}); a finished run is not continued: "
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
            detail = _differences(before, now, changed)
            raise RunConflict(
                f"{out}: cannot resume with different settings ({detail}); only "
                f"{', '.join(sorted(RESUMABLE_CHANGES))} may change on --resume"
            )
        if layout is not None:  # first: the process count's advice would not make it load
            ckpt = latest_checkpoint(out / CHECKPOINTS)
            if ckpt is not None and (why := layout_conflict(ckpt, layout)):
                raise RunConflict(why)
        if world is not None:
            check_same_world(out, cfg, world)


def check_same_world(out: Path, cfg: SFTConfig, world: int) -> None:
    """Refuse to resume OUT's latest checkpoint under another process count than the one that wrote it.
    Each process's share of an epoch's batches, the updates in the run (with --epochs), its LR schedule
    and the examples of each update follow from the count: the run would go on with another schedule,
    repeat or skip examples, or end at once with a model "finished" part way."""
    ckpt = latest_checkpoint(out / CHECKPOINTS)
    saved = None if ckpt is None else checkpoint_world(ckpt)
    if saved is None or saved == world:  # none yet: the run starts again at update 0, as this one plans it
        return
    per_update = cfg.batch_size * cfg.grad_accum
    raise RunConflict(
        f"{out}: its checkpoint {ckpt.name} was written by {saved} process(es), this run has {world}: "
        f"`critic train` does not resume under another process count (updates of {per_update * saved} "
        f"examples then, {per_update * world} now; each process's share of the epochs, the number of updates "
        f"and the LR schedule follow from it). Resume with {saved} process(es) (torchrun --nproc_per_node "
        f"{saved}), or start again with --overwrite"
    )


def _differences(before: dict[str, Any], now: dict[str, Any], changed: list[str]) -> str:
    """``max_steps: was 40, now 60; ...`` for the ``changed`` settings."""
    before, now = _flat(before), _flat(now)
    return "; ".join(f"{k}: was {before.get(k)!r}, now {now.get(k)!r}" for k in changed)


def _flat(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings with the caller's ``extra`` ones as ``extra.NAME``, nested ones by their path
    (``extra.spec.check_threshold``): a difference is named by the value that differs, not shown as two
    copies of the critic's whole spec."""
    flat = {k: v for k, v in settings.items() if k != "extra"}
    pending = [("extra", settings.get("extra") or {})]
    while pending:
        path, value = pending.pop()
        for k, v in value.items():
            if isinstance(v, dict) and v:  # an empty one stays a value, so it differs from a missing one
                pending.append((f"{path}.{k}", v))
            else:
                flat[f"{path}.{k}"] = v
    return flat


def _changed(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings (a caller's by its own name, ``extra.NAME``) that differ and that --resume may not
    change."""
    before, now = _flat(before), _flat(now)
    return sorted(
        k for k in set(before) | set(now) if before.get(k) != now.get(k) and k not in RESUMABLE_CHANGES
    )


def start_run(accelerator: Any, out: Path, cfg: SFTConfig, *, overwrite: bool, held: list[Any]) -> None:
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


def resume_from(accelerator: Any, out: Path, resume: bool, total: int, log: Any) -> int:
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


def tensorboard_writer(out: Path, step: int) -> Any:
    """OUT/tensorboard's writer, its events after ``step`` (those of a killed attempt) purged."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / TENSORBOARD), purge_step=step + 1)


def logged_seconds(out: Path, step: int, main: bool) -> float:
    """The ``seconds`` of the train log's line of ``step`` (0 for a fresh start, or on other ranks)."""
    if not (main and step and (out / TRAIN_LOG).exists()):
        return 0.0
    lines = [o for _, o in iter_json_lines(out / TRAIN_LOG, skip_partial_last=True) if o.get("step") == step]
    return float(lines[-1].get("seconds") or 0.0) if lines else 0.0


def save_step_checkpoint(accelerator: Any, out: Path, step: int, keep: int) -> None:
    # what --resume compares with (check_output_dir)
    state = {"step": step, "world_size": accelerator.num_processes, "layout": run_layout(accelerator)}
    save_checkpoint(accelerator, out / CHECKPOINTS, step, state, keep, digits=STEP_DIGITS)


def save_final(
    accelerator: Any, model: Any, processor: Any, out: Path, finalize: Any, result: SFTResult
) -> None:
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(model)  # collective under DeepSpeed / FSDP
    if accelerator.is_main_process:
        write_model(accelerator.unwrap_model(model), state, processor, out, finalize)
        summary = finite_values({k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()})
        summary["environment"] = environment(accelerator.device)  # of this (the last) attempt
        with atomic_write(out / TRAIN_SUMMARY) as handle:
            handle.write(json.dumps(summary, indent=1) + "\n")


def write_model(model: Any, state: dict[str, Any] | None, processor: Any, out: Path, finalize: Any) -> None:
    """The adapter (or full model), its generation config and processor as plain transformers / peft load
    them, then ``finalize``."""
    from videolift.critic.answers import save_answer_config

    model.config.use_cache = True
    getattr(model, "base_model", model).config.use_cache = True
    with writing(out, "the critic"):
        model.save_pretrained(out, state_dict=state, safe_serialization=True)
        processor.save_pretrained(out)
        save_answer_config(model, processor, out)  # how it answers: over the base's (full) or none (LoRA)
    if finalize is not None:
        finalize(out, model, processor)


def find_checkpoint(out: Path, step: int | None = None) -> tuple[Path, int]:
    """The complete checkpoint of update ``step`` in ``out`` (default: the latest), and its step."""
    found = checkpoints(out)
    final = finished_step(out)
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


def finished_step(out: Path) -> int | None:
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
    write_model(model, None, processor, dest, finalize)
