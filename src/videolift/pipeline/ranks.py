"""The processes of a multi-process ``videolift run`` (``torchrun`` / ``accelerate launch``).

The main process alone decides which stages run (from the run manifest, which only it reads and writes),
clears unfinished attempts and runs the stages that are not multi-process (rating, split, the toy world's
real clips, the summary and report); the other processes follow its decisions, which it broadcasts.
Every process runs the multi-process stages (generation, critic training and scoring, alignment,
evaluation), and all wait for each other after every stage, so none reads a file before it is complete.
Without a launcher there is one process and no collective at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from videolift.core.distributed import launched_processes
from videolift.core.errors import VideoliftError

T = TypeVar("T")
_alone = False  # within ``alone()``


def world() -> int:
    """The launcher's process count (torchrun and accelerate launch set WORLD_SIZE); 1 within ``alone()``."""
    return 1 if _alone else launched_processes()


@contextmanager
def alone() -> Iterator[None]:
    """This process as if launched on its own, without collectives: ``--plan`` on the main process, which
    the others do not follow (they have returned: a collective would wait for them for good)."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def is_main() -> bool:
    """Whether this is the main process (RANK 0, or no launcher)."""
    return int(os.environ.get("RANK", "0")) == 0


def start() -> None:
    """Join the launch's process group (accelerate's state, CPU-only without a GPU)."""
    if world() > 1:
        from videolift.core.distributed import process_state

        process_state()


def wait() -> None:
    """Every process here before any goes on. The main process may be alone in a stage for long (rating,
    a report): wait as long as a sharded job would, whatever the last stage's trainer set."""
    if world() == 1:
        return
    from videolift.core.distributed import SHARDED_JOB_TIMEOUT, process_state, use_timeout

    use_timeout(SHARDED_JOB_TIMEOUT)
    process_state().wait_for_everyone()


def finish() -> None:
    """Every process here, then the process group left (NCCL warns at exit about one left open)."""
    if world() > 1:
        from videolift.core.distributed import end_process_group

        wait()
        end_process_group()


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` run by the main process alone, its value given to every process; the others wait.
    When it fails every process stops: the main with its error, the others saying so."""
    if world() == 1:
        return compute()
    from accelerate.utils import broadcast_object_list

    from videolift.core.distributed import SHARDED_JOB_TIMEOUT, use_timeout

    use_timeout(SHARDED_JOB_TIMEOUT)
    answer: list[Any] = [None]
    if is_main():
        try:
            answer = [("ok", compute())]
        except Exception as exc:  # (not Ctrl-C: the launcher ends every process then)
            broadcast_object_list([("failed", f"{type(exc).__name__}: {exc}")])
            raise
    kind, value = broadcast_object_list(answer)[0]
    if kind == "failed":
        raise VideoliftError(f"the main process stopped ({value}); see its output")
    return value
