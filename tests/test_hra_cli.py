import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from videolift.cli import app
from videolift.core.jsonl import read_jsonl
from videolift.core.schema import Dimension, HRARecord, Label
from videolift.core.video import write_video
from videolift.data.lift_format import QUESTIONS

runner = CliRunner()
SC, MS, VF = Dimension.semantic_consistency, Dimension.motion_smoothness, Dimension.video_fidelity


def release_item(video, caption, dim, answer):
    return {
        "video": video,
        "conversations": [
            {"from": "human", "value": f"<video>\n {caption} {QUESTIONS[dim]}"},
            {"from": "gpt", "value": answer},
        ],
    }


RELEASE = [
    release_item(
        "videos/a.mp4",
        "A panda in a spacesuit walks on the moon.",
        SC,
        "Bad. The panda is not wearing the spacesuit.",
    ),
    release_item("videos/a.mp4", "A panda in a spacesuit walks on the moon.", MS, "good. "),
    release_item(
        "videos/a.mp4",
        "A panda in a spacesuit walks on the moon.",
        VF,
        "Normal. Mostly Good, but the Bad paw is deformed.",
    ),
    release_item("videos/b.mp4", "Two dogs play in the snow.", SC, "  Good.   The dogs look Normal.  "),
    release_item("videos/b.mp4", "Two dogs play in the snow.", MS, "Bad. Jumps; not Good at all."),
    # The 20K file repeats records of the 10K one: exact repeats collapse.
    release_item("videos/b.mp4", "Two dogs play in the snow.", MS, "Bad. Jumps; not Good at all."),
]


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_import_can_put_the_videos_under_a_folder_so_two_releases_combine(tmp_path):
    # LiFT-HRA and VIDGEN both say videos/...: under one videos root they need folders of their own.
    src = tmp_path / "vidgen.json"
    src.write_text(json.dumps(RELEASE))
    args = ("hra", "import", src, "--format", "lift", "--out", tmp_path / "v.jsonl", "--video-prefix")
    assert run(*args, "vidgen/")[0] == 0
    records = read_jsonl(tmp_path / "v.jsonl", HRARecord)
    assert {(r.video, r.video_id) for r in records} == {
        ("vidgen/videos/a.mp4", "vidgen/videos/a.mp4"), ("vidgen/videos/b.mp4", "vidgen/videos/b.mp4")}  # fmt: skip
    code, said = run(*args, "../elsewhere")
    assert code != 0 and "name a folder inside the videos root" in said
    # "./vidgen" (or "vidgen//") wrote "./vidgen/videos/a.mp4" as video and id: read back, the path is
    # "vidgen/videos/a.mp4" but the id kept the "./", another video's id to files importing "vidgen".
    for prefix in ("./vidgen", "vidgen//", "./vidgen/./"):
        assert run(*args, prefix, "--overwrite")[0] == 0
        assert (tmp_path / "v.jsonl").read_text().count('"vidgen/videos/a.mp4"') == 2, prefix
    for prefix in (".", "./", "/"):
        code, said = run(*args, prefix, "--overwrite")
        assert code == 2 and "name a folder inside the videos root" in said, prefix


# The release's layout as its VIDGEN file writes it (CodeGoat24/LiFT, dataset/VIDGEN/vidgen-data.json, read
# by the critic's training with LiFT-HRA-data.json: --data_mixture LiFT-HRA+vidgen): a JSON list indented by
# 4, "<video>\n ", the caption, a space, the question; the answer "<Label>. <reason>". Captions here are
# ours, with what the release's hold: quotes, a backslash before a quote, a quoted word ending a sentence.
RELEASE_AS_PUBLISHED = """[
    {
        "video": "videos/AkQlXiOmKhM-Scene-0009.mp4",
        "conversations": [
            {
                "from": "human",
                "value": "<video>\\n The video shows a man at a desk. A screen behind him reads \\"abc.\\" Please identify the fidelity issues in this video, assessing the realism of the content, including people, animals, and other objects. Highlight any problems such as missing limbs, deformed hands or faces, or other unrealistic elements."
            },
            {
                "from": "gpt",
                "value": "Good. There are no obvious problems."
            }
        ]
    },
    {
        "video": "videos/n24RSunEJ3w-Scene-0032.mp4",
        "conversations": [
            {
                "from": "human",
                "value": "<video>\\n The word \\\\\\"ASMR\\\\\\" appears on the screen. Please identify the semantic consistency issues in this video, focusing on the alignment between the text and the visual content. Specifically, point out any discrepancies regarding the subject (e.g., person or animal), quantity, color, scene description, style, and other relevant aspects."
            },
            {
                "from": "gpt",
                "value": "Good. There are no obvious problems."
            }
        ]
    },
    {
        "video": "videos/n24RSunEJ3w-Scene-0032.mp4",
        "conversations": [
            {
                "from": "human",
                "value": "<video>\\n The word \\\\\\"ASMR\\\\\\" appears on the screen. Please identify the motion issues in this video, focusing on the continuity and smoothness of actions, as well as their coherence and adherence to the laws of physics."
            },
            {
                "from": "gpt",
                "value": "Bad. The letters jump between frames."
            }
        ]
    }
]"""


