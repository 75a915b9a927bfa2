"""The ``videolift`` command. Each room registers its own typer app; this file only wires them.

Sub-command modules must keep their top-level imports light (no torch/diffusers/transformers at
import time) so that ``videolift --help`` stays fast: import heavy libraries inside the commands.
"""

from __future__ import annotations

import errno
import functools
import importlib

import typer

from videolift import __version__
from videolift.core.errors import VideoliftError

app = typer.Typer(
    name="videolift",
    help="Align text-to-video models with human feedback (LiFT): rate, train a critic, align, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain errors ("Error: file, line 3, field 'x': ...") that stay greppable and copy-pasteable.
    rich_markup_mode=None,
)

# name -> "module:attribute" of a typer app (a command group) or a plain function (a command).
# A module that does not exist yet is skipped, so rooms can land independently.
GROUPS = {
    "hra": "videolift.data.hra_cli:app",
    "prompts": "videolift.data.prompts_cli:app",
    "annotate": "videolift.data.annotate.cli:app",
    "toy": "videolift.toy.cli:app",
    "critic": "videolift.critic.cli:app",
}
COMMANDS = {
    "generate": "videolift.data.generate_cli:generate",
    "align": "videolift.align.cli:align",
    "eval": "videolift.evaluate.cli:evaluate",
    "run": "videolift.pipeline.cli:run",
    "demo": "videolift.pipeline.demo_cli:demo",
}


# Every long command keeps what it finished (videos, scores lines, checkpoints, stages) and continues there.
INTERRUPTED = (
    "what was finished is kept; run the same command again to continue "
    "(`align` and `critic train` with --resume)"
)


def _plain_errors(fn):
    """Report the file-system mistakes no reader anticipated (an output path that is a directory, a
    full disk, a denied permission, ...) as "Error: PATH: reason", like every other user error,
    instead of a traceback."""

    @functools.wraps(fn)
    def command(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if exc.filename is None:
                # A failed write or fsync names no file (the commands' own writers name theirs).
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise VideoliftError(f"a write failed: {exc.strerror}") from None
                if exc.errno == errno.EIO:
                    raise VideoliftError(
                        f"{exc.strerror}: the disk (or network file system) failed"
                    ) from None
                raise
            where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
            raise VideoliftError(f"{where}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise VideoliftError(f"an input is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except KeyboardInterrupt:
            typer.echo(f"\nInterrupted: {INTERRUPTED}", err=True)
            raise typer.Exit(130) from None

    return command


def _wrap_commands(group: typer.Typer) -> typer.Typer:
    for info in group.registered_commands:
        info.callback = _plain_errors(info.callback)
    for sub in group.registered_groups:
        _wrap_commands(sub.typer_instance)
    return group


def _load(target: str):
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None  # that room has not landed
        raise
    return getattr(module, attr)


for _name, _target in GROUPS.items():
    if (_sub := _load(_target)) is not None:
        app.add_typer(_wrap_commands(_sub), name=_name)
for _name, _target in COMMANDS.items():
    if (_fn := _load(_target)) is not None:
        app.command(_name)(_plain_errors(_fn))


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
