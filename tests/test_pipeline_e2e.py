"""The whole loop on tiny random models: wiring, summary.json contract, report, skip-on-rerun."""

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from videolift.cli import app

DIMENSIONS = ("semantic_consistency", "motion_smoothness", "video_fidelity")


def test_run_pipeline_end_to_end_and_rerun_skips(tmp_path, tiny_cogvideox_dir):
    from videolift.models.tiny_vlm import build_tiny_vlm

    build_tiny_vlm(tmp_path / "vlm")
    config = {
        "workdir": "run",
        "t2v": str(tiny_cogvideox_dir),
        "vlm": str(tmp_path / "vlm"),
        "sampler": {"steps": 2, "guidance": 5.0, "batch_size": 8, "height": 48, "width": 48},
        "hra": {
            "source": "toy-panel",
            "prompts": {"n": 8, "per_prompt": 2},
            "annotators": 2,
            "test_fraction": 0.25,
        },
        # A tiny random VLM needs a high learning rate to answer with labels at all.
        # parallel: both critics at once in their own processes, as the demo trains them
        "critic": {
            "max_steps": 150,
            "batch_size": 8,
            "lr": 0.01,
            "label_only_baseline": True,
            "parallel": True,
        },
        "align": {
            "prompts": {"n": 6, "per_prompt": 2, "seed": 1},
            "methods": ["rwl", "rs"],
            "real_toy": 4,
            "settings": {
                "max_steps": 3,
                "batch_size": 4,
                "warmup_steps": 1,
                "num_workers": 0,
                "hash_content": True,
            },
        },
        "evaluate": {"prompts": {"n": 4, "per_prompt": 1, "seed": 2}},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    w = tmp_path / "run"
    summary = json.loads((w / "summary.json").read_text())
    for key in ("oracle_all_good_rate", "oracle_mean_reward", "critic_mean_reward"):
        assert 0.0 <= summary["base"][key] <= 1.0
    assert set(summary["critic"]) == {"accuracy", "accuracy_no_reasons", "majority_baseline", "accuracy_se"}
    assert set(summary["critic"]["accuracy_se"]) == set(summary["critic"]["accuracy"])
    assert "mean" in summary["critic"]["accuracy"]
    # Rewards by the mapping alignment used: here the critic's own, which the pipeline trains with the paper's.
    paper_mapping = {"scores": {"Good": 0.9, "Normal": 0.2, "Bad": 0.05}, "aggregation": "mean"}
    assert paper_mapping.items() <= summary["reward_config"].items()
    assert summary["reward_source"] == f"the critic's ({w / 'critic' / 'critic_spec.json'})"
    manifest = json.loads((w / "run_manifest.json").read_text())
    stages = manifest.get("stages", manifest)
    children = [stages[f"critic:{n}"]["result"]["peak_rss_mb"] for n in ("critic", "critic_label_only")]
    assert summary["peak_rss_mb"] > sum(children) > 0  # overlapping processes' memory adds up
    dims = stages["critic-eval:critic"]["result"]["dimensions"]
    for dim, report in dims.items():  # the baseline a reader needs next to the accuracy
        assert summary["critic"]["majority_baseline"][dim] == report["majority_baseline"]
    assert summary["aligned_rwl"]["model"].endswith("aligned_rwl/pipeline")
    # The real-data term trains on clean renders of train-split prompts.
    real = [json.loads(x) for x in (w / "real_toy" / "manifest.jsonl").read_text().splitlines()]
    assert len(real) == 4 and all(r["split"] == "train" and not r["defects"] for r in real)
    align_cfg = json.loads((w / "aligned_rwl" / "align_config.json").read_text())
    assert align_cfg["real"] == str(w / "real_toy" / "manifest.jsonl") and align_cfg["lambda_real"] == 1.0
    assert align_cfg["cache_dir"] == str(w / "align_cache")
    # RS is usually skipped here (nothing rated all-Good), so check its stage's settings directly:
    # RWL and RS share one cache, the real clips are encoded once.
    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.stages import align_stage

    cfg = PipelineConfig.load(path)
    caches = {m: align_stage(cfg, "m", m, None, False).settings["cache_dir"] for m in ("rwl", "rs")}
    assert caches == {"rwl": str(w / "align_cache"), "rs": str(w / "align_cache")}
    # A reward config is an input of the stage: editing it reruns alignment.
    (w / "min.yaml").write_text("aggregation: min\n")
    cfg.align.settings["reward_config"] = str(w / "min.yaml")
    assert w / "min.yaml" in align_stage(cfg, "m", "rwl", None, False).inputs
    # RS either trained or was reported as skipped (nothing rated all-Good), never silently missing.
    assert "skipped" in summary["aligned_rs"] or "oracle_all_good_rate" in summary["aligned_rs"]
    assert summary["wall_seconds"] > 0 and summary["peak_rss_mb"] > 0
    html = (w / "report.html").read_text()
    assert "Summary (held-out prompts)" in html and "data:image/png;base64," in html
    assert "each stage&#x27;s time when it last ran" in html  # the stages' times table
    # Paired differences against the base, by both raters, in summary.json and in the report.
    (pair,) = [k for k in summary["differences"] if k.startswith("aligned_rwl")]
    assert set(summary["differences"][pair]) == {"critic", "oracle"}
    assert "over videos of the same prompt and seed" in html
    eval_seeds = {
        name: [json.loads(x)["seed"] for x in (w / "eval" / name / "manifest.jsonl").read_text().splitlines()]
        for name in json.loads((w / "eval" / "eval.json").read_text())["models"]
    }
    assert len({tuple(v) for v in eval_seeds.values()}) == 1  # same seeds for every model

    first = summary["stages"]
    assert first["critic:critic"]["ran"] and first["critic:critic"]["seconds"] > 0
    manifest_path = w / "run_manifest.json"  # a stage of earlier settings stays in the manifest ...
    manifest = json.loads(manifest_path.read_text())
    manifest["stages"]["align:old"] = {"key": "0", "seconds": 9.0}
    manifest_path.write_text(json.dumps(manifest))
    again = CliRunner().invoke(app, ["run", str(path), "--no-report"])
    assert again.exit_code == 0, again.output
    assert again.output.count("up to date, skipped") >= 10
    rerun = json.loads((w / "summary.json").read_text())["stages"]
    assert not any(s["ran"] for s in rerun.values())  # the times of the run that did the work
    # ... but is not one of this run's stages
    assert {n: s["seconds"] for n, s in rerun.items()} == {n: s["seconds"] for n, s in first.items()}
    # A copy of the workdir (timestamps kept, as `cp -a`) is as finished as the original.
    shutil.copytree(w, tmp_path / "copy")
    copied = CliRunner().invoke(app, ["run", str(path), "--no-report", "--workdir", str(tmp_path / "copy")])
    assert copied.exit_code == 0, copied.output
    assert copied.output.count("up to date, skipped") == again.output.count("up to date, skipped")
    copy_summary = json.loads((tmp_path / "copy" / "summary.json").read_text())
    assert copy_summary["aligned_rwl"]["model"] == str(tmp_path / "copy" / "aligned_rwl" / "pipeline")
    # Another alignment seed in the copy: the copied latent cache (keyed by content) is reused.
    reseeded = CliRunner().invoke(
        app,
        [
            "run",
            str(path),
            "--no-report",
            "--workdir",
            str(tmp_path / "copy"),
            "--set",
            "align.settings.seed=1",
        ],
    )
    assert reseeded.exit_code == 0, reseeded.output
    trained = json.loads((tmp_path / "copy" / "aligned_rwl" / "train_summary.json").read_text())
    assert trained["data"]["cache"]["videos_encoded"] == 0 and trained["data"]["cache"]["videos_cached"] > 0

    # The same run with the oracle's ratings as rewards (a perfect critic): only scoring and what
    # follows it run again, and the rewards are the oracle's labels mapped as a critic's would be.
    config["align"]["rewards"] = "oracle"
    path.write_text(yaml.safe_dump(config))
    oracle_run = CliRunner().invoke(app, ["run", str(path)])
    assert oracle_run.exit_code == 0, oracle_run.output
    assert "critic:critic: up to date, skipped" in oracle_run.output
    paper = {"Good": 0.9, "Normal": 0.2, "Bad": 0.05}  # the paper's label scores, mean over dimensions
    oracle = {
        r["video"]: r["ratings"] for r in map(json.loads, (w / "align_oracle.jsonl").read_text().splitlines())
    }
    scores = [json.loads(x) for x in (w / "align_scores.jsonl").read_text().splitlines()]
    assert len(scores) == len(oracle) == 12
    for line in scores:
        labels = [oracle[line["video"]][d]["label"] for d in DIMENSIONS]
        assert line["reward"] == pytest.approx(sum(paper[lab] for lab in labels) / 3)
    stages = json.loads((w / "run_manifest.json").read_text())["stages"]
    assert stages["score"]["settings"] == {"rewards": "oracle"}
    summary = json.loads((w / "summary.json").read_text())
    assert summary["align_rewards"] == "oracle"
    assert (
        "align.rewards: oracle maps" in summary["reward_source"]
        and summary["reward_config"]["scores"] == paper
    )
    assert "align.rewards: oracle" in (w / "report.html").read_text()

    # --plan runs and writes nothing: it says which stages are done and why the first to run would.
    manifest = (w / "run_manifest.json").read_bytes()
    done = CliRunner().invoke(app, ["run", str(path), "--plan"])
    assert done.exit_code == 0 and "Every stage is up to date." in done.output, done.output
    edited = CliRunner().invoke(app, ["run", str(path), "--plan", "--set", "align.settings.max_steps=4"])
    assert edited.exit_code == 0, edited.output
    assert "align:rwl: would run (its settings or inputs changed: max_steps 3 -> 4)" in edited.output
    assert "score: up to date" in edited.output and "evaluate" not in edited.output
    assert (w / "run_manifest.json").read_bytes() == manifest
