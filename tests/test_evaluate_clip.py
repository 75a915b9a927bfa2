"""`videolift eval --clip MODEL`: CLIPSIM and CLIP temporal consistency, on a tiny CLIP built from configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tiny_clip import build_tiny_clip
from videolift.cli import app
from videolift.core.video import write_video

TOY = ("--height", "48", "--width", "48")
PROMPTS = "a red circle moves left in a sand desert\ntwo blue squares bounce on a snow field\n"


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def _video(path: Path, frames: np.ndarray) -> Path:
    write_video(path, frames, fps=8, crf=0, pix_fmt="yuv444p")  # lossless: a still video stays still
    return path


def test_clip_scores_are_the_direct_computation_and_a_still_video_is_consistent(tmp_path, tiny_clip_dir):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    from videolift.core.video import read_video, sample_indices
    from videolift.evaluate.clip_score import CLIP_FRAMES, load_clip, sampled_frames

    rng = np.random.default_rng(0)
    noisy = _video(tmp_path / "noise.mp4", rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8))
    still = _video(tmp_path / "still.mp4", np.repeat(rng.integers(0, 256, (1, 32, 32, 3), np.uint8), 20, 0))
    scorer = load_clip(str(tiny_clip_dir), "cpu")
    prompt = "a red circle moves left " * 20  # > 77 tokens: cut there
    got = scorer.scores(sampled_frames(noisy), prompt)
    assert got["prompt_truncated"] is True

    # The same by hand: 16 frames spread uniformly over the 20, CLIP's own features, cosine similarities.
    model, processor = (
        CLIPModel.from_pretrained(tiny_clip_dir).eval(),
        CLIPProcessor.from_pretrained(tiny_clip_dir),
    )
    frames = read_video(noisy)[sample_indices(20, CLIP_FRAMES)]
    with torch.no_grad():
        text = model.get_text_features(
            **processor.tokenizer([prompt], truncation=True, max_length=77, return_tensors="pt")
        ).pooler_output
        image = model.get_image_features(
            pixel_values=processor(images=list(frames), return_tensors="pt")["pixel_values"]
        ).pooler_output
    text, image = (torch.nn.functional.normalize(x, dim=-1) for x in (text, image))
    assert got["clipsim"] == pytest.approx(float((image @ text[0]).mean()), abs=1e-6)
    assert got["temporal_consistency"] == pytest.approx(
        float((image[1:] * image[:-1]).sum(-1).mean()), abs=1e-6
    )

    assert scorer.scores(sampled_frames(still), "a still")["temporal_consistency"] == pytest.approx(
        1.0, abs=1e-5
    )
    assert got["temporal_consistency"] < 0.999
    # A clip shorter than 16 frames gives each frame once (repeats would count as frames that did not move).
    assert len(sampled_frames(_video(tmp_path / "short.mp4", read_video(noisy)[:9]))) == 9


def test_identical_videos_differ_by_exactly_nothing(tmp_path, tiny_clip_dir):
    from videolift.evaluate.clip_score import rate_by_clip

    rng = np.random.default_rng(1)
    (tmp_path / "a").mkdir()
    records = []
    for i, prompt in enumerate(["a red circle", "a red circle", "a blue square"]):
        _video(tmp_path / "a" / f"{i}.mp4", rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
        records.append({"video": f"{i}.mp4", "prompt": prompt, "seed": i})
    (tmp_path / "a" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    clusters = [r["prompt"] for r in records]
    clip = rate_by_clip(["a", "b"], str(tiny_clip_dir), tmp_path, "cpu", clusters, progress=False)
    assert clip["paired"]["b vs a"]["clipsim"] == {"diff": 0.0, "se": 0.0, "pairs": 3}
    assert clip["per_model"]["a"] == clip["per_model"]["b"] and clip["per_model"]["a"]["n"] == 3


def test_eval_clip_writes_its_scores_and_a_rerun_reuses_them(
    tmp_path, tiny_cogvideox_dir, tiny_clip_dir, monkeypatch
):
    import videolift.evaluate.clip_score as clip_score

    prompts = tmp_path / "p.txt"
    prompts.write_text(PROMPTS)
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_cogvideox_dir), "--model", f"b={tiny_cogvideox_dir}", "--prompts",
            str(prompts), *TOY, "--lossless", "--steps", "1", "--out", str(out), "--no-progress",
            "--clip", str(tiny_clip_dir)]  # fmt: skip
    calls = {"load": 0, "scores": 0}
    load, scores = clip_score.load_clip, clip_score.ClipScorer.scores

    def counted_load(*a, **k):
        calls["load"] += 1
        return load(*a, **k)

    def counted_scores(self, *a, **k):
        calls["scores"] += 1
        return scores(self, *a, **k)

    monkeypatch.setattr(clip_score, "load_clip", counted_load)
    monkeypatch.setattr(clip_score.ClipScorer, "scores", counted_scores)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls == {"load": 1, "scores": 4}
    data = json.loads((out / "eval.json").read_text())
    names = list(data["models"])
    clip = data["clip"]
    assert clip["model"] == str(tiny_clip_dir) and clip["frames"] == 16 and clip["truncated_prompts"] == 0
    for name in names:
        m = clip["per_model"][name]
        assert m["n"] == 2 and -1 <= m["clipsim"] <= 1 and m["clipsim_se"] is not None
        assert 0 < m["temporal_consistency"] <= 1 + 1e-6
        lines = [json.loads(x) for x in (out / name / "clip_scores.jsonl").read_text().splitlines()]
        assert sum(x["clipsim"] for x in lines) / 2 == pytest.approx(m["clipsim"])
    pair = clip["paired"][f"{names[1]} vs {names[0]}"]
    assert pair["clipsim"]["pairs"] == 2 and pair["temporal_consistency"]["pairs"] == 2
    assert "CLIPSIM" in result.output and "(CLIP, paired difference ± SE)" in result.output
    assert "CLIPSIM" in (out / "report.html").read_text()

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert calls == {"load": 1, "scores": 4}  # every value reused: CLIP not even loaded
    assert json.loads((out / "eval.json").read_text())["clip"] == clip


def test_eval_refuses_a_model_that_is_not_clip_before_any_video(tmp_path, tiny_cogvideox_dir):
    prompts = tmp_path / "p.txt"
    prompts.write_text(PROMPTS)
    out = tmp_path / "eval"
    base = [
        "eval",
        "--model",
        str(tiny_cogvideox_dir),
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--steps",
        "1",
    ]
    result = CliRunner().invoke(app, [*base, "--clip", str(tiny_cogvideox_dir / "text_encoder")])  # a T5
    assert result.exit_code == 1
    assert "--clip" in result.output and "not a CLIP model" in result.output and "'t5'" in result.output
    assert not out.exists()  # before any video
    result = CliRunner().invoke(app, [*base, "--clip", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "--clip" in result.output and not out.exists()


def test_without_an_oracle_the_run_report_sets_clipsim_beside_the_critics_gain(tmp_path):
    """Outside the toy world the report said only that there is no reward-hacking guard; with
    evaluate.clip it shows CLIPSIM's paired change beside the critic's, and warns when CLIPSIM drops while
    the critic's reward rises."""
    from test_reports import Page, _run_summary, _workdir
    from videolift.pipeline.run_report import write_report

    root = _workdir(tmp_path, {"base": [("p", 1)], "aligned_rwl": [("p", 1)]})
    diff = lambda d, se: {"diff": d, "se": se, "pairs": 40}  # noqa: E731
    clip = {"model": "openai/clip-vit-large-patch14", "frames": 16, "truncated_prompts": 0,
            "per_model": {n: {"clipsim": 0.3, "clipsim_se": 0.01, "temporal_consistency": 0.95,
                              "temporal_consistency_se": 0.01, "n": 40, "unreadable": 0}
                          for n in ("base", "aligned_rwl")},
            "paired": {"aligned_rwl vs base": {"clipsim": diff(-0.02, 0.005),
                                               "temporal_consistency": diff(0.001, 0.002)}}}  # fmt: skip
    evaluation = json.loads((root / "eval.json").read_text()) | {"clip": clip}
    (root / "eval.json").write_text(json.dumps(evaluation))
    summary = _run_summary()
    del summary["align_rewards"]
    for key in ("base", "aligned_rwl"):
        summary[key] |= {"oracle_all_good_rate": None, "oracle_mean_reward": None}
    summary["differences"] = {"aligned_rwl vs base": {"critic": {"mean_reward": diff(0.05, 0.01)}}}
    summary["clip"] = clip
    page = Page(write_report(tmp_path, summary).read_text())
    (said,) = [t for t in page.warnings() if "CLIP check" in t]
    assert "critic reward change +0.050 ± 0.010, CLIPSIM change -0.0200 ± 0.0050" in said
    assert "text alignment only" in said and "more than two standard errors" in said
    assert not any("No reward-hacking guard" in t for _, t in page.paragraphs)
    assert "-0.0200 ± 0.0050" in " ".join(page.td)  # the paired table, from eval.json
    summary["clip"]["paired"]["aligned_rwl vs base"]["clipsim"] = diff(0.01, 0.005)  # both rise
    page = Page(write_report(tmp_path, summary).read_text())
    assert not any("CLIP check" in t for t in page.warnings())
    assert any("CLIP check" in t for _, t in page.paragraphs)