def test_the_release_as_published_imports_trains_the_critic_and_exports_byte_for_byte(tmp_path):
    from videolift.critic.data import hra_examples
    from videolift.critic.spec import CriticSpec

    src = tmp_path / "vidgen-data.json"
    src.write_text(RELEASE_AS_PUBLISHED)
    code, out = run("hra", "import", src, "--format", "lift", "--out", tmp_path / "hra.jsonl")
    assert code == 0, out
    records = read_jsonl(tmp_path / "hra.jsonl", HRARecord)
    assert [(r.video, r.prompt, {d: (x.label, x.reason) for d, x in r.ratings.items()}) for r in records] == [
        ("videos/AkQlXiOmKhM-Scene-0009.mp4", 'The video shows a man at a desk. A screen behind him reads "abc."',
         {VF: (Label.Good, "There are no obvious problems.")}),
        ("videos/n24RSunEJ3w-Scene-0032.mp4", 'The word \\"ASMR\\" appears on the screen.',
         {SC: (Label.Good, "There are no obvious problems."), MS: (Label.Bad, "The letters jump between frames.")}),
    ]  # fmt: skip
    published = json.loads(RELEASE_AS_PUBLISHED)
    turns = {(item["conversations"][0]["value"], item["conversations"][1]["value"]) for item in published}
    # The critic is taught the release's own question and answer texts ...
    for r in records:
        (tmp_path / r.video).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / r.video).touch()
    examples, _ = hra_examples(records, tmp_path, CriticSpec(base_model="b", model_type="qwen2_vl"), file=src)
    assert {(f"<video>\n {e.user_text}", e.answer) for e in examples} == turns
    # ... and export writes the release's records again, key for key.
    assert run("hra", "export", tmp_path / "hra.jsonl", "--out", tmp_path / "back.json")[0] == 0
    key = lambda item: json.dumps(item, sort_keys=True)  # noqa: E731
    assert sorted(map(key, json.loads((tmp_path / "back.json").read_text()))) == sorted(map(key, published))


def test_import_reads_a_video_path_as_the_record_holds_it(tmp_path):
    """One file written two ways ("./videos//a.mp4", "videos/a.mp4") is one video: one record, whose id
    (the path it stands in for, prefixed with the video) is its own path, not the first spelling seen."""
    cap = "A panda walks."
    src = tmp_path / "lift.json"
    src.write_text(
        json.dumps(
            [release_item("./videos//a.mp4", cap, SC, "Good."), release_item("videos/a.mp4", cap, MS, "Bad.")]
        )
    )
    for prefix, expected in (((), "videos/a.mp4"), (("--video-prefix", "hra"), "hra/videos/a.mp4")):
        out = tmp_path / f"hra{len(prefix)}.jsonl"
        assert run("hra", "import", src, "--out", out, *prefix)[0] == 0
        assert [(r.video, r.video_id, sorted(r.ratings)) for r in read_jsonl(out, HRARecord)] == [
            (expected, expected, sorted([SC, MS]))
        ]


def test_import_merges_per_video_and_parses_leading_labels(tmp_path):
    src = tmp_path / "lift.json"
    src.write_text(json.dumps(RELEASE))
    code, out = run("hra", "import", src, "--format", "lift", "--out", tmp_path / "hra.jsonl")
    assert code == 0, out
    records = {r.video: r for r in read_jsonl(tmp_path / "hra.jsonl", HRARecord)}
    assert set(records) == {"videos/a.mp4", "videos/b.mp4"}
    a, b = records["videos/a.mp4"], records["videos/b.mp4"]
    assert a.prompt == "A panda in a spacesuit walks on the moon."
    assert (
        a.ratings[SC].label is Label.Bad and a.ratings[SC].reason == "The panda is not wearing the spacesuit."
    )
    assert a.ratings[MS].label is Label.Good and a.ratings[MS].reason == ""
    assert (
        a.ratings[VF].label is Label.Normal
        and a.ratings[VF].reason == "Mostly Good, but the Bad paw is deformed."
    )
    assert b.ratings[SC].label is Label.Good and b.ratings[SC].reason == "The dogs look Normal."
    assert b.ratings[MS].label is Label.Bad
    assert VF not in b.ratings  # a record may rate a subset of dimensions


