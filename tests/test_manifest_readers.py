"""One videos manifest, three readers (`critic score`, `annotate create`, `toy rate`): a manifest is taken
or refused alike by all three, with the same error (docs/formats.md, videos manifest)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from videolift.core.errors import DataError

PROMPT = "a red circle moves left in a sand desert"  # in the toy grammar: toy rate's own check passes


def _readers(tmp_path: Path) -> dict[str, Callable[[Path], Any]]:
    from videolift.critic.score import read_manifest as critic_reader
    from videolift.data.annotate.videos import read_manifest as annotate_reader
    from videolift.toy.rate import _read_manifest as toy_reader

    root = (tmp_path / "videos").resolve()
    root.mkdir()
    for name in ("a.mp4", "b.mp4"):  # annotate's own check: the files exist (decoded only when stored)
        (root / name).write_bytes(b"")
    return {
        "critic score": critic_reader,
        "annotate create": lambda path: annotate_reader(path, root),
        "toy rate": toy_reader,
    }


def _outcomes(tmp_path: Path, rows: list[Any]) -> dict[str, str]:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outcomes = {}
    for name, read in _readers(tmp_path).items():
        try:
            outcomes[name] = f"{len(read(manifest))} records"
        except DataError as exc:
            outcomes[name] = str(exc).replace(str(manifest), "M")
    return outcomes


def _row(video: str = "a.mp4", **fields: Any) -> dict[str, Any]:
    return {"video": video, "prompt": PROMPT, **fields}


@pytest.mark.parametrize(
    ("rows", "outcome"),
    [
        # an integer id is an id (generate writes strings; a hand-made manifest may number its videos)
        ([_row(video_id=7), _row("b.mp4", video_id="7b")], "2 records"),
        # the id 0 is an id too, not a missing one that the path "a.mp4" would stand in for
        ([_row(video_id=0), _row("b.mp4", video_id="a.mp4")], "2 records"),
        ([_row(video_id=None), _row("b.mp4")], "2 records"),
        (
            [_row(video_id=7), _row("b.mp4", video_id="7")],
            "M, line 2, field 'video_id': '7' already on line 1",
        ),
        (
            [_row(video_id="x"), _row("a.mp4", video_id="y")],
            "M, line 2, field 'video': 'a.mp4' already on line 1",
        ),
        ([_row(), _row("b.mp4", video_id="a.mp4")], "M, line 2, field 'video_id': 'a.mp4' already on line 1"),
        # one file written two ways would be scored (and rated) twice
        ([_row(), _row(".//a.mp4", video_id="y")], "M, line 2, field 'video': 'a.mp4' already on line 1"),
        ([_row(video_id="  ")], "M, line 1, field 'video_id': '  ': not a video id (a string or an integer)"),
        ([_row(video_id=""), _row("b.mp4")], "2 records"),  # "": the path stands in, as in an HRA record
        ([_row(video_id=True)], "M, line 1, field 'video_id': True: not a video id (a string or an integer)"),
        ([_row(video_id=1.5)], "M, line 1, field 'video_id': 1.5: not a video id (a string or an integer)"),
        (
            [_row(video_id=["a"])],
            "M, line 1, field 'video_id': ['a']: not a video id (a string or an integer)",
        ),
        ([_row(prompt=" ")], "M, line 1, field 'prompt': missing or empty"),
        # a lone surrogate (JSON's "\ud800"): no UTF-8 file can hold it, so every later write failed
        (
            [_row(prompt="a \ud800")],
            "M, line 1, field 'prompt': not valid Unicode text (it holds a lone surrogate)",
        ),
        (
            [_row("a\ud800.mp4")],
            "M, line 1, field 'video': not valid Unicode text (it holds a lone surrogate)",
        ),
        (
            [_row(video_id="x\ud800")],
            "M, line 1, field 'video_id': not valid Unicode text (it holds a lone surrogate)",
        ),
        ([{"prompt": PROMPT}], "M, line 1, field 'video': missing or empty"),
        # given, but not a string: not "missing"
        ([_row(video=3)], "M, line 1, field 'video': expected a string, got a number"),
        ([_row(prompt=["a", "b"])], "M, line 1, field 'prompt': expected a string, got an array"),
        ([_row(video=None)], "M, line 1, field 'video': missing or empty"),
        ([], "M: the manifest has no records"),
        # a path no file can have: annotate create stopped on it with a ValueError traceback
        (
            [_row("a\x00.mp4")],
            "M, line 1, field 'video': the path holds a NUL byte, which no file name can",
        ),
    ],
)
def test_every_reader_takes_or_refuses_a_manifest_alike(tmp_path, rows, outcome):
    assert _outcomes(tmp_path, rows) == dict.fromkeys(
        ("critic score", "annotate create", "toy rate"), outcome
    )


def test_critic_score_matches_a_line_to_its_video_by_the_id_as_a_string():
    from videolift.critic.score import video_key

    # 0 used to count as no id (the path stood in): a scores line of id 0 matched the record of "a.mp4".
    assert [video_key(_row(video_id=v)) for v in (0, 7, "7", None, "")] == ["0", "7", "7", "a.mp4", "a.mp4"]


def test_critic_score_reads_its_manifest_before_it_loads_the_critic(tmp_path, monkeypatch):
    """A bad manifest is said at once, not after minutes of loading a 7B critic (here: none loads)."""
    from typer.testing import CliRunner

    from videolift.cli import app
    from videolift.critic import answers

    def no_loading(*args, **kwargs):
        raise AssertionError("the critic was loaded before the manifest was read")

    monkeypatch.setattr(answers, "load_critic", no_loading)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(_row()) + "\nnull\n")
    out = tmp_path / "scores.jsonl"
    result = CliRunner().invoke(
        app,
        ["critic", "score", "--critic", str(tmp_path / "critic"), "--manifest", str(manifest)]
        + ["--videos", str(tmp_path), "--out", str(out)],
    )
    assert result.exit_code == 1, result.output
    assert f"{manifest}, line 2: expected a JSON object, got null" in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]  # nothing written