def test_evaluate_clip_is_a_pipeline_setting_that_reruns_only_the_evaluation(tmp_path):
    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.stages import evaluate_stage, generation_settings

    cfg = PipelineConfig(workdir=tmp_path / "w")
    assert cfg.evaluate.clip is None
    gen = generation_settings(cfg.sampler)
    without = evaluate_stage(cfg, "THUDM/CogVideoX-2b", {}, gen, False)
    assert "clip" not in without.settings  # runs recorded before the setting stay done
    cfg = PipelineConfig.model_validate(
        {"workdir": tmp_path / "w", "evaluate": {"clip": "openai/clip-vit-base-patch32"}}
    )
    named = evaluate_stage(cfg, "THUDM/CogVideoX-2b", {}, gen, False)
    assert named.settings["clip"] == "openai/clip-vit-base-patch32" and named.key() != without.key()


def test_a_local_clip_replaced_in_place_reruns_the_pipelines_evaluation(tmp_path, tiny_clip_dir):
    """The evaluate stage keyed a CLIP directory by its path alone: other files under the same path left the
    stage done, eval.json holding the old files' values."""
    import os

    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.stages import evaluate_stage, generation_settings

    clip = shutil.copytree(tiny_clip_dir, tmp_path / "clip")
    cfg = PipelineConfig.model_validate({"workdir": tmp_path / "w", "evaluate": {"clip": str(clip)}})
    gen = generation_settings(cfg.sampler)
    before = evaluate_stage(cfg, "THUDM/CogVideoX-2b", {}, gen, False).key()
    weights = next(clip.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_mtime_ns + 10**9,) * 2)  # another CLIP's weights, same path
    assert evaluate_stage(cfg, "THUDM/CogVideoX-2b", {}, gen, False).key() != before


