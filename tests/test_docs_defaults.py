"""The defaults the docs' options tables state are the commands' own.

A page's table of a command's options (`| option | default | ... |`, read by test_docs_options' parser)
gives each option's default; it must be the one the command line applies, resolved through the typer app
as click resolves the option: the parameter's default, or, for an option that defaults to None only so
that a settings file can be overridden (`videolift align`: AlignConfig; `critic train`: SFTConfig), the
settings field's default.

Formatting is free (`1e-5` is 0.00001, `3600` is 3600, `off` is False, None or 0, `on` True, a list is
comma-separated, `100 / 2` gives the defaults of a row's two options in order, `--no-x` states the
negation's). A cell that is no single literal ("the model's own", "3 (Wan-AI's for A14B)", "bars on")
describes a default computed at run time, and is not judged; nor is a word that is no value of the
option's kind ("all" for a count that defaults to None): such rows are listed by `judged`, not failed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath
from typing import Any

import pytest

from test_docs_options import Row, _resolve, all_docs, read
from videolift.align.config import AlignConfig
from videolift.core.settings import field_default
from videolift.critic.sft_config import SFTConfig

# Commands whose options default to None so that only those given override a settings model: the
# default that applies is the field's (by the parameter's name, or the name given here).
SETTINGS: dict[tuple[str, ...], tuple[type, dict[str, str]]] = {
    ("align",): (AlignConfig, {"lora": "finetune"}),  # --lora/--full
    ("critic", "train"): (SFTConfig, {}),
}
ON = {"on", "yes", "true"}
OFF = {"off", "no", "false", "none"}


def default_of(path: tuple[str, ...], param: Any) -> Any:
    """The default a command applies for a click parameter."""
    if param.default is None and path in SETTINGS:
        settings, names = SETTINGS[path]
        name = names.get(param.name, param.name)
        if name in settings.__pydantic_fields__:
            return field_default(settings, name)
    return param.default


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("_", ""))
    except ValueError:
        return None


def says(cell: str, default: Any) -> bool | None:
    """Whether a default cell states ``default``; None when it is no literal to judge it by."""
    text = cell.replace("`", "").strip().rstrip(".").strip("\"'")
    if not text or re.search(r"\s", text):
        return None  # empty, or words: a default computed at run time
    word = text.lower()
    if isinstance(default, Enum):
        default = default.value
    if isinstance(default, PurePath):
        default = str(default)
    if isinstance(default, bool):
        return default if word in ON else not default if word in OFF else None
    if default is None:
        if word in OFF:
            return True
        return False if word in ON or _number(word) is not None else None
    if isinstance(default, int | float):
        if (number := _number(word)) is not None:
            return math.isclose(number, default, rel_tol=1e-9)
        return default == 0 if word in OFF else False if word in ON else None
    if isinstance(default, str):
        if word == default.lower() or word in OFF and default.lower() in OFF | {""}:
            return True
        number, expected = _number(word), _number(default)
        return number is not None and expected is not None and math.isclose(number, expected)
    if isinstance(default, list | tuple):
        if not default:
            return word in OFF
        parts = word.split(",")
        return len(parts) == len(default) and all(says(p, d) for p, d in zip(parts, default, strict=True))
    return None


@dataclass(frozen=True)
class Judged:
    row: Row
    option: str  # the option the default is stated for, as the row names it
    cell: str
    default: Any
    verdict: bool | None  # None: not judged

    def __str__(self) -> str:
        command = " ".join(("videolift", *self.row.path))
        if self.verdict is None:
            return (
                f"{self.row.file}:{self.row.line}: `{command}` {self.option}: {self.cell!r} (not a literal)"
            )
        return (
            f"{self.row.file}:{self.row.line}: `{command}` {self.option}: the docs say {self.cell!r}, "
            f"the command's default is {self.default!r}"
        )


def judged(rows: list[Row]) -> list[Judged]:
    """Each option of each row that has a default column, with its verdict."""
    found = []
    for row in rows:
        cell = row.cell("default")
        if cell is None:
            continue
        cmd, ctx = _resolve(row.path)
        named: dict[str, tuple[Any, list[str]]] = {}  # parameter -> (parameter, the options naming it)
        for opt in row.opts:
            for param in cmd.get_params(ctx):
                if opt in (*param.opts, *param.secondary_opts):  # an unknown one: test_docs_options's
                    named.setdefault(param.name, (param, []))[1].append(opt)
        cells = [cell] * len(named)
        if len(named) > 1 and "/" in cell:  # `--checkpoint-every` / `--keep-checkpoints` | 100 / 2
            parts = [p.strip() for p in cell.split("/")]
            cells = parts if len(parts) == len(named) else [""] * len(named)
        for (param, opts), text in zip(named.values(), cells, strict=True):
            default = default_of(row.path, param)
            if isinstance(default, bool) and all(o in param.secondary_opts for o in opts):
                default = not default  # `--no-progress` | off
            verdict = says(text, default) if text else None
            found.append(Judged(row, opts[0], text, default, verdict))
    return found


# --- the tests ------------------------------------------------------------------------------------


def test_the_defaults_the_docs_tables_state_are_the_commands():
    found = judged([row for doc in all_docs() for row in doc.rows])
    # The tables are still read: 52 options in 4 tables (align, annotate create, prompts sample,
    # generate), 38 of them judged, when this test was written.
    assert sum(j.verdict is not None for j in found) >= 30
    print("not judged:", *(str(j) for j in found if j.verdict is None), sep="\n  ")
    wrong = [str(j) for j in found if j.verdict is False]
    assert not wrong, "the docs state defaults the commands do not have:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("cell", "default", "verdict"),
    [
        ("1e-5", 0.00001, True),
        ("`1e-5`", 1e-4, False),
        ("3600", 3600, True),
        ("3,600", 3600, True),
        ("1.0", 1, True),
        ("0", 0.0, True),
        ("off", 0, True),
        ("off", 2, False),
        ("off", False, True),
        ("on", False, False),
        ("on", True, True),
        ("off", None, True),
        ("none", None, True),
        ("50", None, False),
        ("all", None, None),  # a word for a computed default
        ("auto", 3, None),
        ("auto", "auto", True),
        ("none", "none", True),
        ("off", "none", True),
        ("no", "no", True),
        ("full", "lora", False),
        ("to_q,to_k", ["to_q", "to_k"], True),
        ("to_q", ["to_q", "to_k"], False),
        ("none", [], True),
        ("the model's own", None, None),
        ("3 (Wan-AI's for A14B)", None, None),
        ("bars on", True, None),
        ("", 1, None),
    ],
)
def test_a_default_cell_is_read_whatever_its_format(cell, default, verdict):
    assert says(cell, default) is verdict


def test_a_table_row_is_judged_by_the_command_and_its_settings():
    text = (
        "## `videolift align`\n\n| option | default | notes |\n|---|---|---|\n"
        "| `--lr` | 1e-4 | |\n| `--full` / `--lora` | full | |\n"
        "| `--checkpoint-every` / `--keep-checkpoints` | 100 / 3 | |\n| `--no-progress` | off | |\n"
        "| `--frames` | the model's own | |\n| `--config FILE` | | |\n\n"
        "## `videolift generate`\n\n| option | default | meaning |\n|---|---|---|\n"
        "| `--steps` | 50 | |\n| `--lossless` | on | |\n"
    )
    found = {j.option: j.verdict for j in judged(read(text, "x.md").rows)}
    assert found == {
        "--lr": False,
        "--full": True,
        "--checkpoint-every": True,
        "--keep-checkpoints": False,
        "--no-progress": True,
        "--frames": None,
        "--config": None,
        "--steps": True,
        "--lossless": False,
    }
