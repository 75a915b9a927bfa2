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
from videolift.core.distributed import launched_processes
from videolift.core.errors import UsageError, VideoliftError
from videolift.core.signals import Terminated, sigterm_as_interrupt

app = typer.Typer(
    name="videolift",
    help="Align text-to-video models with human feedback (LiFT): rate, train a critic, align, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain errors ("Error: file, line 3, field 'x': ...") that stay greppable and copy-pasteable.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every sub-command
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
    "env": "videolift.core.env_cli:env",
}


# The commands that keep what they finished (videos, scores lines, checkpoints, stages, phases) and
# continue there; the others write their output whole or not at all, so a rerun starts over.
RESUMES = {"generate", "critic score", "critic train", "align", "eval", "run", "demo", "toy pretrain"}
INTERRUPTED = "what was finished is kept; run the same command again to continue"
INTERRUPTED_WHOLE = "nothing half-written is kept; run the same command again to start over"
RESUME_FLAG = {"align", "critic train"}  # continue only when asked (--resume); a plain rerun is refused


def interrupted(name: str) -> str:
    """What an interrupted ``name`` kept and how to go on (``run`` and ``demo`` continue without a flag)."""
    if name in RESUME_FLAG:
        return "what was finished is kept; run the same command with --resume to continue"
    return INTERRUPTED if name in RESUMES else INTERRUPTED_WHOLE


# What takes less accelerator memory, by command: said when one runs out of it.
_PIPELINE_MEMORY = (
    "in the pipeline file, the stage's batch sizes (align.settings.batch_size with grad_accum, "
    "critic.batch_size with critic.grad_accum, sampler.batch_size), gradient_checkpointing, vae_tiling, "
    "sampler.offload=model, "
    "critic.dtype bfloat16 or align.settings.finetune lora"
)
MEMORY_HINTS = {
    "align": "--batch-size / --real-batch-size with --grad-accum (the same videos per update), "
    "--gradient-checkpointing (a --resume may switch it on), --lora, --mixed-precision bf16, --vae-tiling, "
    "or DeepSpeed ZeRO-2 / FSDP (configs/accelerate/, docs/align.md)",
    "critic train": "--batch-size with --grad-accum (the same examples per update), --gradient-checkpointing "
    "(a --resume may switch it on), --adapter lora, --dtype bfloat16, or fewer --num-frames / --max-pixels "
    "(a new run: the critic sees other inputs)",
    "critic score": "--batch-size, --dtype bfloat16",
    "critic eval": "--batch-size, --dtype bfloat16",
    "generate": "--batch-size 1, --vae-tiling, --offload model (or sequential)",
    "eval": "--batch-size 1, --vae-tiling, --offload model (or sequential)",
    "run": _PIPELINE_MEMORY,
    "demo": _PIPELINE_MEMORY,
}


# The commands that run under torchrun / accelerate launch (each process its share, the main one alone
# printing and writing what is shared; `env` only reads). Any other would run once per process over the
# same outputs (a corpus rendered N times, N annotation servers on one port, one project created N times).
MULTI_PROCESS = {
    "generate",
    "align",
    "eval",
    "run",
    "demo",
    "env",
    "critic train",
    "critic score",
    "critic eval",
}


def _one_process(name: str) -> None:
    """Refuse a launch of ``name`` on several processes if it runs in one (WORLD_SIZE: torchrun's and
    accelerate launch's process count)."""
    world = launched_processes()
    if world > 1 and name not in MULTI_PROCESS:
        raise UsageError(
            f"`videolift {name}` runs in one process, and {world} were launched (torchrun / accelerate "
            "launch): each would write the same outputs. Run it without the launcher"
        )


def _out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA, XPU), or the RuntimeError of a backend without one (MPS)."""
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _memory_error(exc: BaseException, name: str) -> VideoliftError:
    # torch's message: what it tried to allocate, the device's capacity and what is free, then advice on
    # the allocator that rarely helps here.
    said = " ".join(str(exc).split())
    said = ". ".join(said.split(". ")[:3]).rstrip(".")
    hint = MEMORY_HINTS.get(name, "smaller batches")
    return VideoliftError(
        f"out of memory ({said}). Takes less: {hint}. What was finished is kept: run again to continue; "
        "`align` and `critic train` continue with --resume --gradient-checkpointing, while other batch sizes "
        "or dtypes make a new run (--resume refuses them)"
    )


def _plain_errors(fn, name: str = ""):
    """Report the file-system mistakes no reader anticipated (an output path that is a directory, a
    full disk, a denied permission, ...) as "Error: PATH: reason", like every other user error,
    instead of a traceback; and running out of accelerator memory with what ``name`` (the command) can
    do about it."""

    @functools.wraps(fn)
    def command(*args, **kwargs):
        _one_process(name)
        try:
            with sigterm_as_interrupt():
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
        except KeyboardInterrupt as exc:
            # (`toy corpus`, `toy rate`, `prompts sample`, ... said "what was finished is kept" too)
            said = interrupted(name)
            stopped = isinstance(exc, Terminated)
            how = "Terminated (SIGTERM)" + (f" {exc.args[0]}" if stopped and exc.args else "")
            typer.echo(f"\n{how if stopped else 'Interrupted'}: {said}", err=True)
            raise typer.Exit(143 if stopped else 130) from None  # the shells' 128 + signal
        except Exception as exc:
            if _out_of_memory(exc):
                raise _memory_error(exc, name) from None
            raise

    return command


def _wrap_commands(group: typer.Typer, prefix: str) -> typer.Typer:
    for info in group.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        info.callback = _plain_errors(info.callback, f"{prefix} {name}")
    for sub in group.registered_groups:
        _wrap_commands(sub.typer_instance, f"{prefix} {sub.name}")
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
        app.add_typer(_wrap_commands(_sub, _name), name=_name)
for _name, _target in COMMANDS.items():
    if (_fn := _load(_target)) is not None:
        app.command(_name)(_plain_errors(_fn, _name))


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
