"""Alignment checkpoints: align's names for the shared ones (``core.checkpoints``), and whether --resume
may use the latest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videolift.align.config import RESUMABLE_CHANGES, AlignConfig
from videolift.core import checkpoints as core
from videolift.core.checkpoints import STATE_FILE, checkpoint_step, clear_partial, latest_checkpoint
from videolift.core.errors import VideoliftError
from videolift.core.jsonl import read_json, trim_step_log

STEP_DIGITS = 7  # checkpoints/step-0000100: the names align has always written


def checkpoint_conflicts(cfg: AlignConfig, checkpoint: Path, inputs: dict | None = None) -> list[str]:
    """Settings of ``cfg`` that differ from those of the run that wrote ``checkpoint`` (none: resume).
    ``inputs``: ``cfg.input_hashes()``, if already computed."""
    state = read_json(checkpoint / STATE_FILE)
    saved = state.get("config")
    if saved is None:  # checkpoints written before 2026-12-04 hold only a hash; the config sits in OUT
        if state.get("fingerprint") == cfg.training_fingerprint():
            return []
        path = checkpoint.parent.parent / "align_config.json"
        if not path.exists():
            return [f"the checkpoint's settings differ and {path} is missing to say how"]
        saved = read_json(path)
    conflicts = cfg.resume_conflicts(saved)
    # Checkpoints from before 2026-12-05 hold no hashes: their inputs are compared by path only (and
    # before 2026-12-06 no model weights: the model is compared by path).
    hashes, now = state.get("inputs") or {}, inputs or cfg.input_hashes()
    for name, digest in sorted(hashes.items()):
        if now.get(name) != digest and not any(c.startswith(f"{name}:") for c in conflicts):
            conflicts.append(
                f"{name}: {getattr(cfg, name)} has changed since the checkpoint (its content differs)"
            )
    return conflicts


def resume_point(cfg: AlignConfig, root: Path, inputs: dict | None = None) -> Path | None:
    """The checkpoint this run continues from (None: a fresh start); raises when OUT holds checkpoints
    without --resume, or ones another run's settings wrote. Decided identically on every rank.
    ``inputs``: ``cfg.input_hashes()``, if already computed."""
    latest = latest_checkpoint(root)
    if not cfg.resume:
        if latest is not None and not cfg.overwrite:  # --overwrite: the run deletes them once it starts
            raise VideoliftError(
                f"{cfg.out} already holds checkpoints: pass --resume to continue, --overwrite to start again, "
                "or use a new --out"
            )
        return None
    if latest is not None and (conflicts := checkpoint_conflicts(cfg, latest, inputs)):
        raise VideoliftError(
            f"{latest}: written by a run with other settings (only {', '.join(sorted(RESUMABLE_CHANGES))}"
            " may change on --resume):\n  " + "\n  ".join(conflicts)
        )
    if latest is not None and (step := checkpoint_step(latest)) > cfg.max_steps:
        raise VideoliftError(  # it would export the longer run's weights as the shorter one's
            f"{latest}: the run is at step {step}, past --max-steps {cfg.max_steps}; "
            "train fewer steps into a new --out"
        )
    return latest


def save_checkpoint(accelerator: Any, root: Path, step: int, state: dict, keep: int) -> Path:
    """``core.checkpoints.save_checkpoint`` under align's names. Collective."""
    return core.save_checkpoint(accelerator, root, step, state, keep, digits=STEP_DIGITS)


def clear_after(root: Path, log: Path, step: int) -> None:
    """Before (re)starting at ``step``: drop a save the previous run did not finish and the log lines of
    steps it did past its last checkpoint. Main process only."""
    clear_partial(root)
    trim_step_log(log, step)
