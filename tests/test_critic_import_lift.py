"""`critic import-lift`: the released LiFT-Critic's answers (CodeGoat24/LiFT, LiFT-Critic/test/run_critic_13b.py,
whose demo output is demo/critic_output_13b.json) as the scores file `critic score` writes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from videolift.cli import app
from videolift.core.errors import VideoliftError
from videolift.core.files import content_hash
from videolift.core.jsonl import valid_unicode
from videolift.core.reward import RewardConfig
from videolift.core.schema import Dimension
from videolift.core.scores import read_scores

runner = CliRunner()
CRANE = (
    "A majestic crane stands gracefully in a shallow, tranquil wetland, its long legs elegantly positioned in the "
    "calm water."
)
PANDA = "A fluffy panda wears a futuristic spacesuit, complete with a helmet and gloves."
# Manifest lines as `videolift generate` writes them (shortened captions of the release's demo).
MANIFEST = [
    {"video": "videos/00000_00.mp4", "video_id": "00000_00", "prompt": CRANE, "prompt_index": 0, "seed": 11},
    {"video": "videos/00001_00.mp4", "video_id": "00001_00", "prompt": PANDA, "prompt_index": 1, "seed": 12},
    {"video": "videos/00001_01.mp4", "video_id": "00001_01", "prompt": PANDA, "prompt_index": 1, "seed": 13},
]
# The release's answers, in its output's shape: its input item, then the three answers under its keys.
ANSWERS = [
    (
        "Good. Basically correct.",
        "Bad. The crane's eyes in the video were not generated.",
        "Good. No obvious problems.",
    ),
    (
        "Bad. The video does not show the panda wearing a futuristic spacesuit as mentioned in the caption.",
        "Bad. The panda's limbs are missing in the video, and there are issues with the facial generation.",
        "Normal. The panda's movements in the video are basically normal, with slight coordination issues.",
    ),
    ("Normal. The helmet is missing.", "The panda looks real.", "Good. No obvious problems."),  # one unparsed
]


def release_output(manifest=MANIFEST, answers=ANSWERS) -> list[dict]:
    """What run_critic_13b.py writes for the input JSON made from ``manifest`` (as docs/critic.md says)."""
    return [
        {
            "video_id": r["video_id"],
            "video": r["video"],
            "caption": r["prompt"],
            "semantic consistency": sc,
            "fidelity issues": fi,
            "motion issues": mo,
        }
        for r, (sc, fi, mo) in zip(manifest, answers, strict=True)
    ]


def write_inputs(tmp_path: Path, output: list | dict | None = None) -> tuple[Path, Path]:
    manifest, src = tmp_path / "manifest.jsonl", tmp_path / "critic_output_13b.json"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in MANIFEST))
    output = release_output() if output is None else output
    # As the release writes it; a lone surrogate only as JSON's escape (as a character no file holds it)
    ascii_only = not valid_unicode(json.dumps(output, ensure_ascii=False))
    src.write_text(json.dumps(output, ensure_ascii=ascii_only, indent=4))
    return manifest, src


def run(*args) -> tuple[int, str]:
    result = runner.invoke(app, ["critic", "import-lift", *map(str, args)])
    return result.exit_code, result.output


def scored_by_critic_score(tmp_path: Path, manifest: Path, answers: dict[str, tuple[str, str, str]]) -> Path:
    """`critic score`'s own file for ``answers`` (by video): its scorer run end to end, the critic's
    generations replaced by these texts and parsed by `Critic.parse`."""
    from videolift.core.video import write_video
    from videolift.critic import score
    from videolift.critic.answers import Critic
    from videolift.critic.spec import CriticSpec

    for r in MANIFEST:
        write_video(tmp_path / r["video"], np.zeros((4, 16, 16, 3), np.uint8))
    critic = Critic(Path("."), CriticSpec(base_model="x", model_type="qwen2_vl"), None, None, None)
    sc, mo, vf = Dimension.semantic_consistency, Dimension.motion_smoothness, Dimension.video_fidelity

    def rate_chunk(_critic, chunk, frames, log_path, **kw):
        for record in chunk:
            semantic, fidelity, motion = answers[record["video"]]
            ratings = critic.parse([(sc, semantic), (mo, motion), (vf, fidelity)])
            score.append_jsonl(log_path, score._line(record, ratings, critic, None))

    out = tmp_path / "by_score.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(score, "_run_signature", lambda *a: {"critic": "stub"})
        mp.setattr(score, "_rate_chunk", rate_chunk)
        stub = SimpleNamespace(prompts=lambda text: [1, 2, 3], spec=critic.spec)
        score.score_manifest(stub, manifest, tmp_path, out, progress=False, log=lambda *a: None)
    return out


def test_the_imported_file_is_the_one_critic_score_writes_for_the_same_answers(tmp_path):
    from videolift.critic.score import summary_path

    manifest, src = write_inputs(tmp_path)
    out = tmp_path / "scores.jsonl"
    assert run(src, "--manifest", manifest, "--out", out)[0] == 0
    expected = scored_by_critic_score(
        tmp_path, manifest, {r["video"]: a for r, a in zip(MANIFEST, ANSWERS, strict=True)}
    )
    assert out.read_bytes() == expected.read_bytes()  # byte for byte: align hashes the file
    ours, theirs = (json.loads(summary_path(p).read_text()) for p in (out, expected))
    assert {k: v for k, v in ours.items() if k != "run"} == {
        k: v for k, v in theirs.items() if k not in ("run", "per_rank", "seconds")
    }
    assert ours["unparsed"] == {"semantic_consistency": 0, "motion_smoothness": 0, "video_fidelity": 1}
    line = [json.loads(x) for x in out.read_text().splitlines()][2]
    assert line["ratings"]["video_fidelity"] == {
        "label": None,
        "reason": "",
        "score": None,
        "answer": "The panda looks real.",
    }
    assert line["reward"] == pytest.approx((0.2 + 0.9) / 2)  # the parsed dimensions only


def test_align_reads_the_imported_scores(tmp_path):
    from videolift.align.weights import rescore, select_synthetic

    manifest, src = write_inputs(tmp_path)
    out = tmp_path / "scores.jsonl"
    assert run(src, "--manifest", manifest, "--out", out)[0] == 0
    scored = read_scores(out)
    assert [s.video for s in scored] == [r["video"] for r in MANIFEST]
    expected = [(0.9 + 0.05 + 0.9) / 3, (0.05 + 0.05 + 0.2) / 3, (0.2 + 0.9) / 2]
    assert [s.reward for s in scored] == pytest.approx(expected)
    samples, counts = select_synthetic(scored, "rwl")
    assert [s.weight for s in samples] == [s.reward for s in scored] and counts["kept"] == 3
    assert select_synthetic(scored, "rs")[1]["kept"] == 0  # none rated Good on all three
    # align --reward-config recomputes from the labels
    rescored = rescore(read_scores(out, from_labels=True), RewardConfig(aggregation="min"), out)
    assert [s.reward for s in rescored] == [0.05, 0.05, 0.2]


def test_the_summary_names_the_released_output_and_critic_score_will_not_take_it_for_its_own(tmp_path):
    from videolift.critic import score

    manifest, src = write_inputs(tmp_path)
    out = tmp_path / "scores.jsonl"
    config = tmp_path / "reward.yaml"
    config.write_text("aggregation: min\n")
    assert run(src, "--manifest", manifest, "--out", out, "--reward-config", config)[0] == 0
    run_info = json.loads(score.summary_path(out).read_text())["run"]
    assert run_info["lift_output"] == str(src.resolve())
    assert run_info["lift_output_sha256"] == content_hash(src)
    assert run_info["critic"].startswith("LiFT-Critic (released")
    assert run_info["reward"]["aggregation"] == "min"
    assert [s.reward for s in read_scores(out)] == [0.05, 0.05, 0.2]
    # A `critic score` run into the same file: refused, not resumed from the imported lines.
    stub = SimpleNamespace(prompts=lambda text: [1, 2, 3], spec=None)
    with pytest.MonkeyPatch.context() as mp:
        signature = {"critic": str(tmp_path / "critic"), "temperature": 0.0}
        mp.setattr(score, "_run_signature", lambda *a: signature)
        with pytest.raises(VideoliftError, match="holds the scores of another critic or settings"):
            score.score_manifest(stub, manifest, tmp_path, out, progress=False, log=lambda *a: None)


def test_the_release_demo_layout_matches_by_video_not_by_its_free_text_id(tmp_path):
    """demo/critic_output_13b.json names 0.mp4 "demo_0.mp4" and 1.mp4 "demo_1": the id is not the file."""
    manifest, src = tmp_path / "m.jsonl", tmp_path / "out.json"
    manifest.write_text(
        "".join(json.dumps({"video": f"./{i}.mp4", "prompt": p}) + "\n" for i, p in enumerate([CRANE, PANDA]))
    )
    demo = release_output(
        [
            {"video_id": "demo_0.mp4", "video": "0.mp4", "prompt": CRANE},
            {"video_id": "demo_1", "video": "1.mp4", "prompt": PANDA},
        ],
        ANSWERS[:2],
    )
    src.write_text(json.dumps(demo[::-1], indent=4))  # any order: the lines follow the manifest
    assert run(src, "--manifest", manifest, "--out", tmp_path / "s.jsonl")[0] == 0
    lines = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [(x["video"], x.get("video_id")) for x in lines] == [("./0.mp4", None), ("./1.mp4", None)]
    assert [x["ratings"]["video_fidelity"]["label"] for x in lines] == ["Bad", "Bad"]


def _edited(edit) -> list:
    output = release_output()
    edit(output)
    return output


REFUSALS = {
    "not a list": ({"a": 1}, "critic_output_13b.json: expected the critic's JSON list"),
    "no entries": ([], "holds no videos"),
    "unknown video": (
        _edited(lambda o: o[0].update(video="00000_00.mp4")),
        "element [0], field 'video': '00000_00.mp4' is no video of the manifest",
    ),
    "duplicate": (
        _edited(lambda o: o.append(dict(o[1]))),
        "element [3], field 'video': 'videos/00001_00.mp4' already at element [1]",
    ),
    "same file written another way": (
        _edited(lambda o: o.append({**o[1], "video": "./videos//00001_00.mp4"})),
        "element [3], field 'video': 'videos/00001_00.mp4' already at element [1]",
    ),
    "another caption": (
        _edited(lambda o: o[1].update(caption="A dog.")),
        "element [1], field 'caption': 'A dog.' is not the prompt of 'videos/00001_00.mp4'",
    ),
    "missing answer": (
        _edited(lambda o: o[2].pop("motion issues")),
        "element [2], field 'motion issues': missing",
    ),
    "answer not text": (
        _edited(lambda o: o[2].update({"fidelity issues": None})),
        "element [2], field 'fidelity issues': expected a string, got null",
    ),
    # JSON's "\\ud800" (a lone surrogate) read fine, then the scores' write failed: a traceback
    "answer no UTF-8 file can hold": (
        _edited(lambda o: o[1].update({"motion issues": "Bad. \ud800"})),
        "element [1], field 'motion issues': not valid Unicode text (it holds a lone surrogate)",
    ),
    "unanswered video": (
        _edited(lambda o: o.pop(1)),
        "manifest.jsonl, line 2, field 'video': no answer for this video",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_each_refusal_names_file_element_and_field_and_writes_nothing(tmp_path, case):
    output, message = REFUSALS[case]
    manifest, src = write_inputs(tmp_path, output)
    before = sorted(p.name for p in tmp_path.iterdir())
    status, text = run(src, "--manifest", manifest, "--out", tmp_path / "scores.jsonl")
    assert status == 1 and message in " ".join(text.split()), text
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_existing_output_needs_overwrite_and_a_failed_import_leaves_it_whole(tmp_path):
    from videolift.critic.score import summary_path

    manifest, src = write_inputs(tmp_path)
    out = tmp_path / "scores.jsonl"
    assert run(src, "--manifest", manifest, "--out", out)[0] == 0
    pair = out.read_bytes(), summary_path(out).read_bytes()
    status, text = run(src, "--manifest", manifest, "--out", out)
    assert status == 1 and "already exists; pass --overwrite" in text
    src.write_text(json.dumps(_edited(lambda o: o.pop())))
    status, text = run(src, "--manifest", manifest, "--out", out, "--overwrite")
    assert status == 1 and "no answer for this video" in text
    assert (out.read_bytes(), summary_path(out).read_bytes()) == pair
    src.write_text(json.dumps(_edited(lambda o: o[0].update({"motion issues": "Bad. Jumps."}))))
    assert run(src, "--manifest", manifest, "--out", out, "--overwrite")[0] == 0
    assert read_scores(out)[0].labels[Dimension.motion_smoothness].value == "Bad"
    status, text = run(src, "--manifest", manifest, "--out", src, "--overwrite")
    assert status == 2 and "is also the critic's output" in text


def test_lift_input_is_the_release_scripts_input_and_its_answers_import_back(tmp_path):
    """`critic lift-input` writes what run_critic_13b.py reads (a JSON list of video_id, video, caption);
    the script copies each item and adds its answers, which `critic import-lift` matches back."""
    manifest, _ = write_inputs(tmp_path)
    given = tmp_path / "critic_input.json"
    done = runner.invoke(app, ["critic", "lift-input", "--manifest", str(manifest), "--out", str(given)])
    assert done.exit_code == 0, done.output
    items = json.loads(given.read_text())
    assert items == [
        {"video_id": r["video_id"], "video": r["video"], "caption": r["prompt"]} for r in MANIFEST
    ]
    answered = [item | dict(zip(("semantic consistency", "fidelity issues", "motion issues"), a, strict=True))
                for item, a in zip(items, ANSWERS, strict=True)]  # fmt: skip
    src = tmp_path / "critic_output_13b.json"
    src.write_text(json.dumps(answered))
    code, said = run(src, "--manifest", manifest, "--out", tmp_path / "scores.jsonl")
    assert code == 0, said
    assert [s.video for s in read_scores(tmp_path / "scores.jsonl")] == [r["video"] for r in MANIFEST]
    # An existing input is kept without --overwrite.
    again = runner.invoke(app, ["critic", "lift-input", "--manifest", str(manifest), "--out", str(given)])
    assert again.exit_code == 1 and "already exists" in " ".join(again.output.split())


def test_lift_input_strips_each_caption_as_critic_score_does_and_its_answers_import_back(tmp_path):
    """A hand-written manifest's prompt with spaces or a line break around it went to the release's
    script as is (it joins caption and question as strings); `critic score` asks about it stripped."""
    manifest, given = tmp_path / "m.jsonl", tmp_path / "critic_input.json"
    manifest.write_text(json.dumps({"video": "a.mp4", "prompt": f"  {PANDA}\n"}) + "\n")
    done = runner.invoke(app, ["critic", "lift-input", "--manifest", str(manifest), "--out", str(given)])
    assert done.exit_code == 0, done.output
    items = json.loads(given.read_text())
    assert [item["caption"] for item in items] == [PANDA]
    src = tmp_path / "critic_output_13b.json"
    keys = ("semantic consistency", "fidelity issues", "motion issues")
    src.write_text(json.dumps([items[0] | dict(zip(keys, ANSWERS[0], strict=True))]))
    code, said = run(src, "--manifest", manifest, "--out", tmp_path / "scores.jsonl")
    assert code == 0, said


def test_lift_input_of_absolute_paths_says_an_empty_image_root_and_refuses_a_mixture(tmp_path):
    """The script opens --image_root + video: absolute paths (which `critic score` reads under any
    --videos) need an empty root, not VIDEOS_ROOT/ ("/data/syn//data/syn/a.mp4" is no file)."""
    manifest, given = tmp_path / "m.jsonl", tmp_path / "critic_input.json"
    paths = [str(tmp_path / "videos" / "a.mp4"), str(tmp_path / "videos" / "b.mp4")]
    manifest.write_text("".join(json.dumps({"video": p, "prompt": PANDA}) + "\n" for p in paths))
    done = runner.invoke(app, ["critic", "lift-input", "--manifest", str(manifest), "--out", str(given)])
    assert done.exit_code == 0, done.output
    assert "--image_root ''" in done.output and "VIDEOS_ROOT" not in done.output
    assert [item["video"] for item in json.loads(given.read_text())] == paths
    # One relative path among them: no --image_root serves both.
    manifest.write_text(manifest.read_text() + json.dumps({"video": "videos/c.mp4", "prompt": CRANE}) + "\n")
    done = runner.invoke(
        app, ["critic", "lift-input", "--manifest", str(manifest), "--out", str(given), "--overwrite"]
    )
    said = " ".join(done.output.split())
    assert (
        done.exit_code == 1 and "m.jsonl, line 3, field 'video': 'videos/c.mp4' is a relative path" in said
    ), said


def test_lift_input_of_a_prompt_no_utf8_file_can_hold_names_its_line_and_writes_nothing(tmp_path):
    """A lone surrogate (JSON's "\\ud800") in a manifest prompt made the input's write fail, a traceback."""
    manifest, given = tmp_path / "m.jsonl", tmp_path / "critic_input.json"
    manifest.write_text(json.dumps({"video": "a.mp4", "prompt": "A \ud800 panda"}) + "\n")
    done = runner.invoke(app, ["critic", "lift-input", "--manifest", str(manifest), "--out", str(given)])
    said = " ".join(done.output.split())
    assert done.exit_code == 1 and "m.jsonl, line 1, field 'prompt': not valid Unicode text" in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]