def test_import_warns_once_of_record_keys_it_does_not_import(tmp_path):
    """Keys outside the layout (the release's video and conversations, export's video_id and annotator)
    were dropped without a word; the output stays as it was, the warning names each key once."""
    items = [dict(item) for item in RELEASE]
    for n, item in enumerate(items):
        item["id"] = f"r{n}"  # e.g. a LLaVA file's per-record id: one video's merged records have several
    items[3]["[bold]score"] = 3  # a key in rich's markup syntax is printed as written
    src, out = tmp_path / "lift.json", tmp_path / "hra.jsonl"
    src.write_text(json.dumps(items))
    code, said = run("hra", "import", src, "--format", "lift", "--out", out)
    assert code == 0, said
    said = " ".join(said.split())
    assert said.count("warning:") == 1, said
    assert (
        "lift.json: keys not in the LiFT layout, not imported: '[bold]score' (1 record, first element [3]), "
        "'id' (6 records, first element [0])" in said
    ), said
    imported = out.read_text()
    src.write_text(json.dumps(RELEASE))
    code, said = run("hra", "import", src, "--format", "lift", "--out", out, "--overwrite")
    assert code == 0 and "warning" not in said, said
    assert out.read_text() == imported  # the output is what the layout's keys alone make


def test_import_drops_exact_repeats_before_filling_another_raters_record(tmp_path):
    """Rater 1 rates all three, rater 2 (anonymous too) only semantics, then rater 1's three answers
    come again (the 20K file repeats the 10K one): the repeats must not complete rater 2's record."""
    cap = "A panda walks."
    first = [release_item("v.mp4", cap, d, "Good. Fine.") for d in (SC, MS, VF)]
    second = release_item("v.mp4", "A panda  walks.", SC, "Bad. No panda.")  # spacing: the same caption
    src = tmp_path / "lift.json"
    src.write_text(json.dumps([*first, second, *first]))
    code, out = run("hra", "import", src, "--format", "lift", "--out", tmp_path / "hra.jsonl")
    assert code == 0, out
    records = read_jsonl(tmp_path / "hra.jsonl", HRARecord)
    assert [sorted(r.ratings) for r in records] == [sorted([SC, MS, VF]), [SC]]
    assert {r.prompt for r in records} == {cap}
    said = " ".join(out.split())
    assert "3 exact duplicates dropped, 1 repeated ratings kept" in said, said  # the anonymous second SC


