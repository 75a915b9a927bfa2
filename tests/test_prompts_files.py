"""Prompt files: .txt / .jsonl / .csv readers and their located errors."""

from __future__ import annotations

import json

import pytest

from videolift.core.errors import DataError
from videolift.data.prompt_files import read_prompts


def test_txt_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a dog running\n\n  a cat sleeping  \n")
    records = read_prompts(path)
    assert [(r.prompt, r.line, r.extra) for r in records] == [
        ("a dog running", 1, {}),
        ("a cat sleeping", 3, {}),
    ]


def test_txt_lines_starting_with_hash_are_comments(tmp_path):
    # A header note was a prompt before: a video generated for "# held-out prompts, v2".
    path = tmp_path / "p.txt"
    path.write_text("# held-out prompts, v2\n\na dog running\n   #a note, indented\na sign reading #1\n#\n")
    assert [(r.prompt, r.line) for r in read_prompts(path)] == [
        ("a dog running", 3),
        ("a sign reading #1", 5),
    ]
    path.write_text("# only notes\n\n")
    with pytest.raises(DataError, match=r"p\.txt: no prompts in file$"):
        read_prompts(path)
    # .jsonl and .csv have no comments: a prompt starting with '#' is written there
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"prompt": "#1 fan cheering"}) + "\n")
    assert [r.prompt for r in read_prompts(jsonl)] == ["#1 fan cheering"]
    csv = tmp_path / "p.csv"
    csv.write_text("prompt\n#1 fan cheering\n")
    assert [r.prompt for r in read_prompts(csv)] == ["#1 fan cheering"]


def test_a_line_ends_at_a_line_break_only(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a dog\u2028running\r\na cat\x0cjumping\n\nan owl\n", newline="")
    records = read_prompts(path)  # str.splitlines would make five prompts of three, numbered wrongly
    assert [(r.prompt, r.line) for r in records] == [
        ("a dog\u2028running", 1),
        ("a cat\x0cjumping", 2),
        ("an owl", 4),
    ]
    path.write_text("a dog\ra cat\r", newline="")  # old Mac line endings
    assert [r.prompt for r in read_prompts(path)] == ["a dog", "a cat"]
    csv = tmp_path / "p.csv"  # the CSV reader keeps such a prompt too (one line of text)
    csv.write_text('prompt\n"a dog\u2028running"\n')
    assert [r.prompt for r in read_prompts(csv)] == ["a dog\u2028running"]


def test_jsonl_carries_other_fields(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"prompt": "a dog", "categories": {"place": "real"}}, {"prompt": "a cat", "id": 7}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = read_prompts(path)
    assert [r.prompt for r in records] == ["a dog", "a cat"]
    assert records[0].extra == {"categories": {"place": "real"}}
    assert records[1].extra == {"id": 7}


def test_csv_reads_prompt_column_and_other_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('id,prompt,place\n1,"a dog, running",real\n\n2,a cat,imagined\n')
    records = read_prompts(path)
    assert [r.prompt for r in records] == ["a dog, running", "a cat"]
    assert records[1].extra == {"id": "2", "place": "imagined"}
    assert records[1].line == 4


def test_csv_columns_without_a_name_are_left_out_while_empty(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,category,,\na dog,animal,,\na cat,animal\n")  # a spreadsheet's export
    records = read_prompts(path)
    assert [r.prompt for r in records] == ["a dog", "a cat"] and records[0].extra == {"category": "animal"}
    path.write_text("prompt,category,,\na dog,animal,,\na cat,animal,,kept?\n")
    with pytest.raises(DataError, match=r"p\.csv, line 3: column 4 has no name in the header \(line 1\)"):
        read_prompts(path)


def test_custom_prompt_field(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"caption": "a dog"}\n')
    assert read_prompts(path, prompt_field="caption")[0].prompt == "a dog"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.txt", "\n  \n", "empty.txt: no prompts"),
        ("empty.jsonl", "", "empty.jsonl: no prompts"),
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": \n', "bad.jsonl, line 2: malformed JSON"),
        (
            "missing.jsonl",
            '{"prompt": "a"}\n{"text": "b"}\n',
            "missing.jsonl, line 2, field 'prompt': missing prompt",
        ),
        ("blank.jsonl", '{"prompt": "  "}\n', "blank.jsonl, line 1, field 'prompt': empty prompt"),
        ("number.jsonl", '{"prompt": 3}\n', "field 'prompt': prompt must be a string, got a number"),
        ("array.jsonl", "[1, 2]\n", "array.jsonl, line 1: expected a JSON object"),
        ("nocol.csv", "text\na dog\n", "nocol.csv, line 1: no 'prompt' column (header has: text)"),
        ("cell.csv", "prompt,id\na dog,1\n,2\n", "cell.csv, line 3, field 'prompt': empty prompt"),
        ("wide.csv", "prompt\na dog,extra\n", "wide.csv, line 2: 2 cells but the header has 1"),
        ("p.yaml", "- a dog\n", "unsupported prompt file type '.yaml'"),
        (
            "open.csv",
            'prompt,id\na red circle,1\n"two, blue squares,2\na cat,3\n',
            "open.csv, line 3: unterminated quote",
        ),
        (  # an open quote closed by a later one: one prompt over three lines
            "joined.csv",
            'id,prompt,note\n1,a dog\n2,"two, blue squares\n3,a cat\n4,an owl",x\n',
            "joined.csv, line 3, field 'prompt': the quoted prompt runs over 3 lines",
        ),
        ("stray.csv", 'prompt,id\n"a dog"s,1\n', "stray.csv, line 2: malformed CSV"),
        (
            "twice.csv",
            "prompt,id,prompt\na dog,1,a cat\n",
            "twice.csv, line 1: the header names 'prompt' twice",
        ),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_prompts(path)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("empty.txt", "", "empty.txt: no prompts in file (it is empty)"),
        ("blanks.txt", "\n  \n", "blanks.txt: no prompts in file"),  # was "(it is empty)": it is not
        ("header.csv", "prompt,id\n", "header.csv: no prompts in file"),
    ],
)
def test_a_file_without_prompts_is_called_empty_only_if_it_is(tmp_path, name, content, said):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError) as info:
        read_prompts(tmp_path / name)
    assert str(info.value) == f"{tmp_path / name}: {said.split(': ', 1)[1]}"


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.txt: prompt file not found"):
        read_prompts(tmp_path / "nope.txt")
    (tmp_path / "gen").mkdir()  # e.g. generate's output folder given for its manifest
    with pytest.raises(DataError, match="gen: is a directory, expected a prompt file"):
        read_prompts(tmp_path / "gen")


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("latin.txt", ["a dog", "café terrace"]),
        ("latin.jsonl", ['{"prompt": "a dog"}', '{"prompt": "café terrace"}']),
        ("latin.csv", ["prompt", "a dog", "café terrace"]),
    ],
)
def test_non_utf8_file_names_the_line(tmp_path, name, lines):
    path = tmp_path / name
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    with pytest.raises(DataError) as info:
        read_prompts(path)
    assert f"{name}, line {len(lines)}: not UTF-8 text (byte 0xe9 at column" in str(info.value)


def test_csv_quoted_fields_keep_working(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(
        '\ufeffid,prompt,note\r\n1,"a dog, ""running""",x\r\n2,a cat,"two\r\nlines"\r\n3,an owl\r\n'.encode()
    )
    records = read_prompts(path)
    assert [(r.prompt, r.line) for r in records] == [('a dog, "running"', 2), ("a cat", 3), ("an owl", 5)]
    assert records[1].extra["note"] == "two\r\nlines" and records[2].extra == {"id": "3", "note": None}
