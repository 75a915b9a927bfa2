"""``--no-progress`` means no bars at all, the libraries' own loading bars included."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def library_bars(enabled: bool) -> Iterator[None]:
    """Within the block, diffusers' and transformers' progress bars ("Loading pipeline components",
    "Loading weights") are on only if ``enabled``; their previous state is restored afterwards."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    modules = (diffusers_logging, transformers_logging)
    before = [m.is_progress_bar_enabled() for m in modules]
    try:
        for m in modules:
            m.enable_progress_bar() if enabled else m.disable_progress_bar()
        yield
    finally:
        for m, was in zip(modules, before, strict=True):
            m.enable_progress_bar() if was else m.disable_progress_bar()