def test_export_then_import_round_trips(tmp_path):
    records = [
        HRARecord(
            video_id="v1",
            video="videos/v1.mp4",
            prompt="a red circle moves left",
            annotator="a1",
            ratings={
                SC: {"label": "Bad", "reason": "The circle is green, not red. Bad."},
                MS: {"label": "Good"},
            },
        ),
        HRARecord(
            video_id="v1",
            video="videos/v1.mp4",
            prompt="a red circle moves left",
            annotator="a2",
            ratings={SC: {"label": "Normal", "reason": "Good colour, Normal shape."}},
        ),
        HRARecord(
            video="videos/v2.mp4", prompt="two dogs", ratings={VF: {"label": "Good", "reason": "Crisp."}}
        ),
        HRARecord(  # a prompt holding the questions' first words used to be cut there
            video="videos/v3.mp4",
            prompt="A teacher says: Please identify the red bird.",
            ratings={SC: {"label": "Good"}},
        ),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    assert run("hra", "export", src, "--format", "lift", "--out", tmp_path / "lift.json")[0] == 0
    exported = json.loads((tmp_path / "lift.json").read_text())
    assert len(exported) == 5 and all(
        e["conversations"][0]["value"].startswith("<video>\n ") for e in exported
    )
    code, said = run(
        "hra", "import", tmp_path / "lift.json", "--format", "lift", "--out", tmp_path / "back.jsonl"
    )
    # a2's rating of v1 is a2's own record, not a repeated rating of a1's
    assert code == 0 and "0 repeated ratings kept" in " ".join(said.split()), said
    back = read_jsonl(tmp_path / "back.jsonl", HRARecord)
    key = lambda r: (r.video, r.annotator or "")  # noqa: E731
    assert [r.to_json() for r in sorted(back, key=key)] == [r.to_json() for r in sorted(records, key=key)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[{", "lift.json: malformed JSON"),
        ("[]", "lift.json: the release file holds no records"),
        (json.dumps({"video": "x"}), "expected a JSON list"),
        (
            json.dumps([RELEASE[0], {"conversations": RELEASE[0]["conversations"]}]),
            "element [1], field 'video'",
        ),
        (
            json.dumps(
                [
                    {
                        "video": "a.mp4",
                        "conversations": [
                            {"from": "human", "value": "<video>\n cap What?"},
                            {"from": "gpt", "value": "Good."},
                        ],
                    }
                ]
            ),
            "element [0], field 'conversations[human].value': no question",
        ),
        (
            json.dumps([release_item("a.mp4", "cap", SC, "Excellent. Looks fine.")]),
            "element [0], field 'conversations[gpt].value': answer does not start",
        ),
        (
            json.dumps([{"video": "a.mp4", "conversations": [RELEASE[0]["conversations"][0]]}]),
            "element [0], field 'conversations': no gpt",
        ),
        (  # the turn is there: "no human turn" sent one looking for a missing one
            json.dumps(
                [
                    {
                        "video": "a.mp4",
                        "conversations": [{"from": "human", "value": 5}, RELEASE[0]["conversations"][1]],
                    }
                ]
            ),
            "element [0], field 'conversations[human].value': expected a string, got a number",
        ),
        (
            json.dumps(
                [{"video": "a.mp4", "conversations": [RELEASE[0]["conversations"][0], {"from": "gpt"}]}]
            ),
            "element [0], field 'conversations[gpt].value': expected a string, got null",
        ),
        (
            json.dumps([release_item("a.mp4", "", SC, "Good.")]),
            "element [0], field 'conversations[human].value': empty caption",
        ),
        (  # a second question and answer in one record would be dropped unread
            json.dumps([{"video": "a.mp4", "conversations": RELEASE[0]["conversations"] * 2}]),
            "element [0], field 'conversations': expected one human turn and its gpt answer, got turns "
            "['human', 'gpt', 'human', 'gpt']",
        ),
        (
            json.dumps([{"video": "a.mp4", "conversations": RELEASE[0]["conversations"][::-1]}]),
            "element [0], field 'conversations': expected one human turn and its gpt answer, got turns "
            "['gpt', 'human']",
        ),
        (
            json.dumps(
                [release_item("a.mp4", "a cat", SC, "Good."), release_item("a.mp4", "a dog", MS, "Good.")]
            ),
            "element [1], field 'conversations[human].value': video 'a.mp4' has the caption 'a cat' at element [0]",
        ),
        (
            json.dumps([{**release_item("a.mp4", "cap", SC, "Good."), "annotator": 7}]),
            "element [0], field 'annotator': annotator must be a name, got 7",
        ),
        (  # a blank id was a pydantic traceback; another type was dropped for the path unsaid
            json.dumps([{**release_item("a.mp4", "cap", SC, "Good."), "video_id": "\t"}]),
            "element [0], field 'video_id': video_id must be a string, not blank, got '\\t'",
        ),
        (
            json.dumps([{**release_item("a.mp4", "cap", SC, "Good."), "video_id": 7}]),
            "element [0], field 'video_id': video_id must be a string, not blank, got 7",
        ),
        (
            json.dumps([release_item("  ", "cap", SC, "Good.")]),
            "element [0], field 'video': missing or empty video path",
        ),
        # JSON's "\ud800" escape reads as a lone surrogate, which no UTF-8 file can hold: each of these
        # was a traceback (a pydantic error, or the output's write failing)
        (
            json.dumps([release_item("a.mp4", "A \ud800 cat.", SC, "Good.")]),
            "element [0], field 'conversations[human].value': not valid Unicode text (it holds a lone surrogate)",
        ),
        (
            json.dumps([release_item("a.mp4", "cap", SC, "Bad. \ud800")]),
            "element [0], field 'conversations[gpt].value': not valid Unicode text (it holds a lone surrogate)",
        ),
        (
            json.dumps([{**release_item("a.mp4", "cap", SC, "Good."), "annotator": "Zo\ud800"}]),
            "element [0], field 'annotator': not valid Unicode text (it holds a lone surrogate)",
        ),
        (
            json.dumps([{**release_item("a.mp4", "cap", SC, "Good."), "video_id": "v\ud800"}]),
            "element [0], field 'video_id': not valid Unicode text (it holds a lone surrogate)",
        ),
        (
            json.dumps([release_item("a\ud800.mp4", "cap", SC, "Good.")]),
            "element [0], field 'video': not valid Unicode text (it holds a lone surrogate)",
        ),
        (  # json kept the last video of the two: the ratings went to b.mp4 unsaid
            json.dumps([release_item("a.mp4", "cap", SC, "Good.")]).replace(
                '"video"', '"video": "b.mp4", "video"'
            ),
            "lift.json, field 'video': 'video' is given twice in one object",
        ),
    ],
)
def test_import_bad_input_names_the_place_and_writes_nothing(tmp_path, content, expected):
    src = tmp_path / "lift.json"
    src.write_text(content)
    out = tmp_path / "out" / "hra.jsonl"
    code, output = run("hra", "import", src, "--format", "lift", "--out", out)
    assert code == 1, output
    assert expected in " ".join(output.split())
    assert not out.exists() and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("field", ["prompt", "video_id", "annotator"])
def test_export_of_a_lone_surrogate_names_the_line_and_field(tmp_path, field):
    """`hra validate` passed such a record and `hra export` then failed writing it, with a traceback."""
    src = tmp_path / "hra.jsonl"
    good = {"video": "v.mp4", "prompt": "p", "ratings": {"video_fidelity": {"label": "Good"}}}
    src.write_text(json.dumps(good) + "\n" + json.dumps({**good, field: "x \ud800"}) + "\n")
    code, out = run("hra", "export", src, "--out", tmp_path / "o.json")
    said = (
        f"hra.jsonl, line 2, field '{field}': {field} is not valid Unicode text (it holds a lone surrogate)"
    )
    assert code == 1 and said in " ".join(out.split()), out
    assert not list(tmp_path.glob("o.json*"))
    code, out = run("hra", "validate", src)
    assert code == 1 and said in " ".join(out.split()), out


def test_bad_jsonl_names_file_line_and_field(tmp_path):
    src = tmp_path / "hra.jsonl"
    good = {"video": "v.mp4", "prompt": "p", "ratings": {"video_fidelity": {"label": "Good"}}}
    lines = [good, {**good, "ratings": {"video_fidelity": {"label": "Great"}}}]
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    code, out = run("hra", "export", src, "--format", "lift", "--out", tmp_path / "o.json")
    flat = " ".join(out.split())
    assert (
        code != 0 and "hra.jsonl, line 2, field 'ratings.video_fidelity.label': unknown label 'Great'" in flat
    )
    assert not (tmp_path / "o.json").exists()
    code, out = run("hra", "validate", src)
    flat = " ".join(out.split())
    assert code == 1
    assert "line 2, field 'ratings.video_fidelity.label'" in flat
    # validate reads past the first error... but malformed JSON stops the file reader: it is reported too.
    assert "line 3: malformed JSON" in flat or "line 3" in flat


def test_validate_checks_videos_and_duplicates(tmp_path):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "ok.mp4", np.zeros((5, 16, 16, 3), np.uint8))
    (tmp_path / "videos" / "broken.mp4").write_text("not a video")
    rows = [
        {
            "video": "ok.mp4",
            "prompt": "p",
            "annotator": "a",
            "ratings": {"video_fidelity": {"label": "Good"}},
        },
        {
            "video": "ok.mp4",
            "prompt": "p",
            "annotator": "a",
            "ratings": {"motion_smoothness": {"label": "Bad"}},
        },
        {"video": "missing.mp4", "prompt": "p", "ratings": {"video_fidelity": {"label": "Good"}}},
        {"video": "broken.mp4", "prompt": "p", "ratings": {"video_fidelity": {"label": "Good"}}},
        {"video": "ok.mp4", "prompt": "p", "ratings": {"colour": {"label": "Good"}}},
        # one id, another prompt (and below, another video): one id names one video
        {
            "video": "ok.mp4",
            "prompt": "q",
            "annotator": "b",
            "ratings": {"video_fidelity": {"label": "Good"}},
        },
        {
            "video_id": "ok.mp4",
            "video": "broken.mp4",
            "prompt": "p",
            "ratings": {"video_fidelity": {"label": "Bad"}},
        },
    ]
    src = tmp_path / "hra.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = run("hra", "validate", src, "--videos", tmp_path / "videos")
    flat = " ".join(out.split())
    assert code == 1
    assert "line 2, field 'annotator': second record" in flat
    assert "line 3, field 'video'" in flat and "missing.mp4: file not found" in flat
    assert "line 4, field 'video'" in flat and "broken.mp4" in flat
    assert "line 5, field 'ratings': unknown dimension 'colour'" in flat
    assert "line 6, field 'prompt': video id 'ok.mp4' is 'p' on line 1, 'q' here" in flat
    assert "line 7, field 'video': video id 'ok.mp4' is 'ok.mp4' on line 1, 'broken.mp4' here" in flat
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps(rows[0]) + "\n")
    code, out = run("hra", "validate", ok, "--videos", tmp_path / "videos")
    assert code == 0 and "1 valid records, 1 videos decode" in " ".join(out.split()), out
    code, out = run("hra", "validate", ok, "--videos", tmp_path / "videos", "--quick")
    assert code == 0 and "1 valid records, 1 videos open" in " ".join(out.split()), out  # not decoded
    # A videos root that is not a directory is said once (it was "file not found" for every record).
    for root, what in (
        (tmp_path / "nope", "is not found"),
        (tmp_path / "videos" / "ok.mp4", "is not a directory"),
    ):
        code, out = run("hra", "validate", src, "--videos", root)
        assert code == 1 and out.count("\n") == 1, out
        assert f"{root}: the videos root of {src} {what}" in " ".join(out.split())


