"""Training checkpoints shared by the trainers: atomic collective saves, the complete ones by step, loading.

A checkpoint is ``ROOT/step-N/``: accelerate's state plus ``trainer_state.json``, written last. It is
saved into ``ROOT/.partial-step-N/`` and renamed when complete, and removed state file first, so a
process killed at any moment never leaves a directory that looks complete without being so. Each
trainer keeps its own zero-padding of N (``digits``): checkpoints already on disk keep resuming.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from videolift.core.errors import VideoliftError
from videolift.core.files import writing
from videolift.core.jsonl import atomic_write, read_json

STATE_FILE = "trainer_state.json"  # the trainer's state; its presence marks a complete checkpoint
STEP_DIR = re.compile(r"^step-(\d+)$")  # any padding: the step is read from the number
PARTIAL = ".partial-"


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint directory is named after."""
    return int(STEP_DIR.match(checkpoint.name).group(1))


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Every ``step-N`` directory under ``root``, complete or not, by step."""
    entries = root.iterdir() if root.is_dir() else ()
    return sorted((int(m.group(1)), p) for p in entries if (m := STEP_DIR.match(p.name)) and p.is_dir())


def complete_checkpoints(root: Path) -> dict[int, Path]:
    """The complete checkpoints under ``root`` by step, oldest first."""
    return {step: path for step, path in _step_dirs(root) if (path / STATE_FILE).exists()}


def latest_checkpoint(root: Path) -> Path | None:
    done = complete_checkpoints(root)
    return done[max(done)] if done else None


def checkpoint_world(checkpoint: Path) -> int | None:
    """How many processes wrote ``checkpoint``: its state file's ``world_size``, else (checkpoints from
    before it was recorded) the count of accelerate's per-process RNG files; None when neither says."""
    try:
        saved = read_json(checkpoint / STATE_FILE).get("world_size")
    except (VideoliftError, AttributeError):
        saved = None
    if isinstance(saved, int) and saved > 0:
        return saved
    return len(list(checkpoint.glob("random_states_*.pkl"))) or None


# How accelerate's save_state lays a checkpoint out, by distributed type: its load_state reads only the
# files of the layout it runs under (one process looks for model.safetensors / pytorch_model.bin in an
# FSDP checkpoint; FSDP for its own files in a DDP one), and says so after the model has loaded.
LAYOUTS = {
    "ddp": "DDP or one process (model.safetensors, optimizer.bin)",
    "fsdp-sharded": "FSDP with SHARDED_STATE_DICT (pytorch_model_fsdp_0/, optimizer_0/)",
    "fsdp-full": "FSDP with FULL_STATE_DICT (pytorch_model_fsdp.bin)",
    "fsdp-local": "FSDP with LOCAL_STATE_DICT (pytorch_model_fsdp_rank*.bin)",
    "deepspeed": "DeepSpeed (pytorch_model/)",
    "megatron": "Megatron-LM",
}


def run_layout(accelerator: Any) -> str:
    """The layout (a ``LAYOUTS`` key) ``accelerator.save_state`` writes and its ``load_state`` reads."""
    from accelerate.utils import DistributedType

    kind = getattr(accelerator, "distributed_type", None)
    if kind == DistributedType.FSDP:
        state_dict = getattr(accelerator.state.fsdp_plugin.state_dict_type, "name", "SHARDED_STATE_DICT")
        return {"FULL_STATE_DICT": "fsdp-full", "LOCAL_STATE_DICT": "fsdp-local"}.get(
            state_dict, "fsdp-sharded"
        )
    if kind == DistributedType.DEEPSPEED:
        return "deepspeed"
    if kind == DistributedType.MEGATRON_LM:
        return "megatron"
    return "ddp"  # one process, DDP on any device, XLA: accelerate's own model / optimizer files


def launched_layout() -> str:
    """The layout this launch's training would write, before its trainer makes its accelerator: one made
    as the trainers make theirs (the launcher's FSDP / DeepSpeed settings are in the environment), so a
    resume under another layout is refused before any long work."""
    import torch

    from videolift.core.distributed import fresh_accelerator

    return run_layout(fresh_accelerator(cpu=not torch.cuda.is_available()))


def checkpoint_layout(checkpoint: Path) -> str | None:
    """The layout ``checkpoint`` was written under: its state file's ``layout``, else (checkpoints from
    before it was recorded) the one its files are of; None when neither says."""
    try:
        saved = read_json(checkpoint / STATE_FILE).get("layout")
    except (VideoliftError, AttributeError):
        saved = None
    if isinstance(saved, str) and saved:
        return saved
    if (checkpoint / "pytorch_model").is_dir():  # DeepSpeed's engine saves under its tag, "pytorch_model"
        return "deepspeed"
    if (checkpoint / "pytorch_model_fsdp_0").is_dir():
        return "fsdp-sharded"
    if (checkpoint / "pytorch_model_fsdp.bin").is_file():
        return "fsdp-full"
    if any(checkpoint.glob("pytorch_model_fsdp_rank*.bin")):
        return "fsdp-local"
    if (checkpoint / "model.safetensors").is_file() or (checkpoint / "pytorch_model.bin").is_file():
        return "ddp"
    return None


