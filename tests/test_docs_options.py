"""The docs name only commands and options the command line has.

Read from README.md and docs/*.md (docs/results/*.md are lab notebooks, options as they were on the day):

- code blocks: every `videolift ...` command (also `-m videolift.cli ...`, `$(which videolift) ...`),
  ``\\`` continuations joined, `&&` / `;` / `|` ending it, its `# comment` read as prose;
- inline code: `` `videolift critic eval --json` `` and, without `videolift`, spans that start with a
  command (`` `critic train --resume` ``) or, on a page or section about a command group, with one of
  its subcommands (`` `add-annotator NAME --reissue` `` under `videolift annotate`);
- prose that puts option spans right beside command spans: `` `critic train` with `--resume` ``,
  `` `toy rate`'s `--oracle` ``, `` `--dynamic-cfg` of `videolift eval` ``,
  `` `--allow-unplayable` (on `create`, `add-videos` and `create-pairs`) ``;
- headings and tables under a heading that names a command: `## `critic train``, then
  `### `--describe``, or a table whose first column names options.

Each subcommand named must exist, and each option must be one the command accepts, resolved through
the typer app as click resolves it (`--x=V`, `[--a | --b]`, `[--lora|--full]`, `--no-x` only where the
flag has that negation; `-h`, which every command takes for `--help`, is not looked for).
Options the docs never name are fine, except on a page that lists a command's options in a table
(`| option | default | ... |`): that page must name every option of the command somewhere.
The rows of such tables are kept (`Doc.rows`): test_docs_defaults checks the defaults they state.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import typer

from videolift.cli import app

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

ENDS = {"&&", "||", ";", "|", ">", ">>", "2>", "&"}  # end a command (`|` only outside [...])
AFTER = {"&&", "||", ";", "|", "-m", "$(which", "time", "exec", "nohup"}  # what may stand before it
OPTION = re.compile(r"^(--?[A-Za-z][\w-]*)(?:=.*)?$")
SPAN = re.compile(r"(?<![`\\])`([^`]+)`(?!`)")
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")
# Between spans, for prose attribution: command spans in a list, then options (or the other way round).
LIST = re.compile(r"^\s*(?:,|,?\s+and|,?\s+or|/)\s*$")
FORWARD = re.compile(r"^(?:'s)?\s*(?:\s(?:with|takes))?\s*$")  # `critic train` with `--resume`
BACKWARD = re.compile(r"^\s*\(?(?:on|of|in|for)\s+$")  # `--dynamic-cfg` of `videolift eval`


@dataclass(frozen=True)
class Row:
    """A row of a table that lists a command's options (`| option | default | ... |`)."""

    file: str
    line: int
    path: tuple[str, ...]  # the command
    header: tuple[str, ...]  # the table's column names, lower case
    cells: tuple[str, ...]
    opts: tuple[str, ...]  # the options its first cell names

    def cell(self, column: str) -> str | None:
        """The row's cell under ``column`` (None: the table has no such column)."""
        if column not in self.header:
            return None
        i = self.header.index(column)
        return self.cells[i].strip() if i < len(self.cells) else ""


@dataclass(frozen=True)
class Mention:
    """An option (or subcommand) a doc names for a command."""

    file: str
    line: int
    path: tuple[str, ...]  # the command
    word: str  # the option or, with problem "subcommand", the subcommand that is not there
    how: str  # code, inline, prose, heading, table
    problem: str = ""  # "", "option" or "subcommand"

    def __str__(self) -> str:
        command = " ".join(("videolift", *self.path))
        return f"{self.file}:{self.line}: `{command}` has no {self.problem} {self.word} (in {self.how})"


# --- the command line, as click resolves it -------------------------------------------------------


@cache
def _root():
    return typer.main.get_command(app)


def _resolve(path: tuple[str, ...]):
    """The click command and context of a command path, through the groups' own get_command."""
    cmd = _root()
    ctx = cmd.context_class(cmd, info_name="videolift")
    for name in path:
        cmd = cmd.get_command(ctx, name)
        ctx = cmd.context_class(cmd, info_name=name, parent=ctx)
    return cmd, ctx


