"""``OUT/train_summary.json``, written last by a run that finished: its steps and processes, where the
model went, what it trained on (``data``, with the last held-out loss), its last log line, each rank's
first batch and weight checksum, and the environment of the attempt that wrote it."""

from __future__ import annotations

import json
from pathlib import Path

from videolift.align.held_out import last_held_out
from videolift.align.preflight import Preflight
from videolift.core.environment import environment
from videolift.core.jsonl import atomic_write, finite_values, read_json


def write_summary(
    run: Preflight,
    step: int,
    export_dir: Path | None,
    last_log: dict,
    ranks: list[dict],
    final_sync: list[list[float]],
) -> dict:
    """train_summary.json of ``run`` at ``step`` (main process): ``ranks``, each rank's first batch, and
    ``final_sync``, their weight checksums. Returns the last log line it records, the run's own when this
    attempt ran no step."""
    if step and not last_log:
        # A finished run resumed (to re-export): nothing ran now, so keep what the run logged.
        last_log, ranks = _previous_summary(run.cfg.out, run.log_dir, ranks)
    if run.held_set is not None and "val_loss" not in run.data:  # measured before this attempt
        run.data["val_loss"] = last_held_out(run.log_dir, run.held_set)
    summary = {
        "steps": step,
        "world_size": run.world,
        "export": str(export_dir),
        "data": finite_values(run.data),  # a NaN held-out loss as null
        "last_log": finite_values(last_log),  # an overflowing gradient norm as null, as in the log
        "ranks": [
            dict(r, checksum=c[1:] if c else None)
            for r, c in zip(ranks, final_sync or [[]] * run.world, strict=True)
        ],
        "environment": environment(run.accelerator.device),  # of this (the last) attempt
    }
    with atomic_write(run.cfg.out / "train_summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return last_log


def _previous_summary(out: Path, log_dir: Path, ranks: list[dict]) -> tuple[dict, list[dict]]:
    """The last log line and each rank's first batch of the run that a resume without steps continues."""
    from collections import deque

    from videolift.core.jsonl import iter_json_lines

    log_file = log_dir / "train.jsonl"
    lines = deque(iter_json_lines(log_file, skip_partial_last=True), maxlen=1) if log_file.exists() else ()
    last = lines[0][1] if lines else {}
    summary = out / "train_summary.json"
    before = {r["rank"]: r for r in read_json(summary)["ranks"]} if summary.exists() else {}
    return last, [r | {"first_ids": before.get(r["rank"], {}).get("first_ids")} for r in ranks]
