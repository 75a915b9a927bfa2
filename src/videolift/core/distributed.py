"""Processes and devices: how long ranks wait for each other, which device a run asks for, and what
accelerate leaves to DeepSpeed."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from videolift.core.errors import UsageError, VideoliftError

# Sharded jobs (generate, critic score) split their items evenly, but a rank may still finish its share
# long before another (long videos, a resumed run): torch's default 30 minutes at a barrier would kill
# the finished rank and with it the run.
SHARDED_JOB_TIMEOUT = timedelta(hours=12)

# Training ranks wait at a barrier while the main process alone hashes the base's weights, writes a
# checkpoint or exports the model (a 14B transformer is tens of GB): NCCL's default of 10 minutes ended
# such runs there. An hour, as a default of `align` / `critic train --ddp-timeout` (seconds).
TRAINING_TIMEOUT_SECONDS = 3600
# Its largest value: 30 days (a datetime.timedelta ends at 999,999,999 days; a longer wait is a hang).
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600


def launched_processes() -> int:
    """How many processes the launcher started (torchrun and accelerate launch set WORLD_SIZE; 1 without)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def checked_device(device: str, option: str = "--device") -> str:
    """``device`` as given once torch can place a tensor there ("auto" as it is), else a one-line error:
    "cuda" on a machine without a GPU would otherwise run on the CPU, unnoticed, and "gpu" end in a
    traceback."""
    import torch

    if device == "auto":
        return device
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:
        message = f"{option} {device}: {str(exc).splitlines()[0]}"
        try:
            torch.device(device)
        except RuntimeError:  # not a device's name ("gpu"): the command line is wrong, whatever the machine
            raise UsageError(message) from None
        raise VideoliftError(message) from None  # a device this machine lacks ("cuda" without a GPU)
    return device


def use_timeout(timeout: timedelta) -> None:
    """Make ``timeout`` how long this process waits at a collective from now on, also when an earlier job
    in it made the process group with another: a process's first accelerate state fixes the group's
    timeout for good, so `videolift run` under torchrun would otherwise keep its first stage's for every
    later one (generate's 12 hours for the trainers; a training run's hour for a later sharded job,
    whose finished ranks then stop waiting for the others). Nothing without a process group."""
    import torch.distributed as dist

    if not process_group_exists():
        return
    # set_timeout since torch 2.8; the private name before it (from torch 2.2; without either, as made).
    setter = getattr(dist, "set_timeout", None) or getattr(dist.distributed_c10d, "_set_pg_timeout", None)
    if setter is not None:
        setter(timeout)


def process_group_exists() -> bool:
    """Whether this process is in a torch process group (a multi-process launch's, once a job made it)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def end_process_group() -> None:
    """Leave the process group, if any (NCCL warns at exit about one left open)."""
    from accelerate import PartialState

    if process_group_exists():
        PartialState().destroy_process_group()


def sharded_state(cpu: bool) -> Any:
    """accelerate's state for a sharded job (generate, critic score, a critic's first passes), waiting ``SHARDED_JOB_TIMEOUT`` at
    collectives whichever job made the process group."""
    from accelerate import PartialState

    state = PartialState(cpu=cpu, timeout=SHARDED_JOB_TIMEOUT)
    use_timeout(SHARDED_JOB_TIMEOUT)
    return state


def process_state() -> Any:
    """accelerate's state of this launch's processes, made with ``SHARDED_JOB_TIMEOUT`` if this is its
    first use (the state is made once per process; later settings are ignored); CPU-only without a GPU
    (torchrun on CPU would otherwise give unsynchronised single-process runs)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=SHARDED_JOB_TIMEOUT)


def deepspeed_clipping(accelerator: Any, max_grad_norm: float) -> None:
    """Under DeepSpeed the engine clips gradients (accelerate's ``clip_grad_norm_`` does nothing there):
    give it ``--max-grad-norm`` unless the DeepSpeed config sets its own ``gradient_clipping``."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        if ds.get("gradient_clipping") in (None, "auto"):
            ds["gradient_clipping"] = max_grad_norm


def _restore_process_group_type() -> None:
    """An FSDP accelerator writes FSDP over the process group's own distributed type (MULTI_GPU, ...;
    accelerate's state.py), and the next AcceleratorState takes its FSDP plugin only when it finds that
    type: a second accelerator of an FSDP launch (``videolift run``'s align after its critic; a resume's
    ``launched_layout`` check) had none and failed ("AcceleratorState object has no attribute
    fsdp_plugin"). Put the process group's type back, as accelerate derives it (private; kept if absent)."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    shared = PartialState._shared_state
    if shared.get("distributed_type") != DistributedType.FSDP or not hasattr(
        PartialState, "_prepare_backend"
    ):
        return
    group = PartialState()
    shared["distributed_type"] = group._prepare_backend(group._cpu, False, group.backend)[1]


def fresh_accelerator(*, ddp_timeout: int | None = None, **settings: Any) -> Any:
    """An ``Accelerator`` with these settings, also when an earlier run in this process fixed accelerate's
    process-wide state to others: ``videolift run`` trains its critic (no mixed precision) and then aligns
    in bf16 in one process, as a notebook may; accelerate refuses the second ("AcceleratorState has
    already been initialized and cannot be changed"). The process group (``PartialState``) is kept; an
    earlier Accelerator still held reads the new settings (accelerate's state is shared), so runs follow
    each other, not interleave. ``ddp_timeout``: seconds a rank waits at a collective from now on."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import InitProcessGroupKwargs

    # Private (accelerate resets it so between its own tests); a version without it refuses as before.
    if callable(reset := getattr(AcceleratorState, "_reset_state", None)):
        reset()
    _restore_process_group_type()
    if ddp_timeout is not None:
        handler = InitProcessGroupKwargs(timeout=timedelta(seconds=ddp_timeout))
        settings["kwargs_handlers"] = [*settings.get("kwargs_handlers", []), handler]
    accelerator = Accelerator(**settings)
    if ddp_timeout is not None:  # the handler is ignored when an earlier run in this process made the group
        use_timeout(timedelta(seconds=ddp_timeout))
    return accelerator
