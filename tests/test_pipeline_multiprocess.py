"""`videolift run` under torchrun: two CPU processes (gloo) run the tiny toy loop end to end, the main
process deciding and recording, and a rerun skips every stage on every process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE

import pytest
from typer.testing import CliRunner

from videolift.cli import app

BIN = Path(sys.executable).parent
TOY = Path(__file__).resolve().parents[1] / "configs/pipeline/toy.yaml"
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
# The toy loop at its smallest; the oracle's rewards, as a critic of 4 updates rates nothing parseably.
TINY = [
    "sampler.steps=2", "sampler.batch_size=4", "hra.prompts.n=6", "hra.prompts.per_prompt=2",
    "hra.annotators=2", "critic.epochs=1", "critic.max_steps=4", "align.prompts.n=4",
    "align.prompts.per_prompt=2", "align.real_toy=2", "align.rewards=oracle", "align.settings.max_steps=2",
    "align.settings.batch_size=2", "align.settings.warmup_steps=1", "align.settings.checkpoint_every=1",
    "evaluate.prompts.n=2", "evaluate.prompts.per_prompt=1",
]  # fmt: skip
STAGES = [
    "generate:hra_videos", "rate:toy-panel", "split", "critic:critic", "critic:critic_label_only",
    "critic-eval:critic", "critic-eval:critic_label_only", "generate:align_videos", "score", "real:toy",
    "align:rwl", "align:rs", "evaluate",
]  # fmt: skip
# What the stages' code makes alike on any number of processes (per-item seeds; training is not).
SAME = ["hra.jsonl", "hra_split/train.jsonl", "hra_split/test.jsonl", "align_videos/manifest.jsonl",
        "align_scores.jsonl", "real_toy/manifest.jsonl", "eval/base/oracle_ratings.jsonl"]  # fmt: skip


def _torchrun(workdir: Path, *sets: str, options: tuple[str, ...] = (), timeout: float = 300) -> str:
    """`videolift run` of the tiny toy loop under torchrun with 2 processes; its output."""
    args = ["run", str(TOY), "--workdir", str(workdir), "--no-progress", "--no-report", *options]
    args += [x for s in [*TINY, *sets] for x in ("--set", s)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    launch = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "videolift")]
    proc = subprocess.Popen([*launch, *args], env=env, stdout=PIPE, stderr=PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # hung (as before, with critic.parallel): torchrun ends its ranks
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, (stdout + stderr)[-5000:]
    return stdout


def _mtimes(workdir: Path) -> dict[str, int]:
    return {str(p.relative_to(workdir)): p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}


# 45-55 s, the longest test: run by `make test-all`; under torchrun the default run keeps the plan, the demo's
# summary and a failure's stop (below), and each stage command's own two-process tests.
@pytest.mark.slow
def test_two_processes_run_the_loop_and_a_rerun_skips_every_stage(tmp_path):
    w = tmp_path / "two"
    out = _torchrun(w)  # critic.parallel (the toy file's): one critic after the other here
    assert out.count("critic.parallel: the critics train one after the other, each on all 2 processes") == 1
    for stage in STAGES:  # the main process's lines only, each stage once
        assert sum(f" {stage} " in line and "─" in line for line in out.splitlines()) == 1, stage
    manifest = json.loads((w / "run_manifest.json").read_text())["stages"]
    assert list(manifest) == STAGES and all("outputs" in manifest[s] for s in STAGES)
    summary = json.loads((w / "summary.json").read_text())
    assert all(summary["stages"][s]["ran"] for s in STAGES)
    # Both processes did their share, and trained in step.
    scored = json.loads((w / "critic_test_scores.summary.json").read_text())["per_rank"]
    assert set(scored) == {"0", "1"}
    for method in ("rwl", "rs"):
        trained = json.loads((w / f"aligned_{method}/train_summary.json").read_text())
        assert (
            trained["world_size"] == 2 and trained["ranks"][0]["checksum"] == trained["ranks"][1]["checksum"]
        )
    assert (w / "critic_eval.json").is_file() and summary["critic"]["accuracy"] is not None

    # One process: the same ratings, split, rewards and base model's evaluation.
    one = tmp_path / "one"
    args = ["run", str(TOY), "--workdir", str(one), "--no-progress", "--no-report"]
    sets = [*TINY, "critic.parallel=false"]
    result = CliRunner().invoke(app, [*args, *(x for s in sets for x in ("--set", s))])
    assert result.exit_code == 0, result.output
    for name in SAME:
        assert (one / name).read_bytes() == (w / name).read_bytes(), name
    single = json.loads((one / "summary.json").read_text())
    assert {k: v for k, v in single["base"].items() if k != "model"} == {
        k: v for k, v in summary["base"].items() if k != "model"
    }

    # A rerun on two processes: every stage skipped on every process (no file but the summary touched).
    before = _mtimes(w)
    again = _torchrun(w)
    assert again.count("up to date, skipped") == len(STAGES)
    after = _mtimes(w)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == {"summary.json"}
    rerun = json.loads((w / "summary.json").read_text())
    assert not any(s["ran"] for s in rerun["stages"].values())
    # ... and in one process: the manifest does not depend on how many processes ran a stage.
    args[args.index(str(one))] = str(w)
    alone = CliRunner().invoke(app, [*args, *(x for s in sets for x in ("--set", s))])
    assert alone.exit_code == 0 and alone.output.count("up to date, skipped") == len(STAGES), alone.output

    # An alignment interrupted after its last checkpoint resumes there; only it and the evaluation rerun.
    manifest["align:rwl"] = {k: manifest["align:rwl"][k] for k in ("key", "settings")} | {"started": "x"}
    (w / "run_manifest.json").write_text(json.dumps({"stages": manifest}))
    for exported in (w / "aligned_rwl/pipeline").rglob("*"):
        if exported.is_file():
            exported.unlink()
    resumed = _torchrun(w)
    assert resumed.count("up to date, skipped") == len(STAGES) - 2
    assert "align:rwl: up to date" not in resumed and "evaluate: up to date" not in resumed
    assert "steps 2 -> 2" in resumed  # from the checkpoint of step 2, not from scratch
    assert (w / "aligned_rwl/pipeline/model_index.json").is_file()


def test_plan_on_two_processes_prints_the_main_process_plan(tmp_path):
    """--plan under torchrun: the main process plans alone (it waited for the others, who had returned)."""
    out = _torchrun(tmp_path / "w", options=("--plan",), timeout=120)
    assert "→ generate:hra_videos: would run (not run yet)" in out
    assert out.count("would run") == 1 and not (tmp_path / "w").exists()


def test_demo_leaves_the_summary_and_report_to_the_main_process(tmp_path, monkeypatch):
    """Under a launcher the pipeline returns no summary on the other processes: demo ends there quietly."""
    import videolift.pipeline.run as run

    monkeypatch.setattr(run, "run_pipeline", lambda cfg, progress: None)  # as on rank 1
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--no-progress"])
    assert result.exit_code == 0 and result.output == "", result.output
    assert not (tmp_path / "demo" / "report.html").exists()


_FAILING_MAIN = """
from videolift.core.errors import VideoliftError
from videolift.pipeline import ranks

ranks.start()
def rate():
    raise VideoliftError("no ratings")
ranks.from_main(rate)
"""


def test_a_failure_on_the_main_process_stops_every_process(tmp_path):
    """The others do not wait at the next barrier for a main process that is gone: they stop, saying why."""
    script = tmp_path / "failing.py"
    script.write_text(_FAILING_MAIN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "VideoliftError: no ratings" in proc.stderr
    assert "the main process stopped (VideoliftError: no ratings); see its output" in proc.stderr