def _panel(n_videos=40, annotators=3, seed=0, flip=0.0):
    rng = np.random.default_rng(seed)
    labels = ["Bad", "Normal", "Good"]
    records = []
    for v in range(n_videos):
        truth = rng.integers(0, 3)
        for a in range(annotators):
            lab = truth if rng.random() >= flip else (truth + 1) % 3
            records.append(
                {
                    "video_id": f"v{v}",
                    "video": f"videos/v{v}.mp4",
                    "prompt": f"prompt {v % 7}",
                    "annotator": f"a{a}",
                    "ratings": {"semantic_consistency": {"label": labels[lab], "reason": "r"}},
                }
            )
    return records


def test_stats_reports_distribution_and_agreement(tmp_path):
    src = tmp_path / "hra.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _panel()))
    code, out = run("hra", "stats", src, "--json")
    assert code == 0, out
    stats = json.loads(out)
    sc = stats["dimensions"]["semantic_consistency"]
    assert stats["records"] == 120 and stats["videos"] == 40 and stats["annotators"] == 3
    assert sum(sc["labels"].values()) == 120
    assert sc["agreement"]["krippendorff_alpha"] == pytest.approx(1.0)  # identical panels agree perfectly
    noisy = tmp_path / "noisy.jsonl"
    noisy.write_text("".join(json.dumps(r) + "\n" for r in _panel(flip=0.3)))
    alpha = json.loads(run("hra", "stats", noisy, "--json")[1])["dimensions"]["semantic_consistency"][
        "agreement"
    ]
    assert 0.0 < alpha["krippendorff_alpha"] < 0.9 and alpha["pairwise_agreement"] < 1.0
    assert stats["dimensions"]["video_fidelity"]["agreement"]["krippendorff_alpha"] is None
    code, table = run("hra", "stats", src)
    assert code == 0 and "semantic_consistency" in table


