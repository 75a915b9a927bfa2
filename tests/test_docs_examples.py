"""The docs' example records are ones videolift reads: every ```json block of docs/*.md that shows an input
format (or an output that another command reads) goes through the reader that command uses, and what the
example claims of itself (a reward from its labels, a toy video's truth and caption from its defects) is what
the code computes. Examples that only show an output (eval.json, summary.json, export-pairs) are listed as such,
so a new example is either checked here or named as output-only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```json\n(.*?)\n```", re.S)
HEADING = re.compile(r"^#+\s+(.*)$", re.M)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)  # code blocks: a `# comment` there is no heading


def examples() -> dict[tuple[str, str], list[str]]:
    """(page, the heading above the block) -> the json blocks under it."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted((REPO / "docs").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for block in BLOCK.finditer(text):
            headings = HEADING.findall(FENCE.sub("", text[: block.start()]))
            out.setdefault((path.name, headings[-1] if headings else ""), []).append(block.group(1))
    return out


def example(page: str, heading: str) -> object:
    blocks = examples()[(page, heading)]
    assert len(blocks) == 1, (page, heading)
    return json.loads(blocks[0])


def jsonl(tmp_path: Path, name: str, *records: object) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


HRA = [("formats.md", "Canonical HRA file (human rating annotations)"), ("annotate.md", "5. Export")]
SCORES = [("critic.md", "`critic score`"), ("annotate.md", "6. Model-assisted review (an extension)")]
MANIFESTS = [("generate.md", "Output"), ("toy-world.md", "Defects and their truth")]
LIFT = ("formats.md", "The LiFT release layout (`hra import/export --format lift`)")
CHECKED = [
    *HRA,
    *SCORES,
    *MANIFESTS,
    LIFT,
    ("generate.md", "`videolift prompts sample`"),
    ("critic.md", "Using the released LiFT-Critic (`critic import-lift`)"),
    ("evaluate.md", "CLIPSIM and CLIP temporal consistency (`--clip MODEL`)"),
]
OUTPUT_ONLY = [("annotate.md", "7. Pairwise human study"), ("evaluate.md", "`videolift demo`")]


def test_every_json_example_is_checked_here_or_named_output_only():
    assert sorted(examples()) == sorted(CHECKED + OUTPUT_ONLY)


@pytest.mark.parametrize("where", HRA)
def test_hra_examples_read_as_canonical_records(where, tmp_path):
    from videolift.data.hra_file import read_hra

    (record,) = read_hra(jsonl(tmp_path, "hra.jsonl", example(*where)))
    assert len(record.ratings) == 3 and record.annotator


@pytest.mark.parametrize("where", SCORES)
def test_score_lines_read_as_align_reads_them_and_their_reward_is_their_labels(where, tmp_path):
    from videolift.core.reward import RewardConfig
    from videolift.core.scores import read_scores

    line = example(*where)
    (scored,) = read_scores(jsonl(tmp_path, "scores.jsonl", line), from_labels=True)
    paper = RewardConfig.load(None)
    assert scored.reward == line["reward"]
    assert paper.reward(scored.labels) == pytest.approx(line["reward"], abs=5e-4)  # the example rounds
    for rating in line["ratings"].values():
        assert rating["score"] == (None if rating["label"] is None else paper.score(rating["label"]))


@pytest.mark.parametrize("where", MANIFESTS)
def test_manifest_examples_read_as_manifests(where, tmp_path):
    from videolift.core.manifest import read_manifest

    line = example(*where)
    (record,) = read_manifest(jsonl(tmp_path, "manifest.jsonl", line))
    assert (record.video, record.prompt, record.video_id) == (line["video"], line["prompt"], line["video_id"])


def test_the_toy_corpus_example_says_what_its_defects_make():
    from videolift.toy.defects import Defect, shown_spec, truth
    from videolift.toy.describe import describe
    from videolift.toy.grammar import parse_prompt

    line = example("toy-world.md", "Defects and their truth")
    spec, defects = parse_prompt(line["prompt"]), [Defect.from_json(d) for d in line["defects"]]
    assert shown_spec(spec, defects).text == line["shown"]
    assert describe(spec, defects) == line["caption"]
    assert {d.value: label.value for d, label in truth(defects).items()} == line["truth"]
    assert (line["count"], line["action"], line["scene"]) == (len(spec.subjects), spec.action, spec.scene)


def test_the_lift_release_example_imports(tmp_path):
    from videolift.data.lift_format import import_lift

    (record,), _ = import_lift(tmp_path / "LiFT-HRA-data.json", [example(*LIFT)])
    assert record.prompt == "A panda walks on the moon."
    assert [(d.value, r.label.value) for d, r in record.ratings.items()] == [("semantic_consistency", "Bad")]


def test_the_prompt_example_reads_as_a_prompt_file(tmp_path):
    from videolift.data.prompt_files import read_prompts

    line = example("generate.md", "`videolift prompts sample`")
    (prompt,) = read_prompts(jsonl(tmp_path, "prompts.jsonl", line))
    assert prompt.prompt == line["prompt"] and prompt.extra["categories"] == line["categories"]


def test_the_released_critics_output_example_imports(tmp_path):
    from videolift.critic.lift_output import import_lift_output

    entries = example("critic.md", "Using the released LiFT-Critic (`critic import-lift`)")
    output = tmp_path / "critic_output_13b.json"
    output.write_text(json.dumps(entries), encoding="utf-8")
    manifest = jsonl(
        tmp_path, "manifest.jsonl", *({"video": e["video"], "prompt": e["caption"]} for e in entries)
    )
    summary = import_lift_output(output, manifest, tmp_path / "scores.jsonl")
    assert summary["videos"] == 1 and not any(summary["unparsed"].values())


def test_the_clip_example_has_the_keys_eval_writes():
    """eval.json's ``clip`` as docs/evaluate.md shows it: the keys ``clip_summary`` writes, at every level."""
    from videolift.evaluate.clip_score import clip_summary

    shown = example("evaluate.md", "CLIPSIM and CLIP temporal consistency (`--clip MODEL`)")["clip"]
    line = {"prompt": "p", "clipsim": 0.3, "temporal_consistency": 0.9, "prompt_truncated": False}
    made = clip_summary("m", {"base": [line, line], "aligned_rwl": [line, line]}, ["p", "q"], 0)

    def keys(d: object) -> object:
        return {k: keys(v) for k, v in d.items()} if isinstance(d, dict) else None

    assert keys(shown) == keys(made)
