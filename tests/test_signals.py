"""SIGTERM as Ctrl-C, and as a request a training loop meets at an update's end (core.signals)."""

import os
import signal
import time

import pytest

from videolift.core.signals import Terminated, sigterm_as_interrupt, stop_at_update_end


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)  # a handler that raises does so here


@pytest.fixture(autouse=True)
def default_sigterm():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    yield
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (left ignored after a Terminated, as the CLI wants)


def test_in_a_training_loop_sigterm_asks_each_time_and_a_request_left_at_its_end_stops_it():
    """Twice (a process group's signal passed on again by a launcher): a second one raised at once, and
    the update under way was never checkpointed. One that comes after the loop's last look still stops."""
    steps = []
    with pytest.raises(Terminated), sigterm_as_interrupt(), stop_at_update_end() as stop:
        for step in range(3):
            steps.append(step)
            if step == 1:
                _sigterm_self()
                _sigterm_self()  # not raised: the same request
            assert stop.asked == (step >= 1)
    assert steps == [0, 1, 2]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # to the process's end


def test_without_the_commands_handler_a_loop_is_never_asked_and_outside_a_loop_sigterm_raises():
    # A library caller's own handler stays theirs: the loop leaves it in place.
    mine = []
    signal.signal(signal.SIGTERM, lambda *_: mine.append(1))
    with stop_at_update_end() as stop:
        _sigterm_self()
    assert mine == [1] and not stop.asked
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with pytest.raises(Terminated), sigterm_as_interrupt():
        with stop_at_update_end():
            pass
        _sigterm_self()  # after the loop (loading, exporting): at once
