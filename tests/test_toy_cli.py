import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from videolift.cli import app
from videolift.core.jsonl import iter_json_lines, read_jsonl
from videolift.core.schema import DIMENSIONS, HRARecord
from videolift.core.video import probe_video
from videolift.toy.grammar import parse_prompt, split_specs


def run(*args, fails: bool | int = False):
    """The output of ``videolift ARGS``, which exits 0, or 1 when ``fails`` (2: a usage error)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == int(fails), result.output
    return " ".join(result.output.split())


def test_prompts_jsonl_and_txt(tmp_path):
    run("toy", "prompts", "--split", "heldout", "--out", tmp_path / "held.jsonl")
    held = [obj for _, obj in iter_json_lines(tmp_path / "held.jsonl")]
    assert len(held) == len(split_specs("heldout"))
    assert all(parse_prompt(r["prompt"]).split == "heldout" == r["split"] for r in held)
    assert {"layout", "count", "action", "scene"} <= set(held[0])
    run("toy", "prompts", "--split", "train", "--n", 25, "--seed", 1, "--out", tmp_path / "train.txt")
    lines = (tmp_path / "train.txt").read_text().splitlines()
    assert len(set(lines)) == 25 and all(parse_prompt(x).split == "train" for x in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--split", "test"), "--split must be one of train, heldout"),
        (("--split", "train", "--n", 0), "--n must be at least 1"),
        (("--split", "heldout", "--n", 10**6), "has only"),
    ],
)
def test_prompts_bad_input(tmp_path, args, message):
    assert message in run("toy", "prompts", *args, "--out", tmp_path / "p.jsonl", fails=2)
    assert not (tmp_path / "p.jsonl").exists()
    assert "use .jsonl or .txt" in run(
        "toy", "prompts", "--split", "train", "--out", tmp_path / "p.csv", fails=2
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "corpus"
    run("toy", "corpus", "--n", 12, "--out", out, "--defect-rate", 0.5, "--seed", 3, "--no-progress")
    return out


def test_corpus_has_videos_manifest_and_every_label(corpus):
    records = [obj for _, obj in iter_json_lines(corpus / "manifest.jsonl")]
    assert len(records) == 12
    for r in records:
        assert {"video_id", "video", "prompt", "truth", "defects", "seed", "caption", "shown"} <= set(r)
        assert probe_video(corpus / r["video"]).num_frames == 9
        assert parse_prompt(r["prompt"]).split == "train"
    for dim in DIMENSIONS:
        assert {r["truth"][dim.value] for r in records} == {"Good", "Normal", "Bad"}
    assert "already exists" in run("toy", "corpus", "--n", 2, "--out", corpus, fails=True)


def test_rate_with_the_oracle_recovers_the_truth(corpus, tmp_path):
    out = tmp_path / "oracle.jsonl"
    scores = tmp_path / "oracle_scores.jsonl"
    printed = run("toy", "rate", "--manifest", corpus / "manifest.jsonl", "--videos", corpus, "--out", out,
                  "--oracle", "--no-progress", "--scores-out", scores)  # fmt: skip
    records = read_jsonl(out, HRARecord)
    assert len(records) == 12 and {r.annotator for r in records} == {"oracle"}
    for r in records:
        assert {d.value: rating.label.value for d, rating in r.ratings.items()} == r.truth  # carried along
        assert r.video_id.startswith("toy-") and r.defects is not None
    assert "oracle vs truth (12 videos with truth): motion_smoothness 1.000" in printed
    assert f"as critic scores, to {scores}" in printed  # the second file written, said too
    # The same ratings as a perfect critic's scores file, as `videolift align` reads it.
    from videolift.core.scores import read_scores

    scored = read_scores(scores)
    score_of = {"Good": 0.9, "Normal": 0.2, "Bad": 0.05}  # the default mapping, mean over dimensions
    for r, s in zip(records, scored, strict=True):
        assert (s.video, s.prompt) == (r.video, r.prompt)
        assert s.labels == {d.value: rating.label.value for d, rating in r.ratings.items()}
        assert s.reward == pytest.approx(sum(score_of[label] for label in s.labels.values()) / 3)
    assert "needs --oracle" in run("toy", "rate", "--manifest", corpus / "manifest.jsonl", "--videos", corpus,
                                   "--out", tmp_path / "p.jsonl", "--scores-out", scores, fails=2)  # fmt: skip
    reward_yaml = tmp_path / "reward.yaml"
    reward_yaml.write_text("aggregation: mean\n")
    assert "only used with --scores-out" in run("toy", "rate", "--manifest", corpus / "manifest.jsonl", "--videos",
                                                corpus, "--out", tmp_path / "q.jsonl", "--oracle",
                                                "--reward-config", reward_yaml, fails=2)  # fmt: skip
    assert not (tmp_path / "q.jsonl").exists()


def test_rate_killed_between_ratings_and_scores_keeps_the_old_pair_whole(corpus, tmp_path, monkeypatch):
    # Never old scores beside new ratings; and --overwrite deleted the old scores first, so a kill there
    # left new ratings without any scores.
    from videolift.core import jsonl

    args = ["toy", "rate", "--manifest", corpus / "manifest.jsonl", "--videos", corpus, "--oracle",
            "--no-progress", "--out", tmp_path / "r.jsonl", "--scores-out", tmp_path / "s.jsonl"]  # fmt: skip
    run(*args)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    writes = jsonl.write_jsonl

    def killed_at_scores(path, records):
        if "s.jsonl" in path.name:  # (the file's own name, or its temporary one beside it)
            raise RuntimeError("killed")  # the process dies here
        return writes(path, records)

    monkeypatch.setattr(jsonl, "write_jsonl", killed_at_scores)
    with pytest.raises(RuntimeError, match="killed"):
        run(*args, "--overwrite")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # byte for byte, nothing beside


def test_oracle_scores_line_is_a_critic_line_without_the_manifest_fields_a_scorer_writes():
    from videolift.core.reward import RewardConfig
    from videolift.toy.rate import _score_line

    # A manifest's own "error" carried along would read as an unreadable video, as in `critic score`.
    ratings = {d.value: {"label": "Good", "reason": ""} for d in DIMENSIONS}
    record = HRARecord(video="v.mp4", prompt="a red circle", annotator="oracle", ratings=ratings, seed=3,
                       error="old", description="theirs", check="theirs")  # fmt: skip
    scored = {d.value: {"label": "Good", "reason": "", "score": 0.9} for d in DIMENSIONS}
    assert _score_line(record, RewardConfig()) == {
        "video_id": "v.mp4", "video": "v.mp4", "prompt": "a red circle", "seed": 3, "ratings": scored, "reward": 0.9
    }  # fmt: skip


def test_rate_with_a_panel_is_seeded_and_has_several_annotators(corpus, tmp_path):
    args = ["toy", "rate", "--manifest", corpus / "manifest.jsonl", "--videos", corpus, "--annotators", 4,
            "--seed", 9, "--no-progress"]  # fmt: skip
    run(*args, "--out", tmp_path / "a.jsonl")
    run(*args, "--out", tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    records = read_jsonl(tmp_path / "a.jsonl", HRARecord)
    assert {r.annotator for r in records} == {"sim-01", "sim-02", "sim-03", "sim-04"}
    assert 12 * 3 <= len(records) <= 12 * 4
    assert all(rating.reason for r in records for rating in r.ratings.values())
    assert "alpha" in run("hra", "stats", tmp_path / "a.jsonl")


def test_rate_bad_input_names_file_line_and_field(corpus, tmp_path):
    lines = (corpus / "manifest.jsonl").read_text().splitlines()
    broken = tmp_path / "m.jsonl"
    missing = {**json.loads(lines[1]), "video": "videos/nope.mp4"}
    broken.write_text("\n".join([lines[0], json.dumps(missing)]) + "\n")
    out = tmp_path / "hra.jsonl"
    msg = run(
        "toy", "rate", "--manifest", broken, "--videos", corpus, "--out", out, "--no-progress", fails=True
    )
    assert "m.jsonl, line 2, field 'video'" in msg and "file not found" in msg
    assert not out.exists()
    broken.write_text(json.dumps({**json.loads(lines[0]), "prompt": "a cat sleeps"}) + "\n")
    msg = run(
        "toy", "rate", "--manifest", broken, "--videos", corpus, "--out", out, "--no-progress", fails=True
    )
    assert "line 1, field 'prompt'" in msg and "not a toy-world prompt" in msg
    broken.write_text(json.dumps({"prompt": "a red circle moves left in a sand desert"}) + "\n")
    assert "field 'video'" in run(
        "toy", "rate", "--manifest", broken, "--videos", corpus, "--out", out, fails=True
    )
    assert "not a directory" in run("toy", "rate", "--manifest", broken, "--videos", tmp_path / "x", "--out", out,
                                    fails=True)  # fmt: skip
    broken.write_text(lines[0] + "\n" + lines[0] + "\n")  # a line pasted twice: two oracle records of a video
    assert "line 2, field 'video'" in run("toy", "rate", "--manifest", broken, "--videos", corpus, "--out", out,
                                          "--oracle", fails=True)  # fmt: skip
    broken.write_text(
        json.dumps({**json.loads(lines[0]), "video_id": None}) + "\n"
    )  # null: the path stands in
    run("toy", "rate", "--manifest", broken, "--videos", corpus, "--out", out, "--oracle", "--no-progress")
    assert json.loads(out.read_text())["video_id"] == json.loads(lines[0])["video"]
    out.unlink()
    good = tmp_path / "good.jsonl"
    good.write_text(lines[0] + "\n")
    for doubt in ("0.5", "nan"):  # a NaN would take any drawn shape for the asked one
        assert f"--shape-doubt {doubt}: must be a number >= 1.0" in run("toy", "rate", "--manifest", good, "--videos",
                                             corpus, "--out", out, "--oracle", "--shape-doubt", doubt, fails=2)  # fmt: skip
        assert not out.exists()


def test_rate_refuses_every_missing_or_unreadable_video_before_rating_any(corpus, tmp_path, monkeypatch):
    # Found only on reaching it, a bad video near the end of a 20k-video manifest cost every rating before it.
    lines = (corpus / "manifest.jsonl").read_text().splitlines()
    (corpus / "videos" / "junk.mp4").write_bytes(b"not a video")
    rows = [json.loads(x) for x in lines[:3]]
    rows[1]["video"], rows[2]["video"] = "videos/nope.mp4", "videos/junk.mp4"
    manifest, out = tmp_path / "m.jsonl", tmp_path / "hra.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def judge(*args, **kwargs):
        raise AssertionError("rated before the videos were checked")

    monkeypatch.setattr("videolift.toy.oracle.judge", judge)
    msg = run(
        "toy", "rate", "--manifest", manifest, "--videos", corpus, "--out", out, "--no-progress", fails=True
    )
    assert "2 record(s) name a missing or unreadable video" in msg
    assert "m.jsonl, line 2, field 'video'" in msg and "m.jsonl, line 3, field 'video'" in msg
    assert not out.exists()


def test_rate_refuses_an_output_under_a_file_before_rating(corpus, tmp_path, monkeypatch):
    # It was found on writing, after every video was rated, naming a hidden temporary file.
    monkeypatch.setattr("videolift.toy.oracle.judge", lambda *a, **k: pytest.fail("rated"))
    (tmp_path / "f").write_text("mine\n")
    manifest = corpus / "manifest.jsonl"
    for extra in (["--out", tmp_path / "f" / "h.jsonl"], ["--out", tmp_path / "o" / "h.jsonl", "--oracle",
                                                           "--scores-out", tmp_path / "f" / "s.jsonl"]):  # fmt: skip
        said = run(
            "toy", "rate", "--manifest", manifest, "--videos", corpus, *extra, "--no-progress", fails=True
        )
        assert f"{tmp_path / 'f'} is a file, not a directory" in said and ".tmp" not in said
    assert not (tmp_path / "o").exists() and (tmp_path / "f").read_text() == "mine\n"


def test_rate_counts_agreement_over_the_videos_with_truth_and_refuses_a_bad_truth_or_clip(corpus, tmp_path):
    lines = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()[:4]]
    manifest, out = tmp_path / "m.jsonl", tmp_path / "hra.jsonl"
    without = [{k: v for k, v in r.items() if k != "truth"} for r in lines[2:]]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines[:2] + without))
    printed = run(
        "toy", "rate", "--manifest", manifest, "--videos", corpus, "--out", out, "--oracle", "--no-progress"
    )
    assert "oracle vs truth (2 videos with truth): motion_smoothness 1.000" in printed  # not 2 of 4: 0.500
    other = {**lines[0], "truth": {"color": "red"}}  # a truth of another kind is only carried along
    partial = {**lines[1], "truth": {"video_fidelity": lines[1]["truth"]["video_fidelity"]}}
    manifest.write_text(json.dumps(other) + "\n" + json.dumps(partial) + "\n")
    out.unlink()
    printed = run(
        "toy", "rate", "--manifest", manifest, "--videos", corpus, "--out", out, "--oracle", "--no-progress"
    )
    assert (
        "oracle vs truth (1 videos with truth): video_fidelity 1.000" in printed and "motion" not in printed
    )
    assert json.loads(out.read_text().splitlines()[0])["truth"] == {"color": "red"}
    bad = {**lines[0], "truth": {**lines[0]["truth"], "motion_smoothness": "fine"}}
    manifest.write_text(json.dumps(bad) + "\n")
    out.unlink()
    msg = run("toy", "rate", "--manifest", manifest, "--videos", corpus, "--out", out, "--oracle", fails=True)
    assert (
        "line 1, field 'truth.motion_smoothness'" in msg
        and "unknown label 'fine'" in msg
        and not out.exists()
    )
    from videolift.core.video import read_video, write_video

    write_video(corpus.parent / "short.mp4", read_video(corpus / lines[0]["video"])[:3], fps=8)
    manifest.write_text(json.dumps({**lines[0], "video": "../short.mp4", "video_id": "short"}) + "\n")
    msg = run("toy", "rate", "--manifest", manifest, "--videos", corpus, "--out", out, "--oracle", fails=True)
    assert (
        "line 1, field 'video'" in msg and "9 frames of 48x48 RGB, got 3x48x48x3" in msg and not out.exists()
    )


def test_rate_takes_an_integer_video_id_as_critic_score_does(corpus, tmp_path):
    manifest, out = tmp_path / "m.jsonl", tmp_path / "hra.jsonl"
    first = json.loads((corpus / "manifest.jsonl").read_text().splitlines()[0])
    manifest.write_text(json.dumps({**first, "video_id": 7}) + "\n")  # refused before: "expected a string"
    run("toy", "rate", "--manifest", manifest, "--videos", corpus, "--out", out, "--oracle", "--no-progress")
    assert [r.video_id for r in read_jsonl(out, HRARecord)] == ["7"]


def test_rate_refuses_an_output_that_is_its_input_or_its_other_output(corpus, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text((corpus / "manifest.jsonl").read_text().splitlines()[0] + "\n")
    before = manifest.read_text()
    said = run(
        "toy",
        "rate",
        "--manifest",
        manifest,
        "--videos",
        corpus,
        "--out",
        manifest,
        "--no-progress",
        fails=2,
    )
    assert f"--out {manifest} is also --manifest" in said and manifest.read_text() == before
    out = tmp_path / "r.jsonl"
    said = run("toy", "rate", "--manifest", manifest, "--videos", corpus, "--out", out, "--oracle",
               "--scores-out", out, "--no-progress", fails=2)  # fmt: skip
    assert f"--scores-out {out} is also --out" in said and not out.exists()


def test_corpus_overwrite_keeps_the_old_corpus_until_the_new_one_is_rendered(tmp_path, monkeypatch):
    """--overwrite deleted the old corpus before rendering, so a run killed while rendering left neither
    corpus; it must never leave the old manifest beside new videos (rated against the old truth), and a
    smaller --n must not leave the old corpus's extra videos."""
    from videolift.toy import corpus as corpus_module

    out = tmp_path / "c"
    run("toy", "corpus", "--n", 4, "--out", out, "--seed", 7, "--no-progress")
    (out / "hra.jsonl").write_text("not the corpus's\n")  # another file there is none of its business
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rendered = []
    writes = corpus_module.write_video

    def killed_at_the_second(path, frames, **kw):
        if rendered:
            raise KeyboardInterrupt  # the process dies while rendering
        rendered.append(path)
        return writes(path, frames, **kw)

    monkeypatch.setattr(corpus_module, "write_video", killed_at_the_second)
    result = CliRunner().invoke(
        app, ["toy", "corpus", "--n", "2", "--out", str(out), "--seed", "8", "--overwrite", "--no-progress"]
    )
    assert result.exit_code != 0 and rendered  # (click: "Aborted!")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    monkeypatch.undo()
    run("toy", "corpus", "--n", 2, "--out", out, "--seed", 8, "--overwrite", "--no-progress")
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["toy-000000.mp4", "toy-000001.mp4"]
    assert (out / "manifest.jsonl").read_bytes() != before[Path("manifest.jsonl")]
    assert (out / "hra.jsonl").read_text() == "not the corpus's\n"
    assert sorted(p.name for p in out.iterdir()) == [".lock", "hra.jsonl", "manifest.jsonl", "videos"]