def test_the_run_summary_carries_the_clip_scores_and_prints_their_differences(capsys):
    from videolift.pipeline.cli import print_summary
    from videolift.pipeline.run import build_summary

    pair = {"diff": -0.0123, "se": 0.004, "pairs": 4}
    clip = {"model": "clip-dir", "per_model": {}, "paired": {"aligned_rwl vs base": {"clipsim": pair,
            "temporal_consistency": {"diff": None, "se": None, "pairs": 0}}}}  # fmt: skip
    rated = {"critic": {"mean_reward": 0.5, "all_good_rate": 0.25}}
    result = {"summary": {"base": rated, "aligned_rwl": rated}, "clip": clip}
    models = {"base": ("t2v", None), "aligned_rwl": ("aligned_rwl/pipeline", None)}
    summary = build_summary(result, {}, models, 0.0)
    assert summary["clip"] == clip
    assert "clip" not in build_summary({"summary": result["summary"]}, {}, models, 0.0)
    print_summary(summary)
    shown = " ".join(capsys.readouterr().out.split())
    assert "aligned_rwl vs base (CLIP clip-dir, paired difference ± SE): CLIPSIM -0.0123 ± 0.0040" in shown
    assert "temporal consistency n/a" in shown


def test_a_run_refuses_an_evaluate_clip_that_is_not_clip_before_its_first_stage(
    tmp_path, tiny_cogvideox_dir, monkeypatch
):
    """The evaluation is the run's last stage: a wrong CLIP model was found only after hours of training."""
    import videolift.pipeline.run as run
    from videolift.core.errors import VideoliftError
    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.run import run_pipeline

    def no_stage(*a, **k):
        raise AssertionError("a stage began before evaluate.clip was checked")

    monkeypatch.setattr(run, "generate_stage", no_stage)
    clip = str(tiny_cogvideox_dir / "text_encoder")
    cfg = PipelineConfig.model_validate({"workdir": tmp_path / "w", "evaluate": {"clip": clip}})
    with pytest.raises(VideoliftError, match=r"evaluate\.clip .*not a CLIP model"):
        run_pipeline(cfg, progress=False)


