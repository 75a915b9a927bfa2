"""SIGTERM handled as Ctrl-C is. A scheduler's stop (Slurm's preemption, `kill`, `timeout`, a container's
stop) sends SIGTERM, whose default ends Python at once: no ``finally`` runs, so hidden temporaries, a
half-written scores line's file handle and the stages' child processes were left to a rerun to clear.
Raised as ``Terminated``, a KeyboardInterrupt, it takes Ctrl-C's tested path instead."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (see the module's docstring)."""


def _raise_terminated(signum: int, frame: object) -> None:
    # A second SIGTERM (cleanup that hangs, a scheduler's impatience) ends the process the default way.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` in the main thread; the previous handler is restored
    after. Leaves a handler someone else installed (a caller's, a server's) alone, and does nothing off the
    main thread (where Python cannot install handlers)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
