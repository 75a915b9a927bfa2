"""The commands that write a file, or a fixed pair of files, refuse one that exists unless given --overwrite
(status 1, the file named, its bytes untouched), as the directory writers refuse an OUT holding another run;
with --overwrite they replace it, and a write that fails part way leaves the old file, or the old pair, whole
(docs/formats.md)."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_annotate_support import make_project
from videolift.cli import app
from videolift.core.jsonl import write_jsonl
from videolift.core.schema import DIMENSIONS

OLD = b"an earlier output, not to be lost\n"
RATING = {d.value: {"label": "Good", "reason": ""} for d in DIMENSIONS}


def _hra(path: Path) -> Path:
    write_jsonl(path, [{"video": f"v{i}.mp4", "prompt": f"prompt {i}", "ratings": RATING} for i in range(4)])
    return path


def _release(path: Path) -> Path:
    from videolift.data.hra_file import read_hra
    from videolift.data.lift_format import export_lift

    path.write_text(json.dumps(export_lift(read_hra(_hra(path.with_name("src.jsonl"))))))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("annotate"), n=2, r=1)[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "corpus"
    result = CliRunner().invoke(app, ["toy", "corpus", "--n", "2", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    return out


# name: (the command line's arguments but its outputs, given tmp_path and the fixtures;
#        its outputs as (option, file name); the outputs a failed write keeps: all of them)
Case = tuple[Callable[[Path, dict], list[str]], list[tuple[str, str]], list[str]]
CASES: dict[str, Case] = {
    "prompts sample": (lambda t, f: ["prompts", "sample", "--n", "3"], [("--out", "p.jsonl")], ["p.jsonl"]),
    "toy prompts": (
        lambda t, f: ["toy", "prompts", "--split", "train", "--n", "3"],
        [("--out", "p.txt")],
        ["p.txt"],
    ),
    "hra import": (
        lambda t, f: ["hra", "import", str(_release(t / "lift.json"))],
        [("--out", "hra.jsonl")],
        ["hra.jsonl"],
    ),
    "hra export": (
        lambda t, f: ["hra", "export", str(_hra(t / "hra.jsonl"))],
        [("--out", "lift.json")],
        ["lift.json"],
    ),
    # A new train set beside the old test set would share its videos: the pair is replaced together.
    "hra split": (
        lambda t, f: ["hra", "split", str(_hra(t / "hra.jsonl")), "--test-fraction", "0.5", "--out", str(t)],
        [("--out", "train.jsonl"), ("--out", "test.jsonl")],
        ["train.jsonl", "test.jsonl"],
    ),
    "annotate export": (
        lambda t, f: ["annotate", "export", "--project", str(f["project"])],
        [("--out", "hra.jsonl")],
        ["hra.jsonl"],
    ),
    "annotate export-pairs": (
        lambda t, f: ["annotate", "export-pairs", "--project", str(f["project"])],
        [("--out", "pairs.json")],
        ["pairs.json"],
    ),
    "annotate review": (
        lambda t, f: ["annotate", "review", "--project", str(f["project"])],
        [("--out", "review.jsonl")],
        ["review.jsonl"],
    ),
    # No old scores beside new ratings: the pair is replaced together.
    "toy rate": (
        lambda t, f: [
            "toy",
            "rate",
            "--manifest",
            str(f["corpus"] / "manifest.jsonl"),
            "--videos",
            str(f["corpus"]),
            "--oracle",
            "--no-progress",
        ],  # fmt: skip
        [("--out", "hra.jsonl"), ("--scores-out", "scores.jsonl")],
        ["hra.jsonl", "scores.jsonl"],
    ),
}
NEEDS = {"annotate": "project", "toy rate": "corpus"}


def _command(name: str, tmp_path: Path, request) -> tuple[list[str], list[tuple[str, Path]], list[Path]]:
    """The full command line, its outputs (option, path) and the outputs a failed write keeps."""
    build, outputs, kept = CASES[name]
    fixtures = {
        fixture: request.getfixturevalue(fixture)
        for prefix, fixture in NEEDS.items()
        if name.startswith(prefix)
    }
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = build(out_dir, fixtures)
    given = [(option, out_dir / file) for option, file in outputs]
    if name != "hra split":  # its --out is the directory, given above
        args += [a for option, path in given for a in (option, str(path))]
    return args, given, [out_dir / file for file in kept]


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("name", CASES)
def test_an_existing_output_is_refused_and_kept_byte_for_byte(name, tmp_path, request):
    args, outputs, _ = _command(name, tmp_path, request)
    for option, path in outputs:  # any one of a command's outputs is enough to refuse it
        path.write_bytes(OLD)
        before = _files(path.parent)
        code, said = _run(args)
        assert code == 1, said
        assert f"Error: {option} {path} already exists; pass --overwrite to replace it" in " ".join(
            said.split()
        )
        assert _files(path.parent) == before  # untouched, and nothing written beside it
        path.unlink()


@pytest.mark.parametrize("name", CASES)
def test_overwrite_replaces_the_outputs(name, tmp_path, request):
    args, outputs, _ = _command(name, tmp_path, request)
    code, said = _run(args)
    assert code == 0, said
    first = {path: path.read_bytes() for _, path in outputs}
    for _, path in outputs:
        path.write_bytes(OLD)
    code, said = _run([*args, "--overwrite"])
    assert code == 0, said
    assert {path: path.read_bytes() for _, path in outputs} == first  # the same outputs as a first run
    assert not [p for p in outputs[0][1].parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("name", CASES)
def test_a_write_that_fails_leaves_the_old_output(name, tmp_path, request, monkeypatch):
    import os

    args, outputs, kept = _command(name, tmp_path, request)
    for _, path in outputs:
        path.write_bytes(OLD)

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the data written, not yet in place
    code, said = _run([*args, "--overwrite"])
    assert code == 1 and "No space left on device" in said, said
    for path in kept:
        assert path.read_bytes() == OLD
    for _, path in outputs:  # the old file or none, never a new one or half of one
        assert not path.exists() or path.read_bytes() == OLD
    assert not [p for p in outputs[0][1].parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if len(case[1]) > 1])
def test_a_pair_whose_last_file_fails_is_kept_whole(name, tmp_path, request, monkeypatch):
    """The first file written, the second fails: --overwrite had deleted the old pair first (hra split), or
    the old scores (toy rate), so the user kept neither the old outputs nor the new ones."""
    import os

    args, outputs, _ = _command(name, tmp_path, request)
    for n, (_, path) in enumerate(outputs):
        path.write_bytes(OLD + bytes([n]))
    before = _files(outputs[0][1].parent)
    synced = []
    real_fsync = os.fsync

    def last_fails(fd: int) -> None:
        synced.append(fd)
        if len(synced) == len(outputs):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", last_fails)
    code, said = _run([*args, "--overwrite"])
    assert code == 1 and "No space left on device" in said, said
    assert len(synced) == len(outputs)  # every file written, the last one failing
    assert _files(outputs[0][1].parent) == before  # byte for byte, and no temporary left beside them


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["hra", "export", "{out}", "--out", "{out}"], "--out {out} is also the HRA file"),
        (
            ["prompts", "sample", "--n", "3", "--exclude", "{out}", "--out", "{out}"],
            "--out {out} is also --exclude",
        ),
    ],
    ids=["hra export", "prompts sample"],
)
def test_an_output_that_is_an_input_is_refused_with_overwrite_too(tmp_path, args, said):
    out = _hra(tmp_path / "hra.jsonl")
    before = out.read_bytes()
    code, printed = _run([a.format(out=out) for a in [*args, "--overwrite"]])
    assert code == 2 and said.format(out=out) in " ".join(printed.split()), printed
    assert out.read_bytes() == before


def test_an_existing_output_is_refused_after_the_command_lines_own_mistakes(tmp_path, corpus):
    """Status 2 (the command line alone is wrong) before 1 (what it meets, an existing --out)."""
    out, scores = tmp_path / "hra.jsonl", tmp_path / "scores.jsonl"
    src = _release(tmp_path / "lift.json")
    manifest = ["--manifest", str(corpus / "manifest.jsonl"), "--videos", str(corpus)]
    for path in (out, scores):
        path.write_bytes(OLD)
    rate = ["toy", "rate", *manifest, "--out", str(out)]
    imported = ["hra", "import", str(src), "--out", str(out)]
    for right, wrong, said in [  # the same command, right and with a mistake of its own
        (imported, [*imported, "--video-prefix", "../up"], "--video-prefix '../up'"),
        (
            [*rate, "--oracle", "--scores-out", str(scores)],
            [*rate, "--scores-out", str(scores)],
            "needs --oracle",
        ),
        ([*rate, "--oracle"], [*rate, "--oracle", "--shape-doubt", "0.5"], "--shape-doubt 0.5: must be"),
    ]:
        code, printed = _run(right)
        assert code == 1 and "already exists; pass --overwrite" in " ".join(printed.split()), printed
        code, printed = _run(wrong)
        assert code == 2 and said in " ".join(printed.split()), printed
        assert out.read_bytes() == scores.read_bytes() == OLD