def _one_video_folder(folder: Path, prompts: tuple[str, ...] = ("a red circle",)) -> list[dict]:
    """``folder`` with a random video per prompt and their manifest."""
    folder.mkdir(exist_ok=True)
    records = []
    for i, prompt in enumerate(prompts):  # video i the same whatever the others
        frames = np.random.default_rng(i).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
        _video(folder / f"{i}.mp4", frames)
        records.append({"video": f"{i}.mp4", "prompt": prompt, "seed": i})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_clip_runs_in_float32_whatever_its_checkpoint_and_other_dtypes_lines_are_not_reused(
    tmp_path, tiny_clip_dir
):
    """transformers 5 loads a checkpoint in its own dtype: a CLIP saved in float16 ran in float16 (CLIPSIM off
    by up to ~1e-3, the size of a difference between models), unlike what the docs say, and its lines (no
    dtype in their "clip") would be reused by the fixed version."""
    import torch
    from transformers import CLIPModel

    from videolift.evaluate.clip_score import CLIP_FILE, clip_signature, load_clip, rate_by_clip

    half = shutil.copytree(tiny_clip_dir, tmp_path / "clip16")
    CLIPModel.from_pretrained(half).to(torch.float16).save_pretrained(half)
    assert next(load_clip(str(half), "cpu").model.parameters()).dtype == torch.float32

    (record,) = _one_video_folder(tmp_path / "a")
    earlier = {k: v for k, v in clip_signature(str(half)).items() if k != "dtype"}  # an earlier version's
    line = {**record, "clipsim": 0.5, "temporal_consistency": 0.5, "prompt_truncated": False, "clip": earlier}
    (tmp_path / "a" / CLIP_FILE).write_text(json.dumps(line) + "\n")
    clip = rate_by_clip(["a"], str(half), tmp_path, "cpu", None, progress=False)
    assert clip["per_model"]["a"]["clipsim"] != 0.5  # computed again
    (written,) = [json.loads(x) for x in (tmp_path / "a" / CLIP_FILE).read_text().splitlines()]
    assert written["clip"]["dtype"] == "float32"


