"""`critic score` sharded over two real processes (torchrun, gloo on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videolift.core.video import write_video
from videolift.critic.answers import load_critic
from videolift.critic.score import score_manifest, summary_path
from videolift.models.tiny_vlm import build_tiny_vlm

BIN = Path(sys.executable).parent
TWO = [BIN / "torchrun", "--standalone", "--nproc_per_node", "2", BIN / "videolift"]  # two CPU ranks
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def tiny_world(root: Path, n: int) -> list[dict]:
    """A tiny base VLM, ``n`` random 8-frame videos rated on fidelity, and their manifest lines."""
    build_tiny_vlm(root / "base")
    rng = np.random.default_rng(0)
    records, manifest = [], []
    for i in range(n):
        write_video(
            root / f"v{i}.mp4", rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8), crf=0, pix_fmt="yuv444p"
        )
        rating = {"label": ["Good", "Bad", "Normal"][i % 3], "reason": f"reason {i}"}
        records.append({"video": f"v{i}.mp4", "prompt": f"clip {i}", "ratings": {"video_fidelity": rating}})
        manifest.append({"video": f"v{i}.mp4", "prompt": f"clip {i}"})
    (root / "hra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    return manifest


def test_two_processes_share_the_manifest_and_match_one_process(tmp_path):
    from videolift.critic.sft import SFTConfig
    from videolift.critic.train import train_critic

    manifest = tiny_world(tmp_path, 5)
    cfg = SFTConfig(max_steps=2, batch_size=2, save_every=0, lr=5e-3)
    train_critic(str(tmp_path / "base"), tmp_path / "hra.jsonl", tmp_path, tmp_path / "critic", cfg,
                 dimensions=["video_fidelity"], log=lambda _: None)  # fmt: skip

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["critic", "score", "--critic", tmp_path / "critic", "--manifest", tmp_path / "manifest.jsonl",
            "--videos", tmp_path, "--batch-size", "1"]  # fmt: skip

    def score(prefix: list, out: Path) -> None:
        proc = subprocess.run(
            [*prefix, *map(str, args), "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    score(TWO, tmp_path / "two.jsonl")
    summary = json.loads(summary_path(tmp_path / "two.jsonl").read_text())
    assert summary["per_rank"] == {"0": 3, "1": 2}  # pending[rank::2]: both ranks really scored
    score_manifest(load_critic(tmp_path / "critic"), tmp_path / "manifest.jsonl", tmp_path, tmp_path / "one.jsonl",
                   batch_size=1, log=lambda _: None)  # fmt: skip
    assert (tmp_path / "two.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()
    lines = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [line["video"] for line in lines] == [m["video"] for m in manifest]
    assert all(set(line["ratings"]) == {"video_fidelity"} for line in lines)


def test_two_process_training_equals_one_process_with_accumulation(tmp_path):
    """DDP really synchronises: 2 ranks x batch 2 give the weights of 1 process x batch 2 x accum 2; the
    validation loss of 5 held-out ratings (3 on one rank, 2 on the other) is the one process's."""
    from safetensors.torch import load_file
    from torch.testing import assert_close

    tiny_world(tmp_path, 8)
    val = tmp_path / "val.jsonl"
    val.write_text("".join((tmp_path / "hra.jsonl").read_text().splitlines(keepends=True)[:5]))
    common = ["critic", "train", "--base", tmp_path / "base", "--data", tmp_path / "hra.jsonl", "--videos", tmp_path,
              "--dimensions", "video_fidelity", "--max-steps", "3", "--lr", "5e-3", "--lora-dropout", "0",
              "--batch-size", "2", "--save-every", "0", "--val-data", val, "--val-every", "2"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    two = [*TWO, *common, "--out", tmp_path / "two"]
    one = [BIN / "videolift", *common, "--grad-accum", "2", "--out", tmp_path / "one"]
    for cmd, world in ((two, "2"), (one, "1")):
        proc = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"x {world} processes" in proc.stderr  # torchrun on CPU must not fall back to 2 separate runs
    logs = [(tmp_path / name / "train_log.jsonl").read_text().splitlines() for name in ("two", "one")]
    timed = ("seconds", "examples_per_s", "val_loss")
    strip = [[{k: v for k, v in json.loads(line).items() if k not in timed} for line in log] for log in logs]
    assert strip[0] == strip[1]
    # Batches of other sizes pad differently: equal to float32 rounding.
    val_losses = [[json.loads(line).get("val_loss") for line in log] for log in logs]
    assert val_losses[1][0] is None and val_losses[1][1] is not None and val_losses[1][2] is not None
    assert val_losses[0] == [None if v is None else pytest.approx(v, rel=1e-5) for v in val_losses[1]]
    a, b = (
        load_file(tmp_path / "two/adapter_model.safetensors"),
        load_file(tmp_path / "one/adapter_model.safetensors"),
    )
    assert a.keys() == b.keys() and any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
    for key in a:
        assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_two_processes_split_a_first_pass_and_match_one_process(tmp_path):
    """A check-then-rate critic's first pass is dealt to the ranks (each logs its share; the main one merges):
    the cache two processes write is the one process's."""
    tiny_world(tmp_path, 5)
    common = ["critic", "train", "--base", tmp_path / "base", "--data", tmp_path / "hra.jsonl", "--videos", tmp_path,
              "--dimensions", "video_fidelity", "--check", "--check-dimensions", "video_fidelity",
              "--max-steps", "1", "--batch-size", "1", "--save-every", "0"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    two = [*TWO, *common]
    said = {}
    for cmd, out in ((two, "two"), ([BIN / "videolift", *common], "one")):
        proc = subprocess.run(
            list(map(str, [*cmd, "--out", tmp_path / out])),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        said[out] = " ".join(proc.stderr.split())
    assert "checking 5 captions" in said["one"] and "split between" not in said["one"]
    assert "(0 cached), split between 2 processes" in said["two"]
    cached = [json.loads((tmp_path / out / "checks.json").read_text()) for out in ("two", "one")]
    assert cached[0] == cached[1] and len(cached[0]["checks"]) == 5
    assert not (tmp_path / "two/checks.json.parts").exists()


def test_two_process_critic_eval_without_scores_reports_once(tmp_path):
    """`critic eval` without --scores scores into a temporary file: every rank's share must land in the main
    process's (each rank wrote into its own temporary folder, which the main one never saw: rank 1 failed).
    The report is printed once, and is the one process's."""
    from videolift.critic.evaluate import evaluate_critic
    from videolift.critic.sft import SFTConfig
    from videolift.critic.train import train_critic

    tiny_world(tmp_path, 5)
    cfg = SFTConfig(max_steps=1, batch_size=2, save_every=0)
    train_critic(str(tmp_path / "base"), tmp_path / "hra.jsonl", tmp_path, tmp_path / "critic", cfg,
                 dimensions=["video_fidelity"], log=lambda _: None)  # fmt: skip
    args = ["critic", "eval", "--critic", tmp_path / "critic", "--data", tmp_path / "hra.jsonl", "--videos",
            tmp_path, "--batch-size", "1", "--json", "--no-progress"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [*TWO, *args]
    proc = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5 of 5 videos to score on 2 process(es)" in proc.stderr
    report = json.loads(proc.stdout)  # one JSON document: not one per process
    alone = evaluate_critic(
        load_critic(tmp_path / "critic"), tmp_path / "hra.jsonl", tmp_path, log=lambda _: None
    )
    assert report == {**alone, "critic": str(tmp_path / "critic")}


def test_a_resume_under_another_process_count_is_refused_naming_both(tmp_path, monkeypatch):
    """A run checkpointed by 2 processes resumed by 1 (and one of 1 by 2) went on with a plan made for the
    new count: the update count of --epochs doubled ("resumed from step-000002 (update 2 of 24)"), the LR
    schedule stretched, the epoch's examples dealt again from another point; 1 -> 2 could end at once, its
    update past the halved total, saving a part-trained critic as finished. Now refused before the model
    loads (the first passes would run first), naming both counts, OUT left as it was."""
    from typer.testing import CliRunner

    from videolift.cli import app

    tiny_world(tmp_path, 8)
    common = ["critic", "train", "--base", tmp_path / "base", "--data", tmp_path / "hra.jsonl", "--videos", tmp_path,
              "--dimensions", "video_fidelity", "--batch-size", "1", "--save-every", "2", "--lora-dropout", "0",
              "--stop-at-step", "2", "--no-progress"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [*TWO, *common, "--out", tmp_path / "two"]
    proc = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "two/checkpoints/step-000002").is_dir()
    one = CliRunner().invoke(app, list(map(str, [*common, "--out", tmp_path / "one"])))
    assert one.exit_code == 0, one.output

    before = {name: (tmp_path / name / "train_log.jsonl").read_text() for name in ("two", "one")}
    for out, saved, now in (("two", 2, 1), ("one", 1, 2)):
        monkeypatch.setenv("WORLD_SIZE", str(now))  # as torchrun sets it: refused before accelerate starts
        said = CliRunner().invoke(app, list(map(str, [*common[:-3], "--resume", "--out", tmp_path / out])))
        flat = " ".join(said.output.split())
        assert said.exit_code != 0, flat
        assert f"written by {saved} process(es), this run has {now}" in flat, flat
        assert f"Resume with {saved} process(es)" in flat
        assert (tmp_path / out / "train_log.jsonl").read_text() == before[out]
        assert not (tmp_path / out / "train_summary.json").exists()


def test_two_processes_train_weights_a_video_loss_does_not_use(tmp_path):
    """Found by a two-process full fine-tune of LLaVA-NeXT-Video: its image_newline (images only) is
    trainable and takes no part in a video's loss, and DDP stopped at the second update ("Expected to have
    finished reduction in the prior iteration ... parameters that were not used in producing loss"); so
    would --tune-vision where the features come before the tower's last layer or its pooling head."""
    from videolift.models.tiny_vlm import TinyVLMConfig

    tiny_world(tmp_path, 4)
    build_tiny_vlm(tmp_path / "llava", TinyVLMConfig(family="llava_next_video"))
    cmd = [*TWO, "critic", "train", "--base", tmp_path / "llava", "--data", tmp_path / "hra.jsonl",
           "--videos", tmp_path, "--dimensions", "video_fidelity", "--adapter", "full", "--max-steps", "2",
           "--batch-size", "2", "--save-every", "0", "--out", tmp_path / "critic", "--no-progress"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x 2 processes" in proc.stderr and (tmp_path / "critic/train_summary.json").is_file()


@pytest.mark.parametrize(
    "stop", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["straight", "resumed"]
)
def test_an_fsdp_full_fine_tune_clips_and_equals_one_process(tmp_path, stop):
    """fsdp_vlm.yaml on two CPU processes (tests/fsdp_cpu_site; 20-40 s a launch here), straight or
    stopped at its checkpoint and resumed: the weights and log of one process with accumulation 2. FSDP's
    prepare replaces the parameters with sharded ones, and the run clipped the list taken before (no
    gradients): nothing was clipped (the norms here are ~4, the clip 1) and every logged grad_norm was 0.0
    (found by the first real FSDP run, 2026-12-07)."""
    from safetensors.torch import load_file
    from torch.testing import assert_close

    from fsdp_cpu import fsdp_launch

    tiny_world(tmp_path, 8)
    common = ["critic", "train", "--base", tmp_path / "base", "--data", tmp_path / "hra.jsonl", "--videos", tmp_path,
              "--dimensions", "video_fidelity", "--adapter", "full", "--max-steps", "4", "--lr", "5e-3",
              "--batch-size", "2", "--save-every", "2", "--no-progress"]  # fmt: skip
    launch, env = fsdp_launch("fsdp_vlm.yaml", tmp_path)
    for more in (["--stop-at-step", "2"], ["--resume"]) if stop else ([],):
        cmd = [*launch, *common, "--out", tmp_path / "fsdp", *more]
        proc = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "x 2 processes" in proc.stderr
    assert (tmp_path / "fsdp/checkpoints/step-000002/pytorch_model_fsdp.bin").is_file()  # really FSDP's
    one = [BIN / "videolift", *common, "--grad-accum", "2", "--out", tmp_path / "one"]
    proc = subprocess.run(list(map(str, one)), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    logs = [[json.loads(x) for x in (tmp_path / name / "train_log.jsonl").read_text().splitlines()] for name in ("fsdp", "one")]  # fmt: skip
    assert [x["step"] for x in logs[0]] == [1, 2, 3, 4]
    for key in ("loss", "grad_norm"):
        assert [x[key] for x in logs[0]] == [pytest.approx(x[key], rel=1e-5) for x in logs[1]], key
    assert min(x["grad_norm"] for x in logs[0]) > 1  # so the clip to 1 acted
    a, b = load_file(tmp_path / "fsdp/model.safetensors"), load_file(tmp_path / "one/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # an FSDP launch (15-25 s); the layout check itself: tests/test_core_checkpoints.py -k layout
def test_a_ddp_checkpoint_resumed_under_fsdp_is_refused_before_the_model_loads(tmp_path):
    """A DDP checkpoint of a full fine-tune resumed by fsdp_vlm.yaml on as many processes (two) loaded the
    model, then died in a traceback looking for FSDP's pytorch_model_fsdp.bin. Refused before the model
    loads, naming both layouts; OUT left as it was. (The checkpoint is one process's, made a two-process
    DDP one: DDP writes the same files, and a RNG state each.)"""
    import shutil

    from typer.testing import CliRunner

    from fsdp_cpu import fsdp_launch
    from videolift.cli import app

    tiny_world(tmp_path, 8)
    common = ["critic", "train", "--base", tmp_path / "base", "--data", tmp_path / "hra.jsonl", "--videos", tmp_path,
              "--dimensions", "video_fidelity", "--adapter", "full", "--max-steps", "4", "--batch-size", "2",
              "--save-every", "2", "--no-progress", "--out", tmp_path / "critic"]  # fmt: skip
    one = CliRunner().invoke(app, list(map(str, [*common, "--stop-at-step", "2"])))
    assert one.exit_code == 0, one.output
    ckpt = tmp_path / "critic/checkpoints/step-000002"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    (ckpt / "trainer_state.json").write_text(json.dumps(state | {"world_size": 2}))
    shutil.copy(ckpt / "random_states_0.pkl", ckpt / "random_states_1.pkl")
    log = (tmp_path / "critic/train_log.jsonl").read_text()

    launch, env = fsdp_launch("fsdp_vlm.yaml", tmp_path)
    proc = subprocess.run(list(map(str, [*launch, *common, "--resume"])), env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    flat = " ".join(proc.stderr.split())
    assert proc.returncode == 1, flat[-3000:]
    assert (
        f"{ckpt}: written under DDP or one process (model.safetensors, optimizer.bin) by 2 process(es)"
        in flat
    )
    assert (
        "this run is under FSDP with FULL_STATE_DICT" in flat and "Resume with the accelerate config" in flat
    )
    assert "Traceback" not in flat.split("torch/distributed/elastic")[0], flat  # (the launcher's own follows)
    assert (tmp_path / "critic/train_log.jsonl").read_text() == log and not (
        tmp_path / "critic/train_summary.json"
    ).exists()