@pytest.mark.parametrize("group_by", ["video", "prompt"])
def test_split_never_leaks_and_is_deterministic(tmp_path, group_by):
    src = tmp_path / "hra.jsonl"
    records = _panel(n_videos=50)
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    outs = []
    for name in ("s1", "s2"):
        code, out = run(
            "hra",
            "split",
            src,
            "--test-fraction",
            0.2,
            "--seed",
            3,
            "--out",
            tmp_path / name,
            "--group-by",
            group_by,
        )
        assert code == 0, out
        outs.append(
            ((tmp_path / name / "train.jsonl").read_text(), (tmp_path / name / "test.jsonl").read_text())
        )
    assert outs[0] == outs[1]
    train = read_jsonl(tmp_path / "s1" / "train.jsonl", HRARecord)
    test = read_jsonl(tmp_path / "s1" / "test.jsonl", HRARecord)
    assert len(train) + len(test) == len(records) and test
    key = (lambda r: r.video_id) if group_by == "video" else (lambda r: r.prompt)
    assert not {key(r) for r in train} & {key(r) for r in test}
    assert not {r.video for r in train} & {r.video for r in test}
    run(
        "hra",
        "split",
        src,
        "--test-fraction",
        0.2,
        "--seed",
        4,
        "--out",
        tmp_path / "s3",
        "--group-by",
        group_by,
    )
    assert (tmp_path / "s3" / "test.jsonl").read_text() != outs[0][1]
    code, _ = run("hra", "split", src, "--test-fraction", 1.0, "--seed", 3, "--out", tmp_path / "bad")
    assert code != 0 and not (tmp_path / "bad").exists()


def test_an_empty_file_and_a_fraction_of_0_or_1_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    for command in (["stats"], ["validate"], ["export", "--out", str(tmp_path / "x.json")],
                    ["split", "--test-fraction", "0.5", "--out", str(tmp_path / "s")]):  # fmt: skip
        code, out = run("hra", command[0], empty, *command[1:])
        assert code == 1 and "empty.jsonl: no records: the file is empty" in out, (command, out)
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "s").exists()
    hra = tmp_path / "hra.jsonl"
    hra.write_text(
        json.dumps({"video": "a.mp4", "prompt": "p", "ratings": {"semantic_consistency": "Good"}}) + "\n"
    )
    twice = tmp_path / "twice.jsonl"
    rated = {
        "video": "a.mp4",
        "prompt": "p",
        "annotator": "ann",
        "ratings": {"semantic_consistency": {"label": "Good"}},
    }
    twice.write_text(json.dumps(rated) + "\n" + json.dumps(rated) + "\n")
    code, out = run("hra", "stats", twice)
    assert code == 1 and "twice.jsonl, line 2, field 'annotator': second record of video 'a.mp4'" in out
    unrated = tmp_path / "unrated.jsonl"
    unrated.write_text(json.dumps({"video": "a.mp4", "prompt": "p", "ratings": {}}) + "\n")
    code, out = run("hra", "validate", unrated)
    assert code == 1 and "unrated.jsonl, line 1, field 'ratings': no rating" in out
    code, out = run("hra", "split", hra, "--test-fraction", "1", "--out", tmp_path / "s")
    assert code == 2 and "strictly between 0 and 1" in out
    assert "1.0]" not in run("hra", "split", "--help")[1]  # the help does not offer 0 or 1 either


def test_annotate_create_checks_its_settings_before_making_the_project(tmp_path):
    (tmp_path / "videos").mkdir()
    base = ["annotate", "create", "--videos", tmp_path / "videos", "--project", tmp_path / "p"]
    code, out = run(*base, "--lease-minutes", "-1")
    assert code == 2 and "--lease-minutes: Input should be greater than 0" in out
    code, out = run(*base, "--db", "nosuchdb://x")
    assert code == 2 and "--db nosuchdb://x: Can't load plugin" in out
    assert not (tmp_path / "p").exists()
    code, out = run(*base, "--manifest", tmp_path / "videos")  # a bad manifest: no empty project left
    assert code == 1 and "videos: is a directory, expected a file" in out and not (tmp_path / "p").exists()


