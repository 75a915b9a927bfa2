"""The toy VLM pretraining: caption parsing and scoring, and the command on a shortened schedule."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from videolift.toy.caption_check import (
    caption_accuracy,
    caption_fields,
    clause_table,
)
from videolift.toy.corpus import plan
from videolift.toy.defects import shown_spec
from videolift.toy.pretrain_cli import pretrain_vlm_command


def _captions(n: int = 60) -> list[str]:
    return [item.record("")["caption"] for item in plan(n, defect_rate=0.7, seed=5, split=None)]


def test_every_caption_parses_back_to_its_clip() -> None:
    clauses = clause_table()
    for item in plan(80, defect_rate=0.7, seed=5, split=None):
        record = item.record("")
        fields = caption_fields(record["caption"], clauses)
        assert fields is not None and fields["unknown_clauses"] == 0, record["caption"]
        shown = shown_spec(item.spec, item.defects)
        assert fields["subjects"] == [(s.colour, s.shape) for s in shown.subjects]
        assert (fields["action"], fields["scene"], fields["count"]) == (
            shown.action,
            shown.scene,
            shown.count,
        )
        # The clauses of each dimension name exactly the injected defect at its severity.
        for dim in ("motion_smoothness", "video_fidelity"):
            injected = {(d.kind, d.severity) for d in item.defects if d.dimension.value == dim}
            assert fields["defects"][dim] == injected, record["caption"]


def test_caption_accuracy_scores_each_field() -> None:
    truths = _captions()
    perfect = caption_accuracy(truths, truths)
    assert all(v == 1.0 for k, v in perfect.items() if k != "clips")
    # Swap the colour words red <-> blue: only colour (and exact match) may drop.
    swapped = [t.replace("red", "@").replace("blue", "red").replace("@", "blue") for t in truths]
    scores = caption_accuracy(truths, swapped)
    assert scores["colour"] < 0.8 and scores["shape"] == scores["action"] == scores["scene"] == 1.0
    # Dropping the defect clauses keeps the sentence but loses the motion/fidelity findings.
    plain = [t.split(";")[0] for t in truths]
    scores = caption_accuracy(truths, plain)
    assert (
        scores["colour"] == 1.0
        and scores["motion_smoothness_label"] < 1.0
        and scores["video_fidelity_label"] < 1.0
    )
    garbage = caption_accuracy(truths, ["red red red"] * len(truths))
    assert garbage["parsed"] == 0.0 and garbage["colour"] == 0.0 and garbage["motion_smoothness_label"] == 0.0


def _args(out) -> list[str]:
    return [
        "--out",
        str(out),
        "--vision-steps",
        "3",
        "--steps",
        "3",
        "--train-videos",
        "12",
        "--eval-videos",
        "4",
        "--no-progress",
    ]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(pretrain_vlm_command)
    return app


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy_vlm") / "vlm"
    result = CliRunner().invoke(_app(), _args(out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result.output


def test_rerun_after_training_only_repeats_the_checks(pretrained) -> None:
    out, _ = pretrained
    weights = (out / "model.safetensors").read_bytes()
    (out / "pretrain_report.json").unlink()  # as if killed while captioning
    result = CliRunner().invoke(_app(), _args(out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "already holds the trained model" in result.output
    assert (out / "model.safetensors").read_bytes() == weights
    report = json.loads((out / "pretrain_report.json").read_text())
    assert report["steps"] == 3 and report["heldout"]["clips"] == 4


def test_pretrain_vlm_command_saves_a_plain_transformers_vlm(pretrained) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out, output = pretrained
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.model_type == "qwen2_vl" and processor.video_processor is not None
    # Toy words are whole tokens: a caption costs about one token per word.
    caption = "a red circle moves left in a sand desert; it pauses for a moment"
    assert len(processor.tokenizer(caption)["input_ids"]) <= len(caption.split()) + 2
    assert not (out / "corpus").exists() and not (out / "checkpoints").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["loss"] > 0 for r in log)
    vision_log = [json.loads(line) for line in (out / "vision_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in vision_log] == [1, 3] and all(r["motion"] > 0 for r in vision_log)
    assert "caption accuracy" in output


def test_pretrain_report_has_caption_accuracies(pretrained) -> None:
    out, _ = pretrained
    report = json.loads((out / "pretrain_report.json").read_text())
    heldout = report["heldout"]
    assert heldout["clips"] == 4 and report["steps"] == 3
    for field in (
        "colour",
        "shape",
        "count",
        "action",
        "scene",
        "motion_smoothness_label",
        "video_fidelity_label",
    ):
        assert 0.0 <= heldout[field] <= 1.0
    assert report["chance"]["colour"] == 0.25 and len(report["examples"]) == 4
    for dim in ("motion_smoothness", "video_fidelity"):
        assert 0.0 <= report["defects"][dim]["label_accuracy"] <= 1.0
    assert set(report["vision_probe"]) >= {"colours", "shapes", "action", "motion", "fidelity"}
    config = json.loads((out / "pretrain_config.json").read_text())
    assert config["steps_run"] == 3 and config["vision_steps_run"] == 3 and config["num_frames"] == 9


def test_pretrain_vlm_refuses_an_out_holding_another_run_before_any_work(tmp_path) -> None:
    # --out naming another run's directory (a critic's) deleted its checkpoints, logs and model files
    # (the caption stage replaces its own run there), unsaid.
    out = tmp_path / "critic"
    (out / "checkpoints" / "step-100").mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"someone's weights")
    result = CliRunner().invoke(_app(), _args(out))
    assert result.exit_code == 1, result.output
    assert "not a toy VLM written by `videolift toy pretrain-vlm`" in result.output
    assert (out / "checkpoints" / "step-100").is_dir() and not (out / "corpus").exists()
    assert (out / "model.safetensors").read_bytes() == b"someone's weights"


def test_a_rerun_that_only_checks_renders_no_train_split_clips(pretrained, monkeypatch) -> None:
    # A rerun on a finished OUT said it only repeats the checks, yet rendered every train-split clip
    # first (8,000 at the defaults, about 1.5 min here) for nothing.
    import videolift.toy.corpus as corpus

    out, _ = pretrained
    rendered: list[str] = []
    write_corpus = corpus.write_corpus
    monkeypatch.setattr(
        corpus, "write_corpus", lambda items, d, **kw: rendered.append(d.name) or write_corpus(items, d, **kw)
    )
    result = CliRunner().invoke(_app(), _args(out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "already holds the trained model" in result.output and rendered == ["heldout"]


def _manifest_prompts(split_dir) -> list[str]:
    return [json.loads(line)["prompt"] for line in (split_dir / "manifest.jsonl").read_text().splitlines()]


def test_a_kept_corpus_of_other_settings_is_rendered_again(tmp_path) -> None:
    # With --keep-corpus, a rerun into the same OUT with another --seed trained and checked on the clips
    # rendered for the first seed, unsaid (and another --eval-videos stopped with "delete it").
    out = tmp_path / "vlm"

    def run(*more: str) -> str:
        result = CliRunner().invoke(_app(), [*_args(out), "--keep-corpus", *more])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    def assert_rendered(split: str, n: int, seed: int) -> None:
        planned = [item.spec.text for item in plan(n, defect_rate=0.5, seed=seed, split=split)]
        assert _manifest_prompts(out / "corpus" / split) == planned
        videos = sorted(p.name for p in (out / "corpus" / split / "videos").iterdir())
        assert videos == [f"toy-{i:06d}.mp4" for i in range(n)]

    run()
    output = run("--seed", "1")
    assert "seed: 0 then, 1 now" in output and "seed: 1 then, 2 now" in output
    assert_rendered("train", 12, 1)
    assert_rendered("heldout", 4, 2)
    output = run("--seed", "1", "--eval-videos", "3")
    assert "videos: 4 then, 3 now" in output
    assert_rendered("heldout", 3, 2)
    assert json.loads((out / "pretrain_report.json").read_text())["heldout"]["clips"] == 3
    # The same settings again: the kept clips are reused.
    output = run("--seed", "1", "--eval-videos", "3")
    assert "reusing the 3 heldout-split clips" in output and "rendering" not in output


def test_minutes_reports_the_updates_run_and_a_rerun_without_them_trains_again(tmp_path) -> None:
    # The report's total_minutes counted the training twice (its minutes plus the whole run's, which holds
    # them); and a rerun without --minutes (or with another budget) kept the model fitted to the old
    # budget, saying it "already holds the trained model of this configuration".
    import time

    out = tmp_path / "vlm"
    started = time.time()
    result = CliRunner().invoke(_app(), [*_args(out), "--minutes", "0.05"])
    elapsed = (time.time() - started) / 60
    assert result.exit_code == 0, result.output + repr(result.exception)
    report = json.loads((out / "pretrain_report.json").read_text())
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    vision_log = [json.loads(line) for line in (out / "vision_log.jsonl").read_text().splitlines()]
    assert report["steps"] == len(log) == log[-1]["step"]
    assert report["vision_steps"] == vision_log[-1]["step"]
    assert f"{report['vision_steps']} vision-encoder and {report['steps']} caption updates" in result.output
    assert report["train_minutes"] <= report["total_minutes"] <= elapsed + 0.01
    result = CliRunner().invoke(_app(), _args(out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "minutes: 0.05 then, None now" in result.output and "already holds" not in result.output
    report = json.loads((out / "pretrain_report.json").read_text())
    assert report["steps"] == report["vision_steps"] == 3
