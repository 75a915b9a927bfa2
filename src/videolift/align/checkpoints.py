"""Alignment checkpoints: align's names for the shared ones (``core.checkpoints``), and whether --resume
may use the latest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videolift.align.config import RESUMABLE_CHANGES, AlignConfig
from videolift.core import checkpoints as core
from videolift.core.checkpoints import (
    STATE_FILE,
    checkpoint_step,
    clear_partial,
    latest_checkpoint,
    layout_conflict,
)
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
        if name == "model_commit":  # (a Hub id not cached yet is known once loaded: compared then)
            if why := commit_conflict(cfg, digest, now.get(name), conflicts):
                conflicts.append(why)
        elif now.get(name) != digest and not any(c.startswith(f"{name}:") for c in conflicts):
            conflicts.append(
                f"{name}: {getattr(cfg, name)} has changed since the checkpoint (its content differs)"
            )
    return conflicts


def commit_conflict(cfg: AlignConfig, saved: str | None, now: str | None, conflicts: list[str]) -> str | None:
    """Why a Hub id that resolved to commit ``saved`` when the checkpoint was written must not resume on
    ``now`` (None: it may). Either None is no conflict: a checkpoint from before 2026-12-07 records no
    commit, a local model has none, and an id not in the cache yet has one once loaded. ``conflicts``: the
    others found, among them a changed --model, which says it already."""
    if None in (saved, now) or saved == now or any(c.startswith("model:") for c in conflicts):
        return None
    return (
        f"model_commit: {saved} in the checkpoint, {now} now ({cfg.model} was updated on the Hub since: "
        "other base weights; start again with --overwrite, or in a new --out)"
    )


def check_loaded_commit(cfg: AlignConfig, checkpoint: Path | None, commit: str | None) -> None:
    """After the model loaded: refuse to resume ``checkpoint`` if the Hub id resolved to another commit
    than the checkpoint's (an id not in the cache at preflight, or a load that fetched an update)."""
    if checkpoint is None:
        return
    saved = (read_json(checkpoint / STATE_FILE).get("inputs") or {}).get("model_commit")
    if why := commit_conflict(cfg, saved, commit, []):
        raise _other_settings(checkpoint, [why])


def _other_settings(checkpoint: Path, conflicts: list[str]) -> VideoliftError:
    """The refusal to resume ``checkpoint``, naming each conflict on a line of its own."""
    return VideoliftError(
        f"{checkpoint}: written by a run with other settings (only {', '.join(sorted(RESUMABLE_CHANGES))}"
        " may change on --resume):\n  " + "\n  ".join(conflicts)
    )


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
        raise _other_settings(latest, conflicts)
    if latest is not None and (step := checkpoint_step(latest)) > cfg.max_steps:
        raise VideoliftError(  # it would export the longer run's weights as the shorter one's
            f"{latest}: the run is at step {step}, past --max-steps {cfg.max_steps}; "
            "train fewer steps into a new --out"
        )
    return latest


def check_resume_layout(cfg: AlignConfig, root: Path, layout: str) -> None:
    """Refuse --resume of the latest checkpoint under ``root`` when this run's layout (``run_layout``)
    is not the one it was written under: accelerate's load would fail only after the cache, in a
    traceback. Before the inputs are hashed. Another process count under the same layout resumes."""
    latest = latest_checkpoint(root) if cfg.resume else None
    if latest is not None and (why := layout_conflict(latest, layout)):
        raise VideoliftError(why)


def save_checkpoint(accelerator: Any, root: Path, step: int, state: dict, keep: int) -> Path:
    """``core.checkpoints.save_checkpoint`` under align's names. Collective."""
    return core.save_checkpoint(accelerator, root, step, state, keep, digits=STEP_DIGITS)


def clear_after(root: Path, log: Path, step: int) -> None:
    """Before (re)starting at ``step``: drop a save the previous run did not finish and the log lines of
    steps it did past its last checkpoint. Main process only."""
    clear_partial(root)
    trim_step_log(log, step)