def test_corpus_clears_what_killed_runs_left_but_never_a_live_runs_or_other_files(tmp_path):
    """SIGTERM or kill -9 skip the temporaries' cleanup: each killed run left hidden files in videos/."""
    from videolift.core.files import lock_run

    out = tmp_path / "c"
    (out / "videos").mkdir(parents=True)
    leftovers = [
        "videos/.toy-000007.mp4.0a1b2c3d.tmp",  # a finished video of the killed run
        "videos/..toy-000008.mp4.0a1b2c3d.partial.tmp",  # the one write_video was writing
        "videos/.first-000001.mp4.ffffffff.tmp",  # a pretraining corpus's
        ".manifest.jsonl.0a1b2c3d.tmp",
        "..manifest.jsonl.0a1b2c3d.tmp.k2_x9abc.tmp",
    ]
    others = ["videos/.mine.mp4.tmp", "videos/.toy-1.mp4.draft.tmp", ".notes.tmp", "videos/x.mp4"]
    for name in leftovers + others:
        (out / name).write_bytes(b"x")
    held = lock_run(out, "videolift toy corpus")  # a live run: its temporaries are not to be touched
    try:
        assert "in use by another `videolift toy corpus` run" in run(
            "toy", "corpus", "--n", 2, "--out", out, "--no-progress", fails=True
        )
        assert all((out / name).exists() for name in leftovers)
    finally:
        held.close()
    run("toy", "corpus", "--n", 2, "--out", out, "--no-progress")
    assert [name for name in leftovers if (out / name).exists()] == []
    assert all((out / name).read_bytes() == b"x" for name in others)