def layout_conflict(checkpoint: Path, now: str) -> str | None:
    """Why ``checkpoint`` cannot be resumed by a run under layout ``now`` (None: it can, or its layout is
    unknown): accelerate loads a checkpoint only under the layout that wrote it."""
    saved = checkpoint_layout(checkpoint)
    if saved is None or saved == now:
        return None
    world = checkpoint_world(checkpoint)
    by = f" by {world} process(es)" if world else ""
    return (
        f"{checkpoint}: written under {LAYOUTS.get(saved, saved)}{by}, and this run is under "
        f"{LAYOUTS.get(now, now)}: accelerate loads a checkpoint only under the layout that wrote it. Resume "
        "with the accelerate config (launcher and config file) that wrote it, or start again with --overwrite"
    )


def _leftovers(root: Path) -> list[Path]:
    """Saves killed before their rename, and step directories whose removal was killed halfway."""
    partial = sorted(root.glob(f"{PARTIAL}step-*")) if root.is_dir() else []
    return partial + [path for _, path in _step_dirs(root) if not (path / STATE_FILE).exists()]


def _remove(path: Path) -> None:
    # The state file first: a removal killed halfway leaves a directory that no longer counts as complete.
    (path / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def clear_partial(root: Path) -> None:
    """Drop what killed saves and rotations left under ``root``. Main process only, between saves."""
    for path in _leftovers(root):
        _remove(path)


def save_checkpoint(accelerator: Any, root: Path, step: int, state: dict, keep: int, *, digits: int) -> Path:
    """``accelerator.save_state`` into ``root/step-N`` (N padded to ``digits``) with ``state`` as its state
    file; of the others, the newest ``keep`` - 1 complete ones are kept. Collective: every process calls it."""
    final = root / f"step-{step:0{digits}d}"
    tmp = root / f"{PARTIAL}{final.name}"
    if accelerator.is_main_process and tmp.exists():  # the same step's save, killed
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    # DeepSpeed saves its model itself (the pre-save hook sees nothing): it leaves out frozen weights so.
    frozen_out = (
        {"exclude_frozen_parameters": True} if _deepspeed(accelerator) and _trained_only(accelerator) else {}
    )
    with writing(tmp, "the checkpoint"):
        accelerator.save_state(str(tmp), **frozen_out)
    accelerator.wait_for_everyone()  # every process's files (RNG states, shards) are in before it counts
    if accelerator.is_main_process:
        with atomic_write(tmp / STATE_FILE) as handle:
            json.dump(state, handle, indent=1)
        if final.exists():
            _remove(final)
        tmp.rename(final)
        others = [path for path in complete_checkpoints(root).values() if path != final]
        for path in _leftovers(root) + others[: max(len(others) - keep + 1, 0)]:  # never the new one
            _remove(path)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, checkpoint: Path, **load_state: Any) -> dict:
    """``accelerator.load_state`` (``load_state``: its keywords) and the trainer state saved beside it.
    With ``strict=False`` (checkpoints of ``save_trainable_only``), every trained weight must be in it."""
    partial = load_state.get("strict") is False
    if partial and _deepspeed(accelerator):  # accelerate hands these to DeepSpeed's engine, whose name it is
        load_state = {k: v for k, v in load_state.items() if k != "strict"} | {"load_module_strict": False}
    accelerator.load_state(str(checkpoint), **load_state)
    if partial:
        _check_trained_weights(accelerator, checkpoint)
    return read_json(checkpoint / STATE_FILE)


def _deepspeed(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return getattr(accelerator, "distributed_type", None) == DistributedType.DEEPSPEED


def _check_trained_weights(accelerator: Any, checkpoint: Path) -> None:
    """``strict=False`` loads the names that match and skips the rest: a checkpoint whose names do not
    match the model (another model, another version's layout) would resume from the base's weights
    without a word."""
    from safetensors import safe_open

    for i, model in enumerate(getattr(accelerator, "_models", [])):  # what prepare() gave it
        file = checkpoint / ("model.safetensors" if i == 0 else f"model_{i}.safetensors")
        if not file.exists():  # DeepSpeed's and FSDP's own layouts, which their loaders check
            continue
        with safe_open(str(file), "pt") as handle:
            saved = {key.removeprefix("module.") for key in handle.keys()}  # noqa: SIM118 (not a dict)
        trained = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
        if missing := sorted(trained - saved):
            raise VideoliftError(
                f"{checkpoint}: lacks {len(missing)} of the model's {len(trained)} trained weights (e.g. "
                f"{missing[0]}): its names do not match this model's (another model, or a library upgrade "
                "that renamed the model's modules); resume with the model and versions that wrote it"
            )


def save_trainable_only(accelerator: Any) -> None:
    """From now on checkpoints hold the trainable weights only: a LoRA run must not copy the frozen base
    into each one (11 GB for CogVideoX-5B), which the run loads from the base again (whose weights resume
    checks). Resume them with ``strict=False``. DeepSpeed saves its model itself, told to leave the frozen
    weights out (``save_checkpoint``); FSDP's checkpoints stay whole."""

    def keep_trainable(models: list[Any], weights: list[dict[str, Any]], _dir: str) -> None:
        if not weights:  # DeepSpeed / FSDP: see save_checkpoint (a zip of the models with nothing failed)
            return
        for model, state in zip(models, weights, strict=True):
            wanted = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
            for key in [k for k in state if k.removeprefix("module.") not in wanted]:
                del state[key]

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator.videolift_trained_only = True  # read by save_checkpoint


def _trained_only(accelerator: Any) -> bool:
    return getattr(accelerator, "videolift_trained_only", False)
