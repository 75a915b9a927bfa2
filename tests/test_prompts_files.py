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
        ("number.jsonl", '{"prompt": 3}\n', "field 'prompt': prompt must be a string, got int"),
        ("array.jsonl", "[1, 2]\n", "array.jsonl, line 1: expected a JSON object"),
        ("nocol.csv", "text\na dog\n", "nocol.csv, line 1: no 'prompt' column (header has: text)"),
        ("cell.csv", "prompt,id\na dog,1\n,2\n", "cell.csv, line 3, field 'prompt': empty prompt"),
        ("wide.csv", "prompt\na dog,extra\n", "wide.csv, line 2: 2 cells but the header has 1"),
        ("p.yaml", "- a dog\n", "unsupported prompt file type '.yaml'"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_prompts(path)
    assert expected in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.txt: prompt file not found"):
        read_prompts(tmp_path / "nope.txt")