def test_corpus_refuses_a_file_and_another_tools_folder_before_rendering(tmp_path):
    """--out a file failed after rendering began ("Not a directory"); --overwrite into `generate`'s folder
    replaced its manifest, orphaning its videos."""
    (tmp_path / "tp.txt").write_text("prompts\n")
    said = run("toy", "corpus", "--n", 3, "--out", tmp_path / "tp.txt", "--no-progress", fails=True)
    assert "exists and is not a directory" in said and (tmp_path / "tp.txt").read_text() == "prompts\n"
    # Under a file: it failed once rendering began, naming a hidden temporary video instead of --out.
    said = run("toy", "corpus", "--n", 3, "--out", tmp_path / "tp.txt" / "c", "--no-progress", fails=True)
    assert f"--out {tmp_path / 'tp.txt' / 'c'}: {tmp_path / 'tp.txt'} is a file, not a directory" in said
    assert ".tmp" not in said
    gen = tmp_path / "gen"
    (gen / "videos").mkdir(parents=True)
    line = json.dumps({"video": "videos/000000.mp4", "prompt": "a red circle moves left", "seed": 1})
    (gen / "manifest.jsonl").write_text(line + "\n")
    for marker in (True, False):  # with generate's settings file, and a manifest without ground truth
        (gen / "generation.json").write_text("{}") if marker else (gen / "generation.json").unlink()
        said = run("toy", "corpus", "--n", 3, "--out", gen, "--overwrite", "--no-progress", fails=True)
        assert "--overwrite replaces a toy corpus only" in said
        assert (gen / "manifest.jsonl").read_text() == line + "\n" and not list((gen / "videos").iterdir())


