"""SIGTERM handled as Ctrl-C is. A scheduler's stop (Slurm's preemption, `kill`, `timeout`, a container's
stop) sends SIGTERM, whose default ends Python at once: no ``finally`` runs, so hidden temporaries, a
half-written scores line's file handle and the stages' child processes were left to a rerun to clear.
Raised as ``Terminated``, a KeyboardInterrupt, it takes Ctrl-C's tested path instead; the training loops
(`align`, `critic train`) first checkpoint the update they are at (``stop_at_update_end``)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (see the module's docstring); its argument, if any, says where the work stopped
    ("after update 7 of 20, checkpointed")."""


def _raise_terminated(signum: int, frame: object) -> None:
    # Once: the same request often comes twice, to the process group (Slurm, `timeout`) and again from a
    # parent passing it on (torchrun's agent, `videolift run`), and a second Terminated would cut the
    # cleanup short. Ctrl-C, or the scheduler's SIGKILL after its grace period, still stops it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` in the main thread; the default comes back after, unless
    it was raised (then SIGTERM stays ignored). Leaves a handler someone else installed (a caller's, a
    server's) alone, and does nothing off the main thread (where Python cannot install handlers)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except Terminated:
        # Left ignored: the process is ending, and a SIGTERM passed on again now would end it -15 after its
        # cleanup and message (a caller that goes on restores the handler it wants).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise
    except BaseException:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class StopRequest:
    """Whether SIGTERM asked a training loop to stop at its next update's end (``stop_at_update_end``)."""

    def __init__(self) -> None:
        self.asked = False

    def due(self, accelerator: Any) -> bool:
        """Whether any process was asked. Collective with several processes (every rank, every update):
        a scheduler's signal reaches the ranks at different moments, and all must checkpoint the same
        update together."""
        if accelerator.num_processes == 1:
            return self.asked
        import torch

        flag = torch.tensor([1.0 if self.asked else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


@contextlib.contextmanager
def stop_at_update_end() -> Iterator[StopRequest]:
    """Inside a training loop under ``sigterm_as_interrupt``: SIGTERM only asks (``due``), so the loop
    checkpoints the update it is at and raises ``Terminated`` (a preempted job then loses no update); more
    SIGTERMs ask again (see ``_raise_terminated``). Elsewhere (a library caller's own handler, or none) it
    is never asked."""
    request = StopRequest()
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not _raise_terminated
    ):
        yield request
        return

    def ask(signum: int, frame: object) -> None:
        request.asked = True

    signal.signal(signal.SIGTERM, ask)
    try:
        yield request
    except BaseException:  # asked: the run is stopping, and later SIGTERMs are the same request
        signal.signal(signal.SIGTERM, signal.SIG_IGN if request.asked else _raise_terminated)
        raise
    signal.signal(signal.SIGTERM, _raise_terminated)
    if request.asked:  # after the loop's last look: stop before the export, as at any time after the loop
        _raise_terminated(signal.SIGTERM, None)
