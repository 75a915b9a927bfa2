"""The held-out diffusion loss while aligning (``--validation-real``): the model's own training loss on
video-text pairs it does not train on, logged when validation samples are due (before the first update,
every ``validation_every`` steps and after the last)::

    OUT/logs/validation.jsonl    {"step": 100, "val_loss": 0.41, "clips": 64, "set": "3f2a..."} per line
    OUT/logs/tensorboard         align/val_loss

``set`` names the measurement (the held-out file's content, its videos' folder, the seed and batch size):
a ``--resume`` with other held-out clips keeps none of the other set's lines, and a fresh start none at all.

Every clip keeps its latent draw, timestep and noise for the whole run (drawn from ``validation_seed``
and its batch's index), so the curve moves with the weights only: one draw per clip is noisy across
clips, not across steps. Batches of ``--real-batch-size`` clips are dealt round-robin to the processes,
so the value does not depend on how many there are. The weights being trained are measured (not the EMA),
in eval mode (no dropout), without text dropout.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videolift.align.cache import load_tensor
from videolift.core.files import content_hash
from videolift.core.jsonl import append_jsonl, finite_values, iter_json_lines, write_jsonl

LOG = "validation.jsonl"
_TAG = 0x484F4C44  # keeps the held-out draws apart from the training micro-steps' (``step_generator``)


def held_out_generator(seed: int, batch: int, device: Any) -> torch.Generator:
    """The RNG of held-out batch ``batch``: the same at every step of the run and on any process."""
    state = np.random.SeedSequence([seed, _TAG, batch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & (2**63 - 1))


def held_out_loss(
    loss_of: Any, model: Any, accelerator: Any, clips: list[tuple[Path, Path]], batch_size: int, seed: int
) -> float:
    """The mean diffusion loss of ``clips`` ((latent, text) cache paths). ``loss_of(params, text,
    generator)`` gives a batch's per-clip losses. Collective: every process runs as many batches (one
    with none left repeats the first batch and does not count it), so the forward passes FSDP and
    DeepSpeed synchronise stay matched."""
    batches = [clips[i : i + batch_size] for i in range(0, len(clips), batch_size)]
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(batches), world))
    totals = torch.zeros(2, dtype=torch.float64)  # summed losses, clips
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for k in range(math.ceil(len(batches) / world)):
                index = mine[k] if k < len(mine) else 0
                params = torch.stack([load_tensor(latent) for latent, _ in batches[index]])
                text = torch.stack([load_tensor(text) for _, text in batches[index]])
                per_clip = loss_of(
                    params.to(accelerator.device),
                    text.to(accelerator.device),
                    held_out_generator(seed, index, accelerator.device),
                )
                if k < len(mine):
                    totals += torch.tensor(
                        [float(per_clip.double().sum()), len(per_clip)], dtype=torch.float64
                    )
    finally:
        model.train(was_training)
    totals = accelerator.reduce(totals.to(accelerator.device), reduction="sum").cpu()
    return float(totals[0] / totals[1])


def held_out_set(cfg: Any) -> str:
    """What names one measurement: the held-out file's content, its videos' folder, seed and batch size."""
    what = [
        content_hash(cfg.validation_real),
        str(cfg.validation_root.resolve()),
        cfg.validation_seed,
        cfg.real_bs,
    ]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def _lines(log_dir: Path) -> list[dict]:
    path = log_dir / LOG
    return [o for _, o in iter_json_lines(path, skip_partial_last=True)] if path.exists() else []


def keep_held_out_log(log_dir: Path, step: int, held_set: str | None) -> None:
    """Before (re)starting at ``step`` (main process): the lines of steps up to it, of ``held_set`` only
    (None: a run measuring nothing now keeps every set's); a fresh start (step 0) keeps nothing."""
    path = log_dir / LOG
    if step == 0:
        path.unlink(missing_ok=True)
    elif path.exists():
        write_jsonl(
            path,
            [o for o in _lines(log_dir) if o.get("step", 0) <= step and held_set in (None, o.get("set"))],
        )


def held_out_steps(log_dir: Path, held_set: str) -> set[int]:
    """The steps whose held-out loss of ``held_set`` the log holds."""
    return {int(o["step"]) for o in _lines(log_dir) if "step" in o and o.get("set") == held_set}


def last_held_out(log_dir: Path, held_set: str) -> float | None:
    """The last logged held-out loss of ``held_set`` (a finished run resumed measures nothing new)."""
    lines = [o for o in _lines(log_dir) if o.get("set") == held_set]
    return lines[-1].get("val_loss") if lines else None


def record_held_out(
    log_dir: Path, step: int, loss: float, clips: int, held_set: str, writer: Any = None
) -> dict:
    """Append the step's line (main process) and its TensorBoard point."""
    # A diverged loss as null (and named under non_finite), as the train log writes it.
    line = finite_values({"step": step, "val_loss": loss, "clips": clips, "set": held_set})
    append_jsonl(log_dir / LOG, line)
    if writer is not None and math.isfinite(loss):
        writer.add_scalar("align/val_loss", loss, step)
    return line