def test_a_split_killed_between_its_files_keeps_the_old_pair_whole(tmp_path, monkeypatch):
    # Another seed's train set beside the old test set would put videos on both sides; and --overwrite
    # deleted the old pair before writing, so a kill there left neither the old split nor the new one.
    from videolift.data import split

    src, out = tmp_path / "hra.jsonl", tmp_path / "split"
    src.write_text("".join(json.dumps(r) + "\n" for r in _panel(n_videos=20)))
    assert run("hra", "split", src, "--test-fraction", 0.5, "--seed", 0, "--out", out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    writes = split.write_jsonl

    def killed_at_test(path, records):
        if "test.jsonl" in path.name:  # (the file's own name, or its temporary one beside it)
            raise KeyboardInterrupt  # the process dies here
        return writes(path, records)

    monkeypatch.setattr(split, "write_jsonl", killed_at_test)
    assert run("hra", "split", src, "--test-fraction", 0.5, "--seed", 1, "--out", out, "--overwrite")[0] != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # byte for byte, nothing beside them
    monkeypatch.undo()
    assert run("hra", "split", src, "--test-fraction", 0.5, "--seed", 1, "--out", out, "--overwrite")[0] == 0
    assert {p.name for p in out.iterdir()} == set(before) and (out / "train.jsonl").read_bytes() != before[
        "train.jsonl"
    ]


def test_split_keeps_a_shared_video_on_one_side_whatever_the_grouping_and_the_line_order(tmp_path):
    """Two ids naming one file, each with its own prompt: grouped by prompt the file used to land on
    both sides; with shared files the result also used to depend on the file's line order."""
    from videolift.core.errors import VideoliftError
    from videolift.data.split import split_records

    def record(video_id: str, video: str, prompt: str) -> HRARecord:
        return HRARecord(
            video_id=video_id, video=video, prompt=prompt, ratings={"video_fidelity": {"label": "Good"}}
        )

    records = [record("x1", "x.mp4", "a cat"), record("x2", "x.mp4", "a dog")]
    records += [record(f"v{i}", f"v{i}.mp4", f"prompt {i}") for i in range(8)]
    records += [record("y1", "y.mp4", "prompt 0"), record("y2", "y.mp4", "prompt 9")]  # shares too
    for group_by in ("video", "prompt"):
        splits = set()
        for seed in range(6):
            for order in (records, records[::-1]):
                train, test = split_records(order, 0.3, seed, group_by=group_by)
                assert not {r.video for r in train} & {r.video for r in test}, (group_by, seed)
                if group_by == "prompt":
                    assert not {r.prompt for r in train} & {r.prompt for r in test}
                splits.add((seed, frozenset(r.video_id for r in test)))
        assert len(splits) == 6  # the line order changes nothing
    with pytest.raises(VideoliftError, match="all of one video"):
        split_records([record("x1", "x.mp4", "a"), record("x2", "x.mp4", "b")], 0.5, 0)


def test_split_holds_out_the_rounded_up_share_exactly():
    """0.14 x 50 videos is 7.000000000000001 in floating point: rounded up, 8 videos were held out."""
    from videolift.data.split import split_records

    for fraction, n, expected in ((0.14, 50, 7), (0.07, 100, 7), (0.55, 100, 55), (0.28, 25, 7), (0.1, 7, 1)):
        records = [
            HRARecord(video=f"v{i}.mp4", prompt=f"p{i}", ratings={"video_fidelity": {"label": "Good"}})
            for i in range(n)
        ]
        train, test = split_records(records, fraction, 0)
        assert (len(test), len(train)) == (expected, n - expected), (fraction, n)


def test_split_by_prompt_keeps_one_prompt_written_two_ways_on_one_side():
    """`A cat jumps.` and `a cat  jumps` are one prompt to `prompts sample --exclude`; grouped by prompt,
    the split put them on both sides (a held-out prompt also trained on)."""
    from videolift.data.split import split_records

    variants = ["A cat jumps.", "a cat  jumps", "A CAT JUMPS .", " a cat jumps... "]
    records = [
        HRARecord(video=f"c{i}.mp4", prompt=p, ratings={"video_fidelity": {"label": "Bad", "reason": "x"}})
        for i, p in enumerate(variants)
    ]
    records += [
        HRARecord(video=f"v{i}.mp4", prompt=f"prompt {i}", ratings={"video_fidelity": {"label": "Good"}})
        for i in range(6)
    ]
    for seed in range(8):
        train, test = split_records(records, 0.5, seed, group_by="prompt")
        cats = [r for r in train if "cat" in r.prompt.lower()], [r for r in test if "cat" in r.prompt.lower()]
        assert sorted(map(len, cats)) == [0, 4], seed
        assert len(test) in (4, 3 + 4)  # 4 of 7 prompts held out: the cat's 4 and 3 others, or 4 others


def test_one_file_written_two_ways_is_one_video(tmp_path):
    """HRA files of two tools joined: "./videos/a.mp4" and "videos/a.mp4" are one video to the split,
    its ids and the stats."""
    from videolift.data.split import split_records

    lines = [
        {"video": ("./" if i % 2 else "") + f"videos//v{i // 2}.mp4", "prompt": f"p{i // 2}", "annotator": f"a{i % 2}",
         "ratings": {"video_fidelity": {"label": "Good" if i % 3 else "Bad"}}}
        for i in range(12)
    ]  # fmt: skip
    records = [HRARecord.model_validate(line) for line in lines]
    assert {r.video for r in records} == {f"videos/v{i}.mp4" for i in range(6)}
    assert len({r.video_id for r in records}) == 6
    train, test = split_records(records, 0.5, 0)
    assert not {r.video for r in train} & {r.video for r in test} and len(train) + len(test) == 12
    hra = tmp_path / "hra.jsonl"
    hra.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out = run("hra", "stats", hra, "--json")
    assert code == 0 and json.loads(out)["videos"] == 6, out


def test_outputs_that_are_inputs_or_directories_are_refused_before_anything_is_written(tmp_path):
    hra = tmp_path / "hra.jsonl"
    hra.write_text(
        json.dumps({"video": "v.mp4", "prompt": "p", "ratings": {"video_fidelity": {"label": "Good"}}}) + "\n"
    )
    before = hra.read_bytes()
    for args, said in [
        (("hra", "export", hra, "--out", hra), "is also the HRA file"),
        (("hra", "import", hra, "--out", hra), "is also the release file"),
        (("hra", "split", hra, "--test-fraction", "0.5", "--out", hra), "is a file; --out names a directory"),
    ]:
        code, out = run(*args)
        assert code != 0 and said in " ".join(out.split()) and hra.read_bytes() == before, out
    # split: a test.jsonl that cannot be written is found before train.jsonl is (re)written
    (tmp_path / "s" / "test.jsonl").mkdir(parents=True)
    code, out = run("hra", "split", hra, "--test-fraction", "0.5", "--out", tmp_path / "s")
    assert code != 0 and "test.jsonl is a directory" in out and not (tmp_path / "s" / "train.jsonl").exists()


def test_stats_export_and_split_refuse_what_validate_refuses(tmp_path):
    good = {
        "video": "a.mp4",
        "prompt": "p",
        "annotator": "x",
        "ratings": {"video_fidelity": {"label": "Good"}},
    }
    cases = [
        ({**good, "video": "b.mp4", "ratings": {}}, "line 2, field 'ratings': no rating"),
        ({**good, "annotator": "y", "video_id": "a.mp4", "video": "c.mp4"}, "line 2, field 'video'"),
    ]
    for second, message in cases:
        src = tmp_path / "hra.jsonl"
        src.write_text(json.dumps(good) + "\n" + json.dumps(second) + "\n")
        for args in (("stats",), ("export", "--out", tmp_path / "o.json"),
                     ("split", "--test-fraction", "0.5", "--out", tmp_path / "s")):  # fmt: skip
            code, out = run("hra", args[0], src, *args[1:])
            assert code != 0 and message in " ".join(out.split()), (args, out)
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize(("n", "fraction", "n_test"), [(10, 0.25, 3), (3, 0.5, 2), (4, 0.5, 2)])
def test_the_test_share_is_rounded_up(n, fraction, n_test):
    """docs/formats.md: the held-out share of the videos is rounded up (never below one video, never all)."""
    from videolift.data.split import split_records

    records = [
        HRARecord(video=f"v{i}.mp4", prompt=f"p{i}", ratings={SC: {"label": "Good"}}) for i in range(n)
    ]
    train, test = split_records(records, fraction, seed=0)
    assert len(test) == n_test and len(train) == n - n_test


def test_records_without_an_annotator_are_each_kept(tmp_path):
    """Anonymous records (an imported set without rater ids) of one video are separate ratings, not a
    rater's second record of it."""
    from videolift.data.hra_file import read_hra

    record = HRARecord(video="v.mp4", prompt="a dog", ratings={SC: {"label": "Good"}})
    path = tmp_path / "hra.jsonl"
    path.write_text((json.dumps(record.to_json()) + "\n") * 2)
    assert len(read_hra(path)) == 2


def test_paths_in_square_brackets_are_printed_as_written(tmp_path, monkeypatch):
    """File names were printed as rich markup: "data/[v2]/hra.jsonl" as "data//hra.jsonl", and a "[/x]"
    in a path raised rich's MarkupError after the work was done (import, split) or instead of the report
    (validate, stats)."""
    monkeypatch.chdir(tmp_path)  # short relative paths: none is wrapped
    src, root = Path("lift.json"), Path("[/x]", "[v2]")
    root.mkdir(parents=True)
    src.write_text(json.dumps(RELEASE))
    hra = root / "hra.jsonl"
    for args in (
        ("import", src, "--format", "lift", "--out", hra),
        ("validate", hra),
        ("stats", hra),
        ("split", hra, "--test-fraction", "0.5", "--out", root / "split"),
        ("export", hra, "--out", root / "lift.json"),
    ):
        code, said = run("hra", *args)
        assert code == 0 and "[/x]/[v2]/" in said, (args, said)
    bad = root / "bad [b]x.jsonl"
    bad.write_text('{"video": "[red]a.mp4"}\n')
    code, said = run("hra", "validate", bad)
    said = " ".join(said.split())
    assert code == 1 and f"✗ {bad}, line 1" in said and f"1 error(s) in {bad}" in said, said
