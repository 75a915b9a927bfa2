"""rich Consoles that print names, paths and prompts as they are.

rich reads ``[...]`` in a printed string as markup: a workdir ``runs/[v2]`` was printed ``runs//``, a model
named ``t2v[b]`` as ``t2v``, and a path holding ``[/x]`` raised rich's MarkupError (a traceback, after the
command's work was done). These consoles have markup off, also in table cells and titles; a fixed part that
is styled is a ``Text`` (``styled``), never markup around a user's value.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text


def plain_console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """A Console that prints strings as they are (markup off); ``kwargs`` as Console's."""
    return Console(stderr=stderr, markup=False, **kwargs)


def styled(label: str, style: str, text: str = "") -> Text:
    """``label`` in ``style``, then `` text`` as it is, e.g. ``styled("warning:", "yellow", message)``."""
    return Text.assemble((label, style), " " + text if text else "")
