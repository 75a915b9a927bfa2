"""Stopping a command the way a scheduler does: SIGTERM once it has got somewhere."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def sigterm_when(
    proc: subprocess.Popen,
    ready: Callable[[], object],
    *,
    pid: Callable[[], int] | None = None,
    times: int = 1,
    timeout: float = 120,
) -> str:
    """Wait until ``ready()`` (failing if ``proc`` ends first), send SIGTERM to ``pid()`` (default:
        ``proc``, e.g. one of its children), ``times`` times (as a process group's signal passed on again by a
    launcher) and return ``proc``'s stderr (a pipe) once it has exited. ``proc``'s process group is killed if the
        test fails meanwhile (start it with ``start_new_session=True``)."""
    try:
        deadline = time.time() + timeout
        while not ready():
            assert proc.poll() is None, "the command ended before it was ready to stop"
            assert time.time() < deadline, "the command was not ready to stop in time"
            time.sleep(0.02)
        target = proc.pid if pid is None else pid()
        for _ in range(times):
            os.kill(target, signal.SIGTERM)
            time.sleep(0.05)
        return proc.communicate(timeout=timeout)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
