"""Alignment checkpoints: atomic saves, the latest complete one, and whether --resume may use it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from videolift.align.config import RESUMABLE_CHANGES, AlignConfig
from videolift.core.errors import VideoliftError
from videolift.core.jsonl import atomic_write, read_json, trim_step_log

CKPT_RE = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"


def latest_checkpoint(root: Path) -> Path | None:
    found = [
        (int(m.group(1)), p)
        for p in (root.iterdir() if root.exists() else [])
        if (m := CKPT_RE.match(p.name)) and (p / STATE_FILE).exists()
    ]
    return max(found)[1] if found else None


def checkpoint_step(checkpoint: Path) -> int:
    return int(CKPT_RE.match(checkpoint.name).group(1))


def checkpoint_conflicts(cfg: AlignConfig, checkpoint: Path) -> list[str]:
    """Settings of ``cfg`` that differ from those of the run that wrote ``checkpoint`` (none: resume)."""
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
    # Checkpoints from before 2026-12-05 hold no hashes: their inputs are compared by path only.
    hashes, now = state.get("inputs") or {}, cfg.input_hashes()
    for name, digest in sorted(hashes.items()):
        if now.get(name) != digest and not any(c.startswith(f"{name}:") for c in conflicts):
            conflicts.append(
                f"{name}: {getattr(cfg, name)} has changed since the checkpoint (its content differs)"
            )
    return conflicts


def resume_point(cfg: AlignConfig, root: Path) -> Path | None:
    """The checkpoint this run continues from (None: a fresh start); raises when OUT holds checkpoints
    without --resume, or ones another run's settings wrote. Decided identically on every rank."""
    latest = latest_checkpoint(root)
    if not cfg.resume:
        if latest is not None:
            raise VideoliftError(
                f"{cfg.out} already holds checkpoints: pass --resume to continue, or use a new --out"
            )
        return None
    if latest is not None and (conflicts := checkpoint_conflicts(cfg, latest)):
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
    """accelerate.save_state into a temporary directory, renamed when complete. Collective."""
    final, tmp = root / f"step-{step:07d}", root / f".partial-step-{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with atomic_write(tmp / STATE_FILE) as handle:
            json.dump(state, handle, indent=1)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        done = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := CKPT_RE.match(p.name)))
        for _, old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, checkpoint: Path) -> dict:
    """accelerate.load_state, and the trainer state saved beside it."""
    accelerator.load_state(str(checkpoint))
    return read_json(checkpoint / STATE_FILE)


def clear_after(root: Path, log: Path, step: int) -> None:
    """Before (re)starting at ``step``: drop a save the previous run did not finish and the log lines of
    steps it did past its last checkpoint. Main process only."""
    for partial in root.glob(".partial-step-*"):
        shutil.rmtree(partial, ignore_errors=True)
    trim_step_log(log, step)