def test_a_load_that_fetches_a_newer_hub_commit_scores_every_video_with_it(
    tmp_path, tiny_clip_dir, monkeypatch
):
    """Online, loading a Hub id fetches the commit its main ref now names: the lines reused from the snapshot
    cached before (read as the signature before the load) were mixed with values of the new commit, all
    stamped with the old one."""
    import huggingface_hub.constants
    import torch
    from transformers import CLIPModel

    import videolift.evaluate.clip_score as clip_score
    from videolift.core.files import fingerprint

    cache = tmp_path / "hub"
    repo = cache / "models--org--clip"
    old, new = repo / "snapshots" / ("a" * 40), repo / "snapshots" / ("b" * 40)
    shutil.copytree(tiny_clip_dir, old)
    shutil.copytree(tiny_clip_dir, new)
    model = CLIPModel.from_pretrained(new)
    with torch.no_grad():
        model.visual_projection.weight.mul_(-1)  # the new commit's weights: other values
    model.save_pretrained(new)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    real_load, online = clip_score.load_clip, []

    def load(model: str, device: str = "auto") -> clip_score.ClipScorer:
        """from_pretrained: online (the second run), the main ref first moves to the new commit."""
        if online:
            (repo / "refs" / "main").write_text("b" * 40)
        return real_load(str(repo / "snapshots" / (repo / "refs" / "main").read_text()), device)

    monkeypatch.setattr(clip_score, "load_clip", load)
    _one_video_folder(tmp_path / "a")
    first = clip_score.rate_by_clip(["a"], "org/clip", tmp_path, "cpu", None, progress=False)
    online.append(True)
    _one_video_folder(tmp_path / "a", ("a red circle", "a blue square"))  # one video more: CLIP loads
    clip_score.rate_by_clip(["a"], "org/clip", tmp_path, "cpu", None, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "a" / clip_score.CLIP_FILE).read_text().splitlines()]
    assert [line["clip"]["files"] for line in lines] == [fingerprint(new)] * 2
    assert lines[0]["clipsim"] != pytest.approx(first["per_model"]["a"]["clipsim"])  # the new commit's value
    expected = real_load(str(new), "cpu").scores(
        clip_score.sampled_frames(tmp_path / "a" / "0.mp4"), "a red circle"
    )
    assert lines[0]["clipsim"] == pytest.approx(expected["clipsim"], abs=1e-6)


def test_recipe_clip_values_average_replicates_per_video():
    from videolift.evaluate.metrics import replicate_value_difference, replicate_value_summary

    a = [[1.0, 2.0, None], [3.0, None, 5.0]]  # None: a video CLIP could not read
    assert replicate_value_summary(a) == pytest.approx((2.75, 1.25))  # replicate means 1.5 and 4
    got = replicate_value_difference(a, [[0.0, 0.0, None]])
    # per video: (1+3)/2, 2, and the third has no value on b's side
    assert got["diff"] == pytest.approx(2.0) and got["pairs"] == 2 and got["replicates"] == [2, 1]
    assert got["seed_se"] == pytest.approx(1.25) and got["eval_se"] == pytest.approx(0.0)


def test_eval_clip_summarises_recipes_over_their_replicates(tmp_path, tiny_cogvideox_dir, tiny_clip_dir):
    """The raters' recipes (--model NAME=) had no CLIP counterpart: eval.json's clip had per-model values only,
    and with --clip alone the recipes table was printed with no row."""
    prompts = tmp_path / "p.txt"
    prompts.write_text(PROMPTS)
    out = tmp_path / "eval"
    model = str(tiny_cogvideox_dir)
    args = ["eval", "--model", model, "--model", f"r={model}", "--model", f"r={model}", "--prompts", str(prompts),
            *TOY, "--lossless", "--steps", "1", "--out", str(out), "--no-progress", "--clip", str(tiny_clip_dir)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "eval.json").read_text())
    base = next(iter(data["models"]))
    clip = data["clip"]
    assert "groups" not in data  # no rater of labels: nothing to summarise there
    recipe = clip["groups"]["r"]
    assert recipe["members"] == ["r.1", "r.2"] and recipe["replicates"] == 2
    per_model = clip["per_model"]
    assert recipe["clipsim"] == pytest.approx((per_model["r.1"]["clipsim"] + per_model["r.2"]["clipsim"]) / 2)
    assert clip["groups"][base]["replicates"] == 1
    diff = clip["group_differences"][f"r vs {base}"]
    assert diff["clipsim"]["replicates"] == [2, 1] and diff["clipsim"]["pairs"] == 2
    assert diff["clipsim"]["diff"] == pytest.approx(0.0, abs=1e-6)  # the same model, prompts and seeds
    shown = " ".join(result.output.split())
    assert "CLIP recipes" in shown and f"r vs {base} (CLIP, recipes, 2 vs 1 replicates): CLIPSIM" in shown
    assert "mean reward ± seed SE" not in shown  # no empty table of the raters' recipes
    report = (out / "report.html").read_text()
    assert (
        "CLIP, recipes averaged over their replicates" in report
        and f"r vs {base} (2 vs 1 replicates)" in report
    )
    # no rater of labels: none of their tables, which were shown empty, nor their distributions' heading
    assert "<tbody></tbody>" not in report and "Label and reward distributions" not in report