@cache
def params(path: tuple[str, ...]) -> tuple[tuple[str, frozenset[str], bool], ...]:
    """Each option of a command: its name, every string that names it (aliases, `--no-x`, `--help`),
    and whether a reader would look for it (not hidden, not --help)."""
    cmd, ctx = _resolve(path)
    return tuple(
        (p.opts[0], frozenset((*p.opts, *p.secondary_opts)), not p.hidden and p.name != "help")
        for p in cmd.get_params(ctx)
        if p.param_type_name == "option"
    )


@cache
def options(path: tuple[str, ...]) -> frozenset[str]:
    return frozenset().union(*(names for _, names, _ in params(path)))


@cache
def subcommands(path: tuple[str, ...]) -> frozenset[str] | None:
    """A group's subcommands; None for a command."""
    cmd, ctx = _resolve(path)
    return frozenset(cmd.list_commands(ctx)) if hasattr(cmd, "list_commands") else None


def is_group(path: tuple[str, ...] | None) -> bool:
    return path is not None and subcommands(path) is not None


# --- words ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    text: str
    line: int


def split(text: str, line: int) -> list[Word]:
    """The shell words of a text (`'a b'` one word), each with its line (`line` is the first); text
    a shell would not read (an apostrophe in prose) is split at white space. `a / b` becomes `a/b`."""
    words: list[Word] = []
    for number, part in enumerate(text.split("\n"), line):
        try:
            texts = shlex.split(part)
        except ValueError:
            texts = part.split()
        words.extend(Word(t, number) for t in texts)
    # `validate / stats / split` -> `validate/stats/split` (a lone `/` joins its neighbours)
    joined: list[Word] = []
    i = 0
    while i < len(words):
        w = words[i]
        while i + 2 < len(words) and words[i + 1].text == "/":
            w = Word(f"{w.text}/{words[i + 2].text}", w.line)
            i += 2
        joined.append(w)
        i += 1
    return joined


def option_words(text: str) -> list[str]:
    """The options one word names: `--opt`, `[--opt`, `--opt=X`, `[--lora|--full]`,
    `--frames/--height/--width`, `--validation-every/-seed` (the second being --validation-seed).
    Empty when the word is no option (`-1`, `--`, `gen/`)."""
    if not text.lstrip("[(").startswith("-"):
        return []
    found: list[str] = []
    for part in re.split(r"[|/]", text.strip("[](),.;:'\"")):
        part = part.strip("[](),.;:")
        if found and part.startswith("-") and not part.startswith("--") and len(part) > 2:
            part = found[-1].rsplit("-", 1)[0] + part  # `--validation-every/-seed`
        if (match := OPTION.match(part)) is not None:
            found.append(match.group(1))
    return found


def starts(words: list[Word]) -> list[int]:
    """Where a videolift command line starts (the index after the program): `videolift` as a
    command's first word (after `&&`, `NAME=value`, `release:` ...), `-m videolift.cli`,
    `$(which videolift)`, `.venv/bin/videolift`."""
    found = []
    for i, word in enumerate(words):
        before = words[i - 1].text if i else ""
        launched = before == "-m" and word.text in ("videolift.cli", "videolift")
        first = not before or before in AFTER or ENV.match(before) or before.endswith(":")
        program = word.text == "videolift" or word.text.endswith("/videolift")
        if launched or word.text == "videolift)" or program and first:
            found.append(i + 1)
    return found


# --- one doc --------------------------------------------------------------------------------------


@dataclass
class Run:
    """Inline spans of one kind in a list: commands ("cmd"), options ("opt") or anything else."""

    kind: str
    start: int
    end: int
    paths: list[tuple[str, ...]] = field(default_factory=list)
    opts: list[tuple[int, str]] = field(default_factory=list)  # (line, option)