@pytest.mark.parametrize(
    "args",
    [
        ["hra", "validate", "x.jsonl", "--max-errors", "0"],  # listed no error and passed the file
        ["prompts", "sample", "--n", "3", "--out", "x.jsonl", "--batch-size", "0"],
        ["prompts", "sample", "--n", "3", "--out", "x.jsonl", "--max-new-tokens", "0"],
        ["prompts", "sample", "--n", "3", "--out", "x.jsonl", "--temperature", "-1"],
        ["toy", "pretrain-vlm", "--out", "m", "--threads", "0"],
        ["toy", "pretrain-vlm", "--out", "m", "--train-videos", "0"],
        ["toy", "pretrain-vlm", "--out", "m", "--steps", "-1"],
        ["toy", "pretrain-vlm", "--out", "m", "--minutes", "0"],
        ["toy", "pretrain", "--out", "m", "--steps", "0"],
        ["toy", "pretrain", "--out", "m", "--minutes", "nan"],
        # A negative seed raised numpy's "expected non-negative integer" (a traceback), pretrain-vlm's
        # after creating OUT/corpus, probe-t2v's after loading the model.
        ["toy", "pretrain-vlm", "--out", "m", "--seed", "-1"],
        ["toy", "pretrain", "--out", "m", "--seed", "-1"],
        ["toy", "probe-t2v", "--model", "m", "--seed", "-1"],
        ["toy", "prompts", "--split", "train", "--n", "3", "--out", "x.txt", "--seed", "-1"],
        ["toy", "corpus", "--n", "3", "--out", "c", "--seed", "-1"],
        ["toy", "rate", "--manifest", "m.jsonl", "--videos", ".", "--out", "x.jsonl", "--seed", "-1"],
    ],
)
def test_counts_out_of_range_are_refused_by_name_before_any_work(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    option = args[-2]
    assert result.exit_code == 2 and f"'{option}'" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_sigterm_cleans_up_as_ctrl_c_does(tmp_path):
    """A scheduler's stop (SIGTERM) ended the process at once: no cleanup ran, so a stopped `toy corpus`
    left its hidden temporaries (556 after 5 s) and said nothing. Now it takes Ctrl-C's path."""
    import os
    import subprocess
    import sys

    from sigterm import sigterm_when

    out = tmp_path / "c"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "videolift", "toy", "corpus", "--n", 5000, "--out", out, "--no-progress"]
    proc = subprocess.Popen(
        [str(c) for c in command], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    said = sigterm_when(proc, lambda: (out / "videos").is_dir() and any((out / "videos").iterdir()))
    assert proc.returncode == 143, said
    assert "Terminated (SIGTERM): nothing half-written is kept" in said and "Traceback" not in said
    assert [p.name for p in out.rglob("*.tmp")] == []