@dataclass
class Doc:
    file: str
    mentions: list[Mention] = field(default_factory=list)
    tables: dict[tuple[str, ...], int] = field(default_factory=dict)  # command -> first options table
    sections: list[tuple[int, tuple[str, ...] | None]] = field(default_factory=list)
    last: tuple[str, ...] | None = None  # the last command named in this section
    named: set[str] = field(default_factory=set)  # every option written on the page, whoever's
    rows: list[Row] = field(default_factory=list)  # the rows of its options tables

    @property
    def section(self) -> tuple[str, ...] | None:
        return self.sections[-1][1] if self.sections else None

    def option(self, line: int, path: tuple[str, ...], opt: str, how: str) -> None:
        ok = opt in options(path)
        self.mentions.append(Mention(self.file, line, path, opt, how, "" if ok else "option"))

    def command(self, words: list[Word], how: str, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        """Check a command's words (after the program, or after ``path``): its subcommands, then its
        options. Returns the commands it resolves to (several for `hra import/export`)."""
        paths, depth = [path], 0
        for word in words:
            text = word.text
            if depth == 0 and text in ENDS or text.startswith("#"):
                break
            depth += text.count("[") - text.count("]")
            if opts := option_words(text):
                for p in paths:
                    for opt in opts:
                        self.option(word.line, p, opt, how)
            elif is_group(paths[0]):
                if text in ("...", "…"):
                    break
                names = [n for n in text.strip("`,;:()").split("/") if n]
                subs = subcommands(paths[0])
                missing = [n for n in names if n not in subs]
                for name in missing:
                    self.mentions.append(Mention(self.file, word.line, paths[0], name, how, "subcommand"))
                if missing:
                    return []
                paths = [(*paths[0], n) for n in names]
        if paths != [()]:
            self.last = paths[-1]
        return paths if paths != [()] else []

    def span(self, words: list[Word], how: str) -> list[tuple[str, ...]]:
        """The words of an inline code span; the commands it names (empty: it names none)."""
        if found := starts(words):
            return [p for start in found for p in self.command(words[start:], how)]
        if not words:
            return []
        first = words[0].text
        if first in subcommands(()):  # `critic train --resume`
            return self.command(words, how)
        section = self.section
        if is_group(section) and first.split("/")[0] in subcommands(section):  # `add-videos` in annotate
            return self.command(words, how, section)
        return []

    def prose(self, text: str, first: int, how: str = "inline") -> None:
        """A paragraph: its spans, and the options written beside commands (each a run of spans
        in a list: `create`, `add-videos` and `create-pairs`)."""
        runs: list[Run] = []
        for m in SPAN.finditer(text):
            line = first + text.count("\n", 0, m.start())
            words = split(m.group(1), line)
            self.named.update(o for w in words for o in option_words(w.text))
            if words and (opts := option_words(words[0].text)):
                run = Run("opt", m.start(), m.end(), opts=[(line, o) for o in opts])
            elif paths := [p for p in self.span(words, how) if not is_group(p)]:
                run = Run("cmd", m.start(), m.end(), paths=paths)
            else:
                run = Run("other", m.start(), m.end())
            last = runs[-1] if runs else None
            if last and last.kind == run.kind != "other" and LIST.match(text[last.end : run.start]):
                last.end = run.end
                last.paths += run.paths
                last.opts += run.opts
            else:
                runs.append(run)
        for before, after in zip(runs, runs[1:], strict=False):
            gap = text[before.end : after.start]
            if before.kind == "cmd" and after.kind == "opt" and FORWARD.match(gap):
                commands, opts = before.paths, after.opts  # `critic train` with `--resume`
            elif before.kind == "opt" and after.kind == "cmd" and BACKWARD.match(gap):
                commands, opts = after.paths, before.opts  # `--dynamic-cfg` of `videolift eval`
            else:
                continue
            for path in commands:
                for line, opt in opts:
                    self.option(line, path, opt, "prose")

    def heading(self, level: int, title: str, line: int) -> None:
        while self.sections and self.sections[-1][0] >= level:
            self.sections.pop()
        parent = self.section
        scratch = Doc(self.file, sections=list(self.sections))  # the prose pass records the spans
        named: tuple[str, ...] | None | bool = False  # False: none, the parent's holds
        for m in SPAN.finditer(title):
            words = split(m.group(1), line)
            if words and option_words(words[0].text):
                if parent and not is_group(parent):  # `### `--describe`` under `## `critic train``
                    for opt in option_words(words[0].text):
                        self.option(line, parent, opt, "heading")
            elif paths := scratch.span(words, "heading"):
                named = paths[0] if named is False else named
            elif named is False and re.search(r"[/.]", m.group(1)):
                named = None  # a script or module: what follows is not about a videolift command
        self.sections.append((level, parent if named is False else named))
        self.last = None

    def table(self, rows: list[tuple[int, str]]) -> None:
        header = [c.strip() for c in rows[0][1].strip().strip("|").split("|")]
        listing = header[0].lower() == "option"
        path = self.section if self.section and not is_group(self.section) else None
        if listing and path is None and self.last and not is_group(self.last):
            path = self.last  # `create` named just before the table, on the `annotate` page
        if path is None:
            return
        if listing:
            self.tables.setdefault(path, rows[0][0])
        for line, row in rows:
            cells = row.strip().strip("|").split("|")
            opts = []
            for m in SPAN.finditer(cells[0]):
                words = split(m.group(1), line)
                for opt in option_words(words[0].text) if words else []:
                    self.option(line, path, opt, "table")
                    opts.append(opt)
            if listing and line != rows[0][0] and opts:
                columns = tuple(h.lower() for h in header)
                self.rows.append(Row(self.file, line, path, columns, tuple(cells), tuple(opts)))

    def code(self, block: list[tuple[int, str]]) -> None:
        """A code block: every command in it, `\\` continuations joined; comments read as prose."""
        pending: list[Word] = []
        for line, raw in block:
            text, comment = raw.rstrip(), ""
            if (m := re.search(r"(?:^|\s)#", text)) is not None:
                text, comment = text[: m.start()], text[m.end() :]
            pending.extend(split(text.rstrip("\\"), line))
            self.named.update(o for w in split(raw, line) for o in option_words(w.text))
            if comment:
                self.prose(comment, line, "code comment")
                words = split(SPAN.sub(" ", comment), line)
                for start in starts(words):
                    self.command(words[start:], "code comment")
            if text.endswith("\\") and not comment:
                continue
            for start in starts(pending):
                self.command(pending[start:], "code")
            pending = []


def read(text: str, file: str) -> Doc:
    doc = Doc(file)
    lines = text.splitlines()
    i = 0
    paragraph: list[tuple[int, str]] = []

    def flush() -> None:
        if paragraph:
            doc.prose("\n".join(t for _, t in paragraph), paragraph[0][0])
            paragraph.clear()

    while i < len(lines):
        raw, number = lines[i], i + 1
        stripped = raw.strip()
        if stripped.startswith(("```", "~~~")):
            flush()
            fence, block = stripped[:3], []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                block.append((i + 1, lines[i]))
                i += 1
            doc.code(block)
        elif (heading := re.match(r"(#{1,6})\s+(.*)$", raw)) is not None:
            flush()
            doc.heading(len(heading.group(1)), heading.group(2), number)
            doc.prose(heading.group(2), number)
        elif stripped.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append((i + 1, lines[i]))
                i += 1
            doc.table(rows)
            for line, row in rows:
                doc.prose(row, line)
            continue
        elif not stripped:
            flush()
        elif raw.startswith("    ") and not paragraph:  # an indented code block
            doc.code([(number, raw)])
        else:
            paragraph.append((number, raw))
        i += 1
    flush()
    return doc


@cache
def all_docs() -> tuple[Doc, ...]:
    return tuple(read(path.read_text(encoding="utf-8"), str(path.relative_to(REPO))) for path in DOCS)


# --- the tests ------------------------------------------------------------------------------------


def test_every_option_the_docs_name_is_one_the_command_has():
    mentions = [m for doc in all_docs() for m in doc.mentions]
    # The parser still reads the docs (436 option mentions in 8 files when this test was written).
    assert len(mentions) > 300 and len({m.file for m in mentions}) == len(DOCS)
    wrong = [str(m) for m in mentions if m.problem]
    assert not wrong, "the docs name what the command line does not have:\n" + "\n".join(wrong)


def test_a_page_that_tables_a_commands_options_names_all_of_them():
    tables = [(doc, path, line) for doc in all_docs() for path, line in doc.tables.items()]
    assert len(tables) >= 3  # align, annotate create, generate, prompts sample when written
    missing = []
    for doc, path, line in tables:
        for name, names, shown in params(path):
            if shown and not names & doc.named:
                missing.append(f"{doc.file}:{line}: `videolift {' '.join(path)}`: {name} is not named")
    assert not missing, "options missing from a page that lists the command's options:\n" + "\n".join(missing)


def problems(text: str) -> list[str]:
    return [str(m) for m in read(text, "x.md").mentions if m.problem]


@pytest.mark.parametrize(
    ("text", "wrong"),
    [
        # continuations, brackets and choices, --opt=X, --no-x, aliases, comments, `&&`
        (
            "```bash\nvideolift align --model M \\\n  [--lora|--full] [--resume | --overwrite] --lr=1e-5 \\\n"
            "  --no-progress --save-every 5 | tee log  # `critic train` with `--resume`\n```",
            [],
        ),
        ("```\nvideolift critic export --run D && videolift hra stats F --json\n```", []),
        (
            "```\nvideolift critic export --run D \\\n  --out C --stpe N\n```",
            ["x.md:3: `videolift critic export` has no option --stpe"],
        ),
        ("```\nvideolift generate --no-overwrite -h\n```", ["--no-overwrite", "-h"]),
        (
            "```\naccelerate launch --num_processes 8 -m videolift.cli critic scor --x\n```",
            ["subcommand scor"],
        ),
        (
            "```\nACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 $(which videolift) align --frame 9\n```",
            ["--frame"],
        ),
        ("```\n# or the release: videolift hra import F --fromat lift\n```", ["--fromat"]),
        # inline spans, with `videolift` or without, and beside commands
        ("See `videolift critic eval --critic C [--jsn]` and\n`critic train --resum`.", ["--jsn", "--resum"]),
        ("`videolift hra validate / stats / split`, `hra import/export --format lift`", []),
        ("`hra validate / stat`", ["subcommand stat"]),
        (
            "`align` and `critic train` with `--resume` or `--epochs`",
            ["`videolift align` has no option --epochs"],
        ),
        (
            "`--dynamic-cfg` of `videolift eval`; `--allow-unplayable` (on `annotate create`, `toy rate`)",
            ["`videolift toy rate` has no option --allow-unplayable"],
        ),
        ("`--validation-every/-sed` of `align`", ["--validation-sed"]),
        ("`eval.json`, `run`'s `--plan`; `--foo` alone, `prompts` field", []),
        # sections: headings and tables
        (
            "# `videolift annotate`\n\n`add-annotator NAME --reisue` and `create`.\n\n| option | x |\n|---|---|\n| `--dbb` | y |",
            [
                "x.md:3: `videolift annotate add-annotator` has no option --reisue",
                "x.md:7: `videolift annotate create` has no option --dbb",
            ],
        ),
        (
            "## `critic train`\n\n### `--descibe`\n\n## Throughput (`benchmarks/x.py`)\n\n| `--no-such` | y |",
            ["--descibe"],
        ),
    ],
)
def test_the_parser_reads_what_the_docs_write(text, wrong):
    found = problems(text)
    assert len(found) == len(wrong), found
    for said, expected in zip(found, wrong, strict=True):
        assert expected in said
