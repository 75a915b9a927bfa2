"""`videolift critic train | score | eval` end to end on a tiny random Qwen2-VL and four tiny videos."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from videolift.cli import app
from videolift.core.errors import VideoliftError
from videolift.core.jsonl import iter_json_lines
from videolift.core.reward import RewardConfig
from videolift.core.video import write_video
from videolift.critic.answers import load_critic, rate
from videolift.critic.score import parts_dir, score_manifest, summary_path
from videolift.models.tiny_vlm import build_tiny_vlm

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 230, 30)}
SC_LABELS = ["Good", "Bad", "Normal", "Good"]
MS_LABELS = ["Bad", "Good", "Good", "Normal"]
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # peft probing a deprecated attribute


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend on a shared 2-core machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A tiny base VLM, four 12-frame videos, HRA records and a manifest (with one missing video)."""
    root = tmp_path_factory.mktemp("critic_world")
    build_tiny_vlm(root / "base")
    records = []
    for i, (name, rgb) in enumerate(COLORS.items()):
        video = np.zeros((12, 56, 56, 3), np.uint8)
        video[:] = rgb
        for t in range(12):
            video[t, 20:36, 4 + 3 * t : 20 + 3 * t] = 255
        write_video(root / f"videos/v{i}.mp4", video, crf=0, pix_fmt="yuv444p")
        records.append(
            {
                "video_id": f"v{i}",
                "video": f"videos/v{i}.mp4",
                "prompt": f"a white square on {name}" if i < 3 else "a white square on red",
                "ratings": {
                    "semantic_consistency": {"label": SC_LABELS[i], "reason": f"the background is {name}"},
                    "motion_smoothness": {"label": MS_LABELS[i], "reason": "the square moves right"},
                    "video_fidelity": {"label": "Good", "reason": "clear"},
                },
            }
        )
    (root / "hra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = [
        {"video": r["video"], "prompt": r["prompt"], "video_id": r["video_id"], "seed": i}
        for i, r in enumerate(records)
    ]
    manifest.append({"video": "videos/missing.mp4", "prompt": "gone"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in manifest))
    return root


def run(*args: str, fails: bool | int = False):
    """Invoke the CLI; a user error (VideoliftError: "Error: ...", exit 1; 2 for a usage error, when
    ``fails`` is 2) only when ``fails``."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == int(fails), result.output
    return result


def train(world: Path, out: Path, *extra: str, steps: int = 8, fails: bool | int = False):
    return run(
        "critic", "train", "--base", world / "base", "--data", world / "hra.jsonl", "--videos", world,
        "--out", out, "--max-steps", steps, "--lr", "5e-3", "--batch-size", "4", *extra, fails=fails,
    )  # fmt: skip


def log_of(out: Path) -> list[dict]:
    return [obj for _, obj in iter_json_lines(out / "train_log.jsonl")]


@pytest.fixture(scope="module")
def critic_dir(world) -> Path:
    out = world / "critic"
    train(world, out, "--save-every", "4")
    return out


def test_training_lowers_the_loss_and_writes_a_plain_peft_critic(world, critic_dir):
    import transformers

    environment = json.loads((critic_dir / "train_summary.json").read_text())["environment"]
    assert environment["transformers"] == transformers.__version__ and environment["device"] == "cpu"
    log = log_of(critic_dir)
    assert [r["step"] for r in log] == list(range(1, 9))
    assert np.mean([r["loss"] for r in log[-2:]]) < np.mean([r["loss"] for r in log[:2]]) - 0.1
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "processor_config.json",
        "tokenizer.json",
    ):
        assert (critic_dir / name).is_file(), name
    spec = json.loads((critic_dir / "critic_spec.json").read_text())
    assert spec["model_type"] == "qwen2_vl" and spec["num_frames"] == 8 and spec["reasons"] is True
    assert spec["base_model"] == str((world / "base").resolve())
    assert (critic_dir / "checkpoints/step-000004/trainer_state.json").is_file()

    # Plain transformers + peft, the processor's own chat template: the scorer's greedy answer.
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from videolift.core.schema import parse_answer
    from videolift.core.video import sample_frames
    from videolift.critic.prompts import user_text

    base = AutoModelForImageTextToText.from_pretrained(world / "base")
    model = PeftModel.from_pretrained(base, critic_dir).eval()
    processor = AutoProcessor.from_pretrained(critic_dir)
    frames = sample_frames(world / "videos/v1.mp4", 8)
    text = user_text("a white square on green", spec["questions"]["motion_smoothness"])
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[prompt], videos=[frames], return_tensors="pt", do_sample_frames=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=spec["max_new_tokens"], do_sample=False)
    plain = processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    critic = load_critic(critic_dir)
    ours = rate(critic, [(frames, "a white square on green")])[0]
    entry = ours["motion_smoothness"]
    label, reason = parse_answer(plain)
    assert entry["label"] == (label.value if label else None)
    assert entry["reason"] == reason if label else entry["answer"] == plain


def test_a_critic_loads_by_default_on_the_processs_accelerator_in_its_dtype(critic_dir, monkeypatch):
    """`videolift run` and `eval --critic` load critics with the defaults: on a GPU machine, the GPU in
    bfloat16 (they ran a 7B critic on the CPU in float32). Here the meta device stands in for the GPU."""
    from types import SimpleNamespace

    import videolift.core.distributed as distributed
    import videolift.models.base as base
    from videolift.models.base import auto_dtype

    assert auto_dtype("cpu") == "float32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert auto_dtype("cuda:1") == "bfloat16"
    monkeypatch.setattr(distributed, "process_state", lambda: SimpleNamespace(device=torch.device("meta")))
    monkeypatch.setattr(base, "auto_dtype", lambda device: "bfloat16" if device.type == "meta" else "float32")
    model = load_critic(critic_dir).model
    assert model.device.type == "meta" and model.dtype == torch.bfloat16


def test_resume_equals_uninterrupted(world, tmp_path):
    from safetensors.torch import load_file

    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    train(world, whole, "--save-every", "0", steps=6)
    train(world, pieces, "--save-every", "3", "--stop-at-step", "3", steps=6)
    assert not (pieces / "critic_spec.json").exists() and len(log_of(pieces)) == 3
    assert "pass --resume" in train(world, pieces, "--save-every", "3", steps=6, fails=True).output
    changed = train(
        world, pieces, "--save-every", "3", "--resume", "--lr", "1e-3", steps=6, fails=True
    ).output
    assert "different settings" in changed and "lr" in changed
    # What saves memory or checkpoints more often may change: the same updates follow.
    train(world, pieces, "--save-every", "2", "--resume", "--gradient-checkpointing", steps=6)
    a, b = load_file(whole / "adapter_model.safetensors"), load_file(pieces / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert [r["loss"] for r in log_of(whole)] == pytest.approx([r["loss"] for r in log_of(pieces)], rel=1e-5)
    seconds = [r["seconds"] for r in log_of(pieces)]  # the run's training time, across the resume
    assert seconds == sorted(seconds) and seconds[3] > seconds[2]
    assert "finished model" in train(world, pieces, "--save-every", "3", steps=6, fails=True).output
    again = train(world, pieces, "--save-every", "3", "--resume", steps=6, fails=True).output
    assert "has finished (same settings); nothing to resume" in again
    longer = " ".join(
        train(world, pieces, "--save-every", "3", "--resume", steps=9, fails=True).output.split()
    )
    assert "trained with other settings (max_steps: was 6, now 9); a finished run is not continued" in longer


def test_sigterm_checkpoints_the_update_it_stops_at_and_resume_matches(world, tmp_path):
    """A scheduler's stop (SIGTERM) ended `critic train` at once, losing every update since the last
    checkpoint; now it checkpoints the update it is at and exits 143, and --resume goes on from there."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from sigterm import sigterm_when

    stopped = tmp_path / "stopped"
    args = ["critic", "train", "--base", world / "base", "--data", world / "hra.jsonl", "--videos", world,
            "--out", stopped, "--max-steps", 40, "--lr", "5e-3", "--batch-size", "4", "--save-every", "0",
            "--no-progress"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "videolift", *map(str, args)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    ready = (stopped / "train_log.jsonl").exists
    said = " ".join(sigterm_when(proc, lambda: ready() and len(log_of(stopped)) >= 2).split())
    assert proc.returncode == 143, said
    (checkpoint,) = (stopped / "checkpoints").glob("step-*")
    at = int(checkpoint.name.split("-")[1])
    assert f"Terminated (SIGTERM) after update {at} of 40, checkpointed: what was finished is kept" in said
    assert 2 <= at < 40 and [r["step"] for r in log_of(stopped)] == list(range(1, at + 1))
    assert not (stopped / "adapter_model.safetensors").exists()
    train(world, stopped, "--save-every", "0", "--resume", steps=40)
    train(world, tmp_path / "whole", "--save-every", "0", steps=40)
    a = load_file(stopped / "adapter_model.safetensors")
    b = load_file(tmp_path / "whole" / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_critic_train_takes_align_s_names_for_the_lora_rank_and_checkpoints_and_the_group_shows_its_help(
    world, tmp_path
):
    train(world, tmp_path / "c", "--lora-rank", "4", "--checkpoint-every", "0", steps=1)  # --save-every
    config = json.loads((tmp_path / "c/train_config.json").read_text())
    assert config["lora_r"] == 4 and config["save_every"] == 0
    shown = CliRunner().invoke(app, ["critic"]).output
    assert "Usage: videolift critic" in shown and "score" in shown and "Missing command" not in shown


def test_a_diverged_loss_stops_the_run_by_name_and_keeps_the_checkpoints_before(world, tmp_path, monkeypatch):
    import videolift.critic.collate as collate

    real, calls = collate.answer_loss, []

    def diverging(model, batch):
        calls.append(1)
        loss, tokens = real(model, batch)
        return (loss * float("nan") if len(calls) >= 3 else loss), tokens

    monkeypatch.setattr(collate, "answer_loss", diverging)
    import videolift.critic.sft as sft

    bars, real_bar = [], sft._progress_bar
    monkeypatch.setattr(sft, "_progress_bar", lambda *a: bars.append(real_bar(*a)) or bars[-1])
    said = " ".join(train(world, tmp_path / "c", "--save-every", "2", steps=4, fails=True).output.split())
    assert "training diverged at update 3 (loss nan)" in said and "critic export" in said
    assert (
        len(bars) == 1 and bars[0].disable
    )  # the progress bar closed (tqdm's close disables it) on the error
    assert [r["step"] for r in log_of(tmp_path / "c")] == [1, 2]  # no NaN line
    assert (tmp_path / "c/checkpoints/step-000002").is_dir()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "c" / "tensorboard")).Reload()  # flushed as the run failed
    assert [e.step for e in events.Scalars("critic/loss")] == [1, 2]


def test_a_validation_loss_is_logged_as_the_run_goes_and_changes_nothing_trained(world, tmp_path):
    from safetensors.torch import load_file

    val = tmp_path / "val.jsonl"  # the training ratings: their loss falls as the critic learns them
    val.write_text((world / "hra.jsonl").read_text())
    train(world, tmp_path / "plain", "--save-every", "0", steps=4)
    train(world, tmp_path / "val", "--save-every", "0", "--val-data", val, "--val-every", "2", steps=4)
    a = load_file(tmp_path / "plain" / "adapter_model.safetensors")
    b = load_file(tmp_path / "val" / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # eval mode, no RNG drawn, no gradient kept
    lines = log_of(tmp_path / "val")
    assert [r["step"] for r in lines if "val_loss" in r] == [2, 4]
    assert lines[3]["val_loss"] < lines[1]["val_loss"]
    summary = json.loads((tmp_path / "val" / "train_summary.json").read_text())
    assert summary["val_loss"] == pytest.approx(lines[3]["val_loss"], abs=1e-6)
    assert not any("val_loss" in r for r in log_of(tmp_path / "plain"))
    # Without --val-every: at each epoch's end (12 examples in batches of 4: every 3 updates) and the last.
    train(world, tmp_path / "epochs", "--save-every", "0", "--val-data", val, steps=4)
    assert [r["step"] for r in log_of(tmp_path / "epochs") if "val_loss" in r] == [3, 4]
    bad = tmp_path / "bad.jsonl"
    rating = {"video_fidelity": {"label": "Good", "reason": "clear"}}
    bad.write_text(json.dumps({"video": "videos/none.mp4", "prompt": "p", "ratings": rating}) + "\n")
    refused = train(world, tmp_path / "refused", "--val-data", bad, steps=1, fails=True).output
    assert "bad.jsonl" in refused and "none.mp4" in refused and not (tmp_path / "refused").exists()
    other = tmp_path / "other.jsonl"  # rates only a dimension this critic does not answer
    rating = {"semantic_consistency": {"label": "Good", "reason": "the background is red"}}
    other.write_text(json.dumps({"video": "videos/v0.mp4", "prompt": "p", "ratings": rating}) + "\n")
    args = ("--val-data", other, "--dimensions", "video_fidelity", "--describe")  # first passes come later
    refused = train(world, tmp_path / "refused", *args, steps=1, fails=True).output
    assert "other.jsonl: no record rates the dimensions video_fidelity" in refused
    assert not (tmp_path / "refused").exists() and "describing" not in refused
    alone = CliRunner().invoke(app, ["critic", "train", "--base", str(world / "base"), "--data",
                                     str(world / "hra.jsonl"), "--videos", str(world), "--out",
                                     str(tmp_path / "alone"), "--val-every", "2"])  # fmt: skip
    assert alone.exit_code == 2 and "--val-every: needs --val-data" in alone.output


def test_the_gradient_norm_and_throughput_are_logged_and_drawn_for_tensorboard(world, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(world, tmp_path / "c", "--max-grad-norm", "0", "--save-every", "0", steps=2)
    lines = log_of(tmp_path / "c")
    assert all(
        r["grad_norm"] > 0 and r["examples_per_s"] > 0 for r in lines
    )  # grad norm without clipping too
    events = EventAccumulator(str(tmp_path / "c" / "tensorboard")).Reload()
    assert {"critic/loss", "critic/lr", "critic/grad_norm", "critic/examples_per_s"} <= set(
        events.Tags()["scalars"]
    )
    drawn = [(e.step, round(e.value, 5)) for e in events.Scalars("critic/loss")]
    assert drawn == [(r["step"], pytest.approx(r["loss"], abs=1e-5)) for r in lines]


def test_an_unfinished_run_does_not_load_as_a_critic(world, tmp_path):
    # An --overwrite run stopped before its end keeps the old run's critic_spec.json beside its own
    # weights: loading that mix would score with another run's questions.
    out = tmp_path / "critic"
    train(world, out, "--save-every", "0", "--no-reasons", steps=2)
    load_critic(out)  # finished: loads
    train(world, out, "--save-every", "2", "--overwrite", "--stop-at-step", "2", steps=4)
    assert (out / "critic_spec.json").exists()
    with pytest.raises(VideoliftError, match="has not finished.*--resume.*critic export"):
        load_critic(out)
    train(world, out, "--save-every", "2", "--resume", steps=4)
    assert load_critic(out).spec.reasons  # the new run's spec, once it has finished


def test_a_run_into_an_out_another_run_is_training_in_is_refused(world, tmp_path):
    # E.g. `--resume` while the ranks of a torchrun killed -9 still train there: refused before it writes.
    import os

    from videolift.core.files import lock_run

    out = tmp_path / "critic"
    train(world, out, "--save-every", "2", "--stop-at-step", "2", steps=4)
    held = lock_run(out, "videolift critic train")  # the other run
    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*"))
    refused = " ".join(train(world, out, "--save-every", "2", "--resume", steps=4, fails=True).output.split())
    assert f"in use by another `videolift critic train` run (process {os.getpid()})" in refused
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.rglob("*")) == before
    held.close()  # the other run has ended
    assert train(world, out, "--save-every", "2", "--resume", steps=4).exit_code == 0


def test_a_checkpoint_being_removed_stops_counting_as_complete(tmp_path):
    # Old checkpoints are rotated out; a kill halfway through removing one must not leave a
    # "complete" checkpoint without its weights (resume and export would pick it).
    from types import SimpleNamespace

    from videolift.critic import sft_outputs as sft

    def save_state(directory: str) -> None:
        Path(directory).mkdir(parents=True)
        (Path(directory) / "model.safetensors").write_bytes(b"w")

    acc = SimpleNamespace(
        wait_for_everyone=lambda: None, save_state=save_state, is_main_process=True, num_processes=1
    )
    sft.save_step_checkpoint(acc, tmp_path, 10, keep=1)
    with pytest.MonkeyPatch.context() as mp:  # the removal dies after its first file
        mp.setattr(shutil, "rmtree", lambda path, **_: (Path(path) / "model.safetensors").unlink())
        sft.save_step_checkpoint(acc, tmp_path, 20, keep=1)
    assert sorted(sft.checkpoints(tmp_path)) == [20]
    sft.save_step_checkpoint(acc, tmp_path, 30, keep=1)  # the next rotation finishes the job
    assert [p.name for p in (tmp_path / sft.CHECKPOINTS).iterdir()] == ["step-000030"]
    (tmp_path / sft.CHECKPOINTS / "step-000030" / "model.safetensors").unlink()  # e.g. removed by hand
    with pytest.raises(VideoliftError, match="incomplete checkpoint"):
        sft.export_sft_checkpoint(tmp_path / sft.CHECKPOINTS / "step-000030", "base", None, tmp_path, None)


def test_resume_refuses_edited_ratings_at_the_same_path(world, tmp_path):
    data, out = tmp_path / "hra.jsonl", tmp_path / "critic"
    lines = (world / "hra.jsonl").read_text().splitlines(keepends=True)
    data.write_text("".join(lines))
    common = ("--data", data, "--save-every", "2")
    train(world, out, *common, "--stop-at-step", "2", steps=4)
    data.write_text("".join(lines[:-1]))  # one rating fewer, same file name
    refused = train(world, out, *common, "--resume", steps=4, fails=True).output
    assert "different settings" in refused and "extra.data_sha256: was" in refused
    assert "extra.spec" not in refused  # the setting that changed is named, not every other one
    data.write_text("".join(lines))  # the original ratings again: resuming is fine
    assert train(world, out, *common, "--resume", steps=4).exit_code == 0
    assert [r["step"] for r in log_of(out)] == [1, 2, 3, 4]


def test_resume_names_the_spec_setting_that_changed(world, tmp_path):
    """A --resume with another --check-threshold was refused with two copies of the whole spec (every
    question's text, the reward, ...), ~3 KB to compare by eye; the setting that changed is named."""
    out = tmp_path / "critic"
    train(world, out, "--check", "--save-every", "1", "--stop-at-step", "1", steps=2)
    refused = " ".join(train(world, out, "--check", "--check-threshold", "0.5", "--resume", steps=2, fails=True).output.split())  # fmt: skip
    assert "different settings (extra.spec.check_threshold: was 0.05, now 0.5); only" in refused
    assert "questions" not in refused


def test_resume_refuses_a_base_rebuilt_at_the_same_path(world, tmp_path):
    base, out = tmp_path / "base", tmp_path / "critic"
    shutil.copytree(world / "base", base)
    common = ("--base", base, "--save-every", "2")
    train(world, out, *common, "--stop-at-step", "2", steps=4)
    build_tiny_vlm(base, seed=1)  # same path, same config, other weights
    refused = train(world, out, *common, "--resume", steps=4, fails=True).output
    assert "different settings" in refused and "extra.base_weights: was" in refused
    # A run recorded before base weights were: it resumes, compared by the base's path as then.
    config = json.loads((out / "train_config.json").read_text())
    del config["extra"]["base_weights"]
    (out / "train_config.json").write_text(json.dumps(config))
    assert train(world, out, *common, "--resume", steps=4).exit_code == 0
    assert [r["step"] for r in log_of(out)] == [1, 2, 3, 4]


def score(critic: Path, world: Path, out: Path, *extra: str, fails: bool = False):
    return run("critic", "score", "--critic", critic, "--manifest", world / "manifest.jsonl", "--videos", world,
               "--out", out, "--batch-size", "6", *extra, fails=fails)  # fmt: skip


def _world_with_its_missing_video(world: Path, root: Path) -> Path:
    """A copy of the world's videos and manifest where the manifest's missing video is there (fixed)."""
    shutil.copytree(world / "videos", root / "videos")
    shutil.copy(world / "manifest.jsonl", root / "manifest.jsonl")
    shutil.copy(world / "videos/v0.mp4", root / "videos/missing.mp4")
    return root


def test_finished_scores_of_other_settings_are_replaced_only_with_overwrite(world, critic_dir, tmp_path):
    out = tmp_path / "s.jsonl"
    score(critic_dir, world, out)
    before = out.read_text()
    refused = " ".join(score(critic_dir, world, out, "--temperature", "0.5", fails=True).output.split())
    assert (
        "holds the scores of another critic or settings (temperature" in refused and "--overwrite" in refused
    )
    assert out.read_text() == before
    score(critic_dir, world, out, "--temperature", "0.5", "--overwrite")
    assert json.loads(summary_path(out).read_text())["run"]["temperature"] == 0.5
    # What the critic computes in is part of its settings; files from before it was recorded were float32.
    score(critic_dir, world, out, "--overwrite")
    refused = " ".join(score(critic_dir, world, out, "--dtype", "bfloat16", fails=True).output.split())
    assert "another critic or settings (dtype)" in refused
    summary = json.loads(summary_path(out).read_text())
    del summary["run"]["dtype"]
    summary_path(out).write_text(json.dumps(summary))
    assert "(1 scored here, 4 already done" in " ".join(score(critic_dir, world, out).output.split())


def test_rank_logs_a_killed_removal_left_without_run_json_are_not_taken_as_this_runs(
    world, critic_dir, tmp_path
):
    """OUT.parts is removed at the end of a run, and by a run of other settings with --overwrite; killed
    midway, that removal could leave a rank log without its run.json (rmtree takes the files in no set
    order). Those lines are of unknown settings: a run with --temperature 0.5 rescored nothing and wrote
    them (here: greedy answers, rewards marked) as its own."""
    out = tmp_path / "s.jsonl"
    score(critic_dir, world, out)
    stale = [dict(obj, reward=0.123) for _, obj in iter_json_lines(out)]
    parts_dir(out).mkdir()
    (parts_dir(out) / "rank0.jsonl").write_text("".join(json.dumps(line) + "\n" for line in stale))
    result = " ".join(score(critic_dir, world, out, "--temperature", "0.5", "--overwrite").output.split())
    assert "(5 scored here, 0 already done" in result
    assert all(obj["reward"] != 0.123 for _, obj in iter_json_lines(out))
    assert json.loads(summary_path(out).read_text())["run"]["temperature"] == 0.5
    # The same left behind by a finished run of these settings: its OUT holds every line, nothing is redone.
    parts_dir(out).mkdir()
    (parts_dir(out) / "rank0.jsonl").write_text(json.dumps(stale[0]) + "\n")
    before = out.read_text()
    again = " ".join(score(critic_dir, world, out, "--temperature", "0.5").output.split())
    assert "(1 scored here, 4 already done" in again  # the video that could not be read, as always
    assert out.read_text() == before and not parts_dir(out).exists()


def test_a_shared_prefix_scores_as_the_unshared_batch_and_resumes_either(world, critic_dir, tmp_path):
    shared, unshared = tmp_path / "shared.jsonl", tmp_path / "unshared.jsonl"
    score(critic_dir, world, shared, "--batch-size", "12")  # the default
    score(critic_dir, world, unshared, "--batch-size", "12", "--no-share-prefix")
    assert shared.read_text() == unshared.read_text()
    assert json.loads(summary_path(shared).read_text())["run"]["share_prefix"] is True
    assert json.loads(summary_path(unshared).read_text())["run"]["share_prefix"] is False
    # Recorded, not a setting: a finished run of the other way (or of before it was recorded: unshared) is
    # resumed, its lines kept, and the summary says they were computed both ways.
    fixed = _world_with_its_missing_video(world, tmp_path / "fixed")
    summary = json.loads(summary_path(unshared).read_text())
    del summary["run"]["share_prefix"]
    summary_path(unshared).write_text(json.dumps(summary))
    resumed = score(critic_dir, fixed, unshared, "--batch-size", "12").output
    assert "1 of 5 videos to score" in " ".join(resumed.split())
    assert json.loads(summary_path(unshared).read_text())["run"]["share_prefix"] == "mixed"
    score(critic_dir, fixed, shared, "--batch-size", "12")
    assert json.loads(summary_path(shared).read_text())["run"]["share_prefix"] is True
    assert shared.read_text() == unshared.read_text()


def test_score_decodes_as_many_chunks_at_once_as_it_has_workers(world, critic_dir, tmp_path, monkeypatch):
    import threading
    import time

    import videolift.critic.score as score_module

    read, lock, running, most = score_module.sample_views, threading.Lock(), [0], [0]

    def slow(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return read(*args, **kwargs)

    monkeypatch.setattr(score_module, "sample_views", slow)
    for workers in (1, 3):  # batch 3: one video (three questions) a chunk
        most[0] = 0
        score(
            critic_dir, world, tmp_path / f"w{workers}.jsonl", "--workers", str(workers), "--batch-size", "3"
        )
        assert most[0] == workers
    assert (tmp_path / "w1.jsonl").read_text() == (tmp_path / "w3.jsonl").read_text()
    most[0] = 0
    score_manifest(load_critic(critic_dir), world / "manifest.jsonl", world, tmp_path / "w0.jsonl", batch_size=3,
                   workers=0, log=lambda *_: None)  # fmt: skip
    assert most[0] == 1 and (tmp_path / "w0.jsonl").read_text() == (tmp_path / "w1.jsonl").read_text()


def test_score_lines_resume_and_determinism(world, critic_dir, tmp_path):
    first = tmp_path / "first.jsonl"
    warned = score(critic_dir, world, first).output
    assert (
        "warning:" in warned
        and "not found" in warned
        and "not rated: its line has this error and a null reward" in warned
    )  # named
    lines = [obj for _, obj in iter_json_lines(first)]
    assert [line.get("video_id") for line in lines] == ["v0", "v1", "v2", "v3", None]
    reward = RewardConfig()
    for line in lines[:4]:
        assert line["seed"] is not None and set(line) >= {"video", "prompt", "ratings", "reward"}
        assert set(line["ratings"]) == {"semantic_consistency", "motion_smoothness", "video_fidelity"}
        parsed = {d: r["label"] for d, r in line["ratings"].items() if r["label"] is not None}
        for r in line["ratings"].values():
            assert set(r) >= {"label", "reason", "score"}
            assert r["score"] == (None if r["label"] is None else reward.score(r["label"]))
        assert line["reward"] == (pytest.approx(reward.aggregate(parsed)) if parsed else None)
    assert lines[4]["ratings"] == {} and lines[4]["reward"] is None and "not found" in lines[4]["error"]
    summary = json.loads(summary_path(first).read_text())
    assert summary["videos"] == 5 and summary["errors"] == 1 and summary["per_rank"] == {"0": 5}
    assert [u["video"] for u in summary["unreadable"]] == [lines[4]["video"]]
    assert not parts_dir(first).exists()
    (tmp_path / "a_dir").mkdir()  # an output path that is a directory: refused before scoring
    refused = run("critic", "score", "--critic", critic_dir, "--manifest", world / "manifest.jsonl",
                  "--videos", world, "--out", tmp_path / "a_dir", fails=True).output  # fmt: skip
    assert "Loading weights" not in refused  # refused before the critic loads
    assert (
        "a_dir is a directory; name a file to write" in refused and not parts_dir(tmp_path / "a_dir").exists()
    )
    # Nor may it be the manifest it reads, and a videos root that is not there is no run of unreadable videos.
    copy = tmp_path / "m.jsonl"
    shutil.copy(world / "manifest.jsonl", copy)
    same = run(
        "critic",
        "score",
        "--critic",
        critic_dir,
        "--manifest",
        copy,
        "--videos",
        world,
        "--out",
        copy,
        fails=2,
    )
    assert (
        "is also --manifest: give each its own file" in same.output
        and copy.read_bytes() == (world / "manifest.jsonl").read_bytes()
    )
    nowhere = run("critic", "score", "--critic", critic_dir, "--manifest", copy, "--videos", tmp_path / "nowhere",
                  "--out", tmp_path / "n.jsonl", fails=True).output  # fmt: skip
    assert "nowhere: the videos root is not a directory (--videos)" in " ".join(nowhere.split())
    assert "Loading weights" not in nowhere  # refused before the critic loads

    # Interrupted run: two videos logged, then a torn line. The rerun scores only the other three.
    second = tmp_path / "second.jsonl"
    parts_dir(second).mkdir()
    (parts_dir(second) / "run.json").write_text(json.dumps(summary["run"]))  # written before any line
    done = "".join(json.dumps(line) + "\n" for line in lines[:2])
    (parts_dir(second) / "rank0.jsonl").write_text(done + '{"video": "videos/v2.mp')
    result = score(critic_dir, world, second)
    assert "3 scored here, 2 already done" in result.output
    assert second.read_text() == first.read_text()  # greedy scoring is deterministic
    # A finished output of the same critic is reused: nothing to score again but the video that could not
    # be read (the file may have been fixed since: scored when it has).
    assert "1 scored here, 4 already done" in score(critic_dir, world, second).output
    assert second.read_text() == first.read_text()
    fixed = _world_with_its_missing_video(world, tmp_path / "fixed")
    assert "1 scored here, 4 already done" in score(critic_dir, fixed, second).output
    assert not any("error" in obj for _, obj in iter_json_lines(second))
    assert "0 scored here, 5 already done" in score(critic_dir, fixed, second).output
    # ... unless a video was regenerated under its name: its manifest record (here its seed) changed.
    records = [json.loads(line) for line in (world / "manifest.jsonl").read_text().splitlines()]
    records[1]["seed"] += 1
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rescored = run("critic", "score", "--critic", critic_dir, "--manifest", edited / "manifest.jsonl",
                   "--videos", fixed, "--out", second, "--batch-size", "6")  # fmt: skip
    assert "1 scored here, 4 already done" in rescored.output
    assert [obj.get("seed") for _, obj in iter_json_lines(second)] == [r.get("seed") for r in records]


def test_a_fixed_videos_fresh_score_wins_over_its_old_error_in_another_ranks_log(world, critic_dir, tmp_path):
    """A two-process run killed before its merge left a video's error line in rank 1's log; the video is
    fixed and scored again by one process (rank 0's log): the fresh line is the one kept."""
    out = tmp_path / "s.jsonl"
    score(critic_dir, world, out)
    (error,) = [obj for _, obj in iter_json_lines(out) if "error" in obj]
    parts_dir(out).mkdir()
    (parts_dir(out) / "run.json").write_text(json.dumps(json.loads(summary_path(out).read_text())["run"]))
    (parts_dir(out) / "rank1.jsonl").write_text(json.dumps(error) + "\n")
    fixed = _world_with_its_missing_video(world, tmp_path / "fixed")
    assert "1 scored here" in score(critic_dir, fixed, out).output
    assert not any("error" in obj for _, obj in iter_json_lines(out))
    # rank 1's error line is not what the scores keep: it scored none of them
    assert json.loads(summary_path(out).read_text())["per_rank"] == {"0": 1, "1": 0}


def test_per_rank_counts_a_retried_video_once(world, critic_dir, tmp_path):
    """A run killed before its merge left every video in rank 0's log, one of them unreadable; the rerun
    retries that one once it is fixed, appending a second line for it. ``per_rank`` (the videos each
    process scored) counted log lines: 6 for 5 videos (a helper saw 44 for 42 after a resume)."""
    first = tmp_path / "first.jsonl"
    score(critic_dir, world, first)
    run_json = json.loads(summary_path(first).read_text())["run"]
    out = tmp_path / "s.jsonl"
    parts_dir(out).mkdir()
    (parts_dir(out) / "run.json").write_text(json.dumps(run_json))
    (parts_dir(out) / "rank0.jsonl").write_text(first.read_text())  # 5 lines, one an error
    fixed = _world_with_its_missing_video(world, tmp_path / "fixed")
    assert "1 scored here, 4 already done" in score(critic_dir, fixed, out).output
    summary = json.loads(summary_path(out).read_text())
    assert summary["videos"] == 5 and summary["errors"] == 0
    assert summary["per_rank"] == {"0": 5}


def test_eval_reports_metrics_matching_the_scores(world, critic_dir, tmp_path):
    held_out = tmp_path / "held_out.jsonl"  # --scores over the reference labels: refused, untouched
    shutil.copy(world / "hra.jsonl", held_out)
    same = run("critic", "eval", "--critic", critic_dir, "--data", held_out, "--videos", world, "--scores", held_out, fails=2)  # fmt: skip
    assert "is also --data" in same.output and held_out.read_bytes() == (world / "hra.jsonl").read_bytes()
    scores = tmp_path / "scores.jsonl"
    result = run("critic", "eval", "--critic", critic_dir, "--data", world / "hra.jsonl", "--videos", world,
                 "--json", "--scores", scores)  # fmt: skip
    report = json.loads(result.stdout)
    lines = {obj["video_id"]: obj for _, obj in iter_json_lines(scores)}
    sc = report["dimensions"]["semantic_consistency"]
    hits = sum(lines[f"v{i}"]["ratings"]["semantic_consistency"]["label"] == SC_LABELS[i] for i in range(4))
    assert sc["n"] == 4 and sc["accuracy"] == pytest.approx(hits / 4)
    assert (
        sc["majority_baseline"] == pytest.approx(0.5)
        and sum(map(sum, (r.values() for r in sc["confusion"].values()))) == 4
    )
    assert report["dimensions"]["video_fidelity"]["majority_baseline"] == 1.0
    # v0 and v3 share a prompt: one same-prompt pair per dimension.
    assert report["pairwise_same_prompt"]["semantic_consistency"]["pairs"] == 1
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"a": "v0", "b": "v1", "winner": "a", "dimension": "semantic_consistency"}) + "\n"
    )
    result = run("critic", "eval", "--critic", critic_dir, "--data", world / "hra.jsonl", "--videos", world,
                 "--scores", scores, "--pairs", pairs)  # fmt: skip
    assert "0 of 4 videos to score" in result.output  # the kept scores are reused
    assert "macro-F1" in result.stdout and "confusion" in result.stdout and "pairwise judged" in result.stdout


def test_a_hub_check_model_or_critic_base_not_in_the_hub_cache_is_refused_before_any_work(
    world, critic_dir, hub, tmp_path, tiny_cogvideox_dir
):
    """Offline, `critic train --check --check-model ID` said so only once the first passes began, leaving
    OUT/checks.json.parts behind; `eval --critic` of a LoRA critic on a Hub base only after every model
    had generated its videos."""
    from hub_cache import publish

    out = tmp_path / "critic"
    refused = train(world, out, "--check", "--check-model", "owner/checker", steps=1, fails=True)
    text = " ".join(refused.output.split())
    assert "--check-model: cannot read the model config of 'owner/checker'" in text
    assert "HF_HUB_OFFLINE is set" in text and "`hf download owner/checker`" in text
    assert not out.exists()

    critic = shutil.copytree(critic_dir, tmp_path / "hub_critic")  # a LoRA critic trained on owner/vlm
    spec = json.loads((critic / "critic_spec.json").read_text())
    assert spec["adapter"] == "lora"
    (critic / "critic_spec.json").write_text(json.dumps(spec | {"base_model": "owner/vlm"}))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a white square on red\n")
    args = ["eval", "--model", tiny_cogvideox_dir, "--critic", critic, "--prompts", prompts, "--steps", "1"]
    refused = run(*args, "--out", tmp_path / "eval", "--no-progress", fails=True)
    text = " ".join(refused.output.split())
    assert f"--critic {critic}: its base model: cannot read the model config of 'owner/vlm'" in text
    assert "`hf download owner/vlm`" in text and not (tmp_path / "eval").exists()
    publish(hub, "owner/vlm", world / "base", "a" * 40)  # in the Hub cache: it loads and rates
    assert load_critic(critic).spec.base_model == "owner/vlm"


def test_a_first_pass_model_that_is_no_video_vlm_is_refused_by_its_option_before_any_work(world, tmp_path):
    """A text-only --check-model (or --base of a describing critic) was loaded only by the first pass,
    after OUT was made: an error not naming the option, and OUT/checks.json.parts left behind."""
    from transformers import LlamaConfig, LlamaForCausalLM

    text_only = tmp_path / "llama"
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    LlamaForCausalLM(config).save_pretrained(text_only)
    out = tmp_path / "critic"
    for option, args in (
        ("--check-model", ("--check", "--check-model", text_only)),
        ("--base", ("--base", text_only, "--describe")),
    ):
        refused = " ".join(train(world, out, *args, steps=1, fails=True).output.split())
        assert f"Error: --{option.lstrip('-')}: cannot load VLM '{text_only}' (llama)" in refused
        assert not out.exists()


def test_check_options_without_check_are_refused_not_ignored(world, tmp_path):
    """`--check-model M --check-threshold 0.3` without --check trained a plain critic, its spec recording
    the check model and threshold of a check it never had."""
    out = tmp_path / "critic"
    args = ("--check-model", world / "base", "--check-threshold", "0.3", "--check-frames", "3")
    refused = " ".join(train(world, out, *args, steps=1, fails=2).output.split())
    assert "--check-model, --check-threshold, --check-frames: needs --check" in refused
    assert not out.exists()


def test_a_check_no_question_carries_is_refused_before_any_work(world, tmp_path):
    """`--check --dimensions motion_smoothness` checked every training caption, recorded check: true
    and checked every scored video, while no question carried the check (--check-dimensions'
    semantic_consistency is not asked)."""
    out = tmp_path / "critic"
    refused = train(world, out, "--check", "--dimensions", "motion_smoothness", steps=1, fails=2).output
    refused = " ".join(refused.split())
    expected = "--check-dimensions semantic_consistency: semantic_consistency is not among the critic's"
    assert expected in refused and not out.exists()
    both = "semantic_consistency,video_fidelity"
    args = ("--check", "--dimensions", "semantic_consistency", "--check-dimensions", both)
    assert "video_fidelity is not among" in train(world, out, *args, steps=1, fails=2).output
    assert not out.exists()


def test_an_adjudicated_videos_review_replaces_its_raters_in_training_and_evaluation(world, tmp_path):
    """`annotate export --with-reviews` adds an admin's review of a doubtful video: critic train learns
    its labels and critic eval judges by them, not by the raters' records (one more vote beside them)."""
    from videolift.core.schema import Dimension, Label
    from videolift.critic.evaluate import read_eval_data

    records = [json.loads(line) for line in (world / "hra.jsonl").read_text().splitlines()]
    bob = {**records[0], "annotator": "bob"}  # a second rater of v0, agreeing with the first
    review = {
        **records[0],
        "annotator": "review:admin",
        "adjudicated": True,
        "ratings": {d: {"label": "Bad", "reason": "the admin's"} for d in records[0]["ratings"]},
    }
    data = tmp_path / "hra_reviewed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [*records, bob, review]))

    checked = read_eval_data(data, world, list(Dimension))
    v0 = next(it for it in checked.items if it.video_id == "v0")
    assert v0.labels == {d: Label.Bad for d in Dimension}  # the raters' majority: Good semantics, Bad motion
    assert checked.replaced == 2 and len(checked.records) == 4

    said = run(
        "critic", "train", "--base", world / "base", "--data", data, "--videos", world, "--out", tmp_path / "c",
        "--max-steps", "1", "--batch-size", "4",
    ).output  # fmt: skip
    flat = " ".join(said.split())
    assert "2 raters' records of adjudicated videos left out" in flat
    assert "12 examples" in flat  # 4 records of 3 dimensions; with the raters' two records of v0: 18


def test_train_and_eval_show_bars_unless_no_progress(world, critic_dir, tmp_path):
    shown = train(world, tmp_path / "shown", steps=2).stderr
    assert "training: 100%|" in shown and "loss=" in shown  # the bar of the updates
    quiet = train(world, tmp_path / "quiet", "--no-progress", steps=2)
    assert "%|" not in quiet.stderr  # not even transformers' "Loading weights" bar
    assert "finished after 2 updates" in quiet.output
    args = ["critic", "eval", "--critic", critic_dir, "--data", world / "hra.jsonl", "--videos", world]
    assert "%|" in run(*args).stderr
    quiet = run(*args, "--no-progress")
    assert "%|" not in quiet.stderr and "macro-F1" in quiet.stdout


def test_one_pass_label_only_critic(world, tmp_path):
    from videolift.critic.data import hra_examples
    from videolift.critic.spec import CriticSpec
    from videolift.data.hra_file import read_hra

    spec = CriticSpec(base_model="b", model_type="qwen2_vl", layout="one_pass", reasons=False)
    examples, skipped = hra_examples(read_hra(world / "hra.jsonl"), world, spec, file=world / "hra.jsonl")
    assert skipped == 0 and len(examples) == 4
    assert examples[1].answer == "Semantic consistency: Bad.\nMotion smoothness: Good.\nVideo fidelity: Good."

    out = tmp_path / "one_pass"
    train(world, out, "--layout", "one_pass", "--no-reasons", "--save-every", "0", steps=2)
    saved = CriticSpec.load(out)
    assert saved.layout == "one_pass" and not saved.reasons and saved.max_new_tokens < 64
    scores = tmp_path / "s.jsonl"
    score(out, world, scores)
    for _, line in iter_json_lines(scores):
        if "error" not in line:
            assert set(line["ratings"]) == {"semantic_consistency", "motion_smoothness", "video_fidelity"}


def test_describe_then_rate_critic(world, tmp_path):
    from videolift.critic.data import hra_examples
    from videolift.critic.descriptions import CACHE_FILE
    from videolift.critic.prompts import DESCRIBE_INSTRUCTION, user_text
    from videolift.critic.spec import CriticSpec
    from videolift.data.hra_file import read_hra

    # Examples: one describe example per video (the base's description is the target), then every
    # question carries that description.
    spec = CriticSpec(base_model="b", model_type="qwen2_vl", describe=True)
    records = read_hra(world / "hra.jsonl")
    seen = {world / r.video: f"description {i}" for i, r in enumerate(records)}
    examples, _ = hra_examples(records, world, spec, file=world / "hra.jsonl", descriptions=seen)
    assert len(examples) == 4 * 4
    describe = [ex for ex in examples if ex.user_text == DESCRIBE_INSTRUCTION]
    assert [ex.answer for ex in describe] == [f"description {i}" for i in range(4)]
    assert all(not ex.labels for ex in describe)
    q = spec.question(spec.dimensions[0])
    assert any(ex.user_text == user_text(records[1].prompt, q, "description 1") for ex in examples)
    with pytest.raises(ValueError, match="descriptions"):
        hra_examples(records, world, spec, file=world / "hra.jsonl")

    out = tmp_path / "describe"
    train(world, out, "--describe", "--save-every", "0", steps=2)
    cached = json.loads((out / CACHE_FILE).read_text())
    assert len(cached["descriptions"]) == 4 and cached["key"]["instruction"] == DESCRIBE_INSTRUCTION
    assert CriticSpec.load(out).describe
    scores = tmp_path / "s.jsonl"
    score(out, world, scores)
    critic = load_critic(out)
    lines = [line for _, line in iter_json_lines(scores) if "error" not in line]
    assert len(lines) == 4
    from videolift.core.video import sample_frames
    from videolift.critic.answers import describe as critic_describe

    for line in lines[:2]:
        frames = sample_frames(world / line["video"], critic.spec.num_frames)
        # The critic's own description of the video, and the ratings it gives reading it.
        assert line["description"] == critic_describe(critic, [frames])[0]
        ratings = rate(critic, [(frames, line["prompt"])], descriptions=[line["description"]])[0]
        assert {d.value: r for d, r in ratings.items()} == line["ratings"]


def test_check_then_rate_critic(world, tmp_path):
    from videolift.core.schema import Dimension
    from videolift.core.video import sample_frames
    from videolift.critic.answers import Critic, rate
    from videolift.critic.answers import check as critic_check
    from videolift.critic.checks import CACHE_FILE, NOTHING_FLAGGED, Checker, check_captions, load_checker
    from videolift.critic.data import hra_examples
    from videolift.critic.descriptions import load_describer
    from videolift.critic.prompts import user_text
    from videolift.critic.spec import CriticSpec
    from videolift.data.hra_file import read_hra

    frames = sample_frames(world / "videos/v0.mp4", 8)
    caption, ask = "a white square on red", "Caption this video."
    base_model, _, base_collator = load_describer(world / "base")
    base = Checker(base_model, base_collator)

    def checked(checker: Checker, threshold: float) -> str:
        return check_captions(checker, [frames], [caption], instruction=ask, threshold=threshold)[0]

    # The threshold decides: every word is less likely than 0.999, none less likely than 1e-9.
    assert checked(base, 1e-9) == NOTHING_FLAGGED
    flagged = checked(base, 0.999)
    assert [w.split(" (expected ")[0] for w in flagged.rstrip(".").split(", ")] == caption.split()

    out = tmp_path / "check"
    train(
        world,
        out,
        "--check",
        "--check-threshold",
        "0.999",
        "--check-instruction",
        ask,
        "--save-every",
        "0",
        steps=2,
    )
    spec = CriticSpec.load(out)
    assert spec.check and spec.check_model is None and spec.check_threshold == 0.999
    assert spec.check_instruction == ask
    cached = json.loads((out / CACHE_FILE).read_text())
    assert (
        len(cached["checks"]) == 4
        and cached["key"]["threshold"] == 0.999
        and cached["key"]["instruction"] == ask
    )
    assert cached["checks"][f"{(world / 'videos/v0.mp4').resolve()}\t{caption}"] == checked(base, 0.999)

    # Scoring checks with the base (the LoRA critic with its adapter off) and rates reading the check.
    critic = load_critic(out)
    assert critic.checker.model is critic.model and critic.checker.as_checker == critic.model.disable_adapter
    assert critic_check(critic, [(frames, caption)]) == [checked(base, 0.999)]
    scores = tmp_path / "s.jsonl"
    score(out, world, scores)
    lines = [line for _, line in iter_json_lines(scores) if "error" not in line]
    assert len(lines) == 4
    for line in lines[:2]:
        clip = sample_frames(world / line["video"], 8)
        assert (
            line["check"]
            == check_captions(base, [clip], [line["prompt"]], instruction=ask, threshold=0.999)[0]
        )
        ratings = rate(critic, [(clip, line["prompt"])], checks=[line["check"]])[0]
        assert {d.value: r for d, r in ratings.items()} == line["ratings"]
    # Only the semantic-consistency question carries the check by default (one pass: its one question).
    assert spec.check_dimensions == [Dimension.semantic_consistency]
    assert critic.prompts(caption, check="x.") == [
        (d, user_text(caption, spec.question(d), check="x." if d == Dimension.semantic_consistency else None))
        for d in spec.dimensions
    ]
    one_pass = spec.model_copy(update={"layout": "one_pass"})
    assert user_text(caption, one_pass.one_pass_question, check="x.") in [
        t for _, t in Critic(out, one_pass, None, None, None).prompts(caption, check="x.")
    ]
    records = read_hra(world / "hra.jsonl")
    every = spec.model_copy(update={"check_dimensions": list(spec.dimensions)})
    checks = {(world / r.video, r.prompt): f"w{i} (expected v)." for i, r in enumerate(records)}
    for dims, n_checked in ((spec, 4), (every, 12)):
        examples, _ = hra_examples(records, world, dims, file=world / "hra.jsonl", checks=checks)
        assert sum("Unexpected words: w" in ex.user_text for ex in examples) == n_checked
    with pytest.raises(ValueError, match="checks"):
        hra_examples(records, world, spec, file=world / "hra.jsonl")
    assert user_text("c", "q?", "d", "x.") == "c The video shows: d Unexpected words: x. q?"

    # A merged LoRA critic has no adapter to switch off: it loads the base as its check model.
    merged = load_critic(out, merge_lora=True)
    assert merged.checker.model is not merged.model
    assert critic_check(merged, [(frames, caption)]) == [checked(base, 0.999)]
    assert load_checker(spec).model is not critic.model

    # An unknown dimension is a clear error naming the setting, and nothing is written.
    bad = train(world, tmp_path / "bad", "--check", "--check-dimensions", "motion", fails=2)
    assert "--check-dimensions: unknown dimension 'motion'" in bad.output
    assert not (tmp_path / "bad").exists()


def test_full_finetune_freezes_vision_and_loads_plainly(world, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    out = tmp_path / "full"
    train(world, out, "--adapter", "full", "--save-every", "0", steps=2)
    model = AutoModelForImageTextToText.from_pretrained(out)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    before, after = load_file(world / "base/model.safetensors"), load_file(out / "model.safetensors")
    vision = [k for k in before if k.startswith("visual.")]  # saved in the original Qwen2-VL layout
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_export_of_a_checkpoint_is_the_critic_the_run_writes(world, tmp_path, adapter):
    from safetensors.torch import load_file

    run_dir, out, early = tmp_path / "run", tmp_path / "exported", tmp_path / "early"
    # stop at the last update: a checkpoint of update 4 and the finished critic, the same weights
    train(world, run_dir, "--adapter", adapter, "--save-every", "2", "--stop-at-step", "4", steps=4)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    missing = run("critic", "export", "--run", run_dir, "--out", out, "--step", "3", fails=True).output
    assert "no checkpoint of update 3" in missing and "2, 4" in missing and not out.exists()

    run("critic", "export", "--run", run_dir, "--out", out)  # the latest checkpoint
    spec = json.loads((run_dir / "critic_spec.json").read_text())
    assert json.loads((out / "critic_spec.json").read_text()) == spec
    weights = "adapter_model.safetensors" if adapter == "lora" else "model.safetensors"
    final, exported = load_file(run_dir / weights), load_file(out / weights)
    assert final.keys() == exported.keys()
    assert all(torch.equal(final[k], exported[k]) for k in final)
    probe = [(np.zeros((8, 56, 56, 3), np.uint8), "a white square on red")]
    assert rate(load_critic(out), probe) == rate(load_critic(run_dir), probe)  # as critic score loads it

    run("critic", "export", "--run", run_dir, "--out", early, "--step", "2")
    assert any(not torch.equal(final[k], v) for k, v in load_file(early / weights).items())
    assert "not empty" in run("critic", "export", "--run", run_dir, "--out", out, fails=True).output
    # --overwrite replaces OUT: never the run itself, a directory holding it, or one inside it.
    for dest in (run_dir, tmp_path, run_dir / "checkpoints"):
        refused = run("critic", "export", "--run", run_dir, "--out", dest, "--overwrite", fails=2).output
        assert "export outside the run's directory" in " ".join(refused.split())
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    run(
        "critic", "export", "--run", run_dir, "--out", run_dir / "exports/early", "--step", "2"
    )  # no overwrite
    not_a_run = run("critic", "export", "--run", out, "--out", tmp_path / "x", fails=True).output
    assert "no train_config.json" in not_a_run
    broken = tmp_path / "broken"  # a hand-edited train_config.json: named, not a traceback
    broken.mkdir()
    for text, message in [("{", "train_config.json: malformed JSON"), ("[1]", "no critic spec")]:
        (broken / "train_config.json").write_text(text)
        assert message in run("critic", "export", "--run", broken, "--out", tmp_path / "x", fails=True).output
    # A finished run checkpoints only updates before its last (--save-every): the last is the run itself.
    shutil.rmtree(run_dir / "checkpoints" / "step-000004")
    finished = run("critic", "export", "--run", run_dir, "--out", tmp_path / "y", fails=True).output
    assert "finished at update 4" in finished and "there are: 2" in finished and not (tmp_path / "y").exists()


def test_an_export_that_fails_to_take_its_place_keeps_the_old_critic_whole(world, tmp_path, monkeypatch):
    """--overwrite deleted the old critic, then renamed the new one into its place: a failure (or a kill)
    between the two left no critic at all."""
    run_dir, out = tmp_path / "run", tmp_path / "exported"
    train(world, run_dir, "--save-every", "2", "--stop-at-step", "2", steps=4)
    run("critic", "export", "--run", run_dir, "--out", out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    partial = out.with_name(out.name + ".partial")
    real_replace, real_rename = os.replace, Path.rename

    def refuse(source, target) -> None:
        if Path(source) == partial:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", lambda a, b: refuse(a, b) or real_replace(a, b))
    monkeypatch.setattr(Path, "rename", lambda a, b: refuse(a, b) or real_rename(a, b))
    args = ["critic", "export", "--run", run_dir, "--out", out, "--step", "2", "--overwrite"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1 and "Input/output error" in result.output, result.output
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not out.with_name(f".{out.name}.old").exists()


def test_export_reads_the_first_passes_from_the_runs_cache_dir_and_resume_may_move_it(world, tmp_path):
    """`critic export` without --cache-dir made a check-then-rate run's first passes again in the run
    directory (hours of checking at LiFT's scale): the run now records its --cache-dir."""
    run_dir, shared, out = tmp_path / "run", tmp_path / "shared", tmp_path / "exported"
    train(
        world, run_dir, "--check", "--cache-dir", shared, "--save-every", "2", "--stop-at-step", "2", steps=4
    )
    made = sorted(p.name for p in run_dir.iterdir())
    said = " ".join(run("critic", "export", "--run", run_dir, "--out", out).output.split())
    assert f"first passes from the run's --cache-dir {shared.resolve()}" in said and "checking" not in said
    assert sorted(p.name for p in run_dir.iterdir()) == made  # nothing made again there
    assert json.loads((out / "critic_spec.json").read_text())["check"] is True
    # Not a setting: a resume may name another (its first passes are made there).
    train(
        world, run_dir, "--check", "--cache-dir", tmp_path / "moved", "--resume", "--save-every", "2", steps=4
    )
    assert (run_dir / "critic_spec.json").is_file()


class Killed(BaseException):
    """A kill -9 at that point: nothing after it runs."""


def test_an_export_killed_while_replacing_its_out_leaves_no_half_deleted_critic(world, tmp_path, monkeypatch):
    """`critic export --overwrite` deleted the earlier export, then renamed the new one in: killed in the
    deletion, OUT was a critic missing some files (loaded without its tokenizer_config.json, a traceback
    without its chat template). The earlier export is moved aside first: OUT is one whole critic or none."""
    from videolift.critic.train import export_critic

    run_dir, out = tmp_path / "run", tmp_path / "exported"
    train(world, run_dir, "--save-every", "2", "--stop-at-step", "2", steps=4)
    run("critic", "export", "--run", run_dir, "--out", out)
    files = sorted(p.name for p in out.iterdir())
    real = shutil.rmtree

    def killed_midway(path, *args, **kwargs):
        if (Path(path) / "critic_spec.json").is_file():  # a critic's removal, killed after one file
            (Path(path) / "critic_spec.json").unlink()
            raise Killed
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "rmtree", killed_midway)
        with pytest.raises(Killed):
            export_critic(run_dir, out, overwrite=True, log=lambda *a, **k: None)
    assert sorted(p.name for p in out.iterdir()) == files
    run("critic", "export", "--run", run_dir, "--out", out, "--overwrite")  # the same command again
    assert sorted(p.name for p in out.iterdir()) == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "run"]  # nothing left aside


def test_runs_share_a_check_cache_one_file_per_setting(world, tmp_path, monkeypatch):
    import videolift.critic.checks as checks_module

    shared = tmp_path / "cache"
    train(world, tmp_path / "a", "--check", "--cache-dir", shared, "--save-every", "0", steps=1)
    (first,) = shared.glob("checks-*.json")
    assert len(json.loads(first.read_text())["checks"]) == 4 and not (tmp_path / "a/checks.json").exists()

    def no_checking(*args, **kwargs):
        raise AssertionError("the cached checks were computed again")

    with monkeypatch.context() as patch:  # same settings, another run: every check comes from the cache
        patch.setattr(checks_module, "check_files", no_checking)
        train(world, tmp_path / "b", "--check", "--cache-dir", shared, "--save-every", "0", steps=1)
    before = first.read_text()
    train(
        world,
        tmp_path / "c",
        "--check",
        "--check-threshold",
        "0.5",
        "--cache-dir",
        shared,
        "--save-every",
        "0",
        steps=1,
    )
    assert len(list(shared.glob("checks-*.json"))) == 2 and first.read_text() == before


def test_an_interrupted_first_pass_keeps_what_it_computed(world, tmp_path, monkeypatch):
    """The first pass is logged a chunk at a time: a run stopped there (here: the check model failing at
    its third video) keeps the checks made, and the same command computes only the others."""
    import videolift.critic.checks as checks_module
    import videolift.critic.text_cache as text_cache

    out, whole = tmp_path / "c", tmp_path / "whole"
    train(world, whole, "--check", "--save-every", "0", steps=1)
    monkeypatch.setattr(text_cache, "CHUNK", 1)
    real, checked = checks_module.check_files, []

    def failing_at_the_third(checker, pairs, **kwargs):
        if len(checked) == 2:
            raise RuntimeError("a driver error")
        checked.extend(pairs)
        return real(checker, pairs, **kwargs)

    monkeypatch.setattr(checks_module, "check_files", failing_at_the_third)
    with pytest.raises(RuntimeError, match="a driver error"):
        train(world, out, "--check", "--save-every", "0", steps=1)
    (log,) = (out / "checks.json.parts").glob("*.jsonl")  # this process's, kept
    assert len(log.read_text().splitlines()) == 2 and not (out / "checks.json").exists()

    checked.clear()
    monkeypatch.setattr(
        checks_module,
        "check_files",
        lambda checker, pairs, **kwargs: checked.extend(pairs) or real(checker, pairs, **kwargs),
    )
    train(world, out, "--check", "--save-every", "0", steps=1)
    assert len(checked) == 2  # the two the first try did not reach
    assert json.loads((out / "checks.json").read_text()) == json.loads((whole / "checks.json").read_text())
    assert not (out / "checks.json.parts").exists()


def test_a_first_pass_cache_shared_with_a_running_run_leaves_its_log_alone(tmp_path):
    """Runs sharing a --cache-dir may overlap: one merges what another has logged so far, and removes only
    the logs nobody holds (a running process locks its own)."""
    import fcntl

    from videolift.critic.text_cache import cached_texts, key_digest, parts_dir

    path, key = tmp_path / "checks.json", {"model": "m"}
    parts_dir(path).mkdir()
    dead, running = parts_dir(path) / "host-1-aa.jsonl", parts_dir(path) / "host-2-bb.jsonl"
    line = {"key": key_digest(key), "name": "a", "text": "A"}
    dead.write_text(json.dumps(line) + "\n" + '{"key": "')  # killed mid-line
    running.write_text(json.dumps(line | {"name": "b", "text": "B"}) + "\n")
    computed: list[list[str]] = []

    def compute(items: list[str]) -> list[str]:
        computed.append(items)
        return [i.upper() for i in items]

    with running.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        texts = cached_texts(path, key, "checks", {i: i for i in "abc"}, compute, lambda *_: None)
        assert texts == {"a": "A", "b": "B", "c": "C"} and computed == [["c"]]
        assert not dead.exists() and running.exists()  # the running run's log stays
        assert json.loads(path.read_text())["checks"] == {"a": "A", "b": "B", "c": "C"}
        held.write(json.dumps(line | {"name": "d", "text": "D"}) + "\n")  # its last line, then it dies
    said: list[tuple] = []
    cached_texts(path, key, "checks", {"a": "a", "a2": "a"}, compute, lambda *n: said.append(n))
    assert not parts_dir(path).exists() and computed == [["c"]]  # released: merged and removed
    assert json.loads(path.read_text())["checks"] == {"a": "A", "b": "B", "c": "C", "d": "D"}
    cached_texts(path, key, "checks", {"e": "e", "e2": "e"}, compute, lambda *n: said.append(n))
    assert said == [(1, 0, 1)] and computed == [["c"], ["e"]]  # one text for two items named alike


def test_descriptions_of_a_base_rebuilt_at_the_same_path_are_made_again(world, tmp_path, monkeypatch):
    import videolift.critic.descriptions as descriptions

    base, cache = tmp_path / "base", tmp_path / "cache"
    shutil.copytree(world / "base", base)
    common = ("--base", base, "--describe", "--cache-dir", cache, "--save-every", "0")
    train(world, tmp_path / "a", *common, steps=1)
    real, described = descriptions.describe_files, []
    monkeypatch.setattr(descriptions, "describe_files", lambda *a, **k: described.append(a) or real(*a, **k))
    train(world, tmp_path / "b", *common, steps=1)
    assert not described  # the same base: from the cache
    build_tiny_vlm(base, seed=1)  # same path, other weights
    train(world, tmp_path / "c", *common, steps=1)
    assert described and len(list(cache.glob("descriptions-*.json"))) == 2


def test_first_passes_run_in_the_runs_dtype_and_a_checker_where_its_critic_is(world, tmp_path, monkeypatch):
    import videolift.critic.descriptions as descriptions
    from videolift.critic.checks import load_checker
    from videolift.critic.spec import CriticSpec

    asked = []

    class Asked(Exception):
        pass

    def spy(model_dir, max_pixels=None, min_pixels=None, **where):
        asked.append(where)
        raise Asked  # enough: what it was asked for

    with monkeypatch.context() as patch:
        patch.setattr(descriptions, "load_describer", spy)
        with pytest.raises(Asked):
            train(world, tmp_path / "c", "--check", "--dtype", "bfloat16", steps=1)
    assert asked == [{"dtype": "bfloat16", "device": torch.device("cpu")}]
    # Scoring: a check model other than the critic's base loads in the critic's dtype (on its device).
    critic_model, _, collator = descriptions.load_describer(world / "base", dtype="bfloat16")
    spec = CriticSpec(
        base_model=str(world / "base"), model_type="qwen2_vl", check=True, check_model=str(world / "base")
    )
    checker = load_checker(spec, critic_model=critic_model, collator=collator)
    assert checker.model is not critic_model and checker.model.dtype == torch.bfloat16


def test_pairs_sampling_critic_is_fed_frame_steps(world, tmp_path, monkeypatch):
    import videolift.critic.score as score_module
    from videolift.core.video import sample_frames
    from videolift.critic.checks import CACHE_FILE, check_captions
    from videolift.critic.data import FrameCache
    from videolift.critic.spec import CriticSpec

    # v0's square moves 3 px per frame: its left edge tells which of the 12 frames a sample is.
    cols = [
        int(np.argmax(f[28, :, 1] > 128)) for f in FrameCache(4, sampling="pairs")(world / "videos/v0.mp4")
    ]
    assert [(c - 4) // 3 for c in cols] == [0, 1, 10, 11]

    train(world, tmp_path / "odd", "--frame-sampling", "pairs", "--num-frames", "3", steps=1, fails=2)
    assert not (tmp_path / "odd").exists()
    # The check model may read its own view (--check-frames): here 3 frames spread uniformly.
    out = tmp_path / "pairs"
    train(world, out, "--frame-sampling", "pairs", "--num-frames", "4", "--check", "--check-threshold", "0.999",
          "--check-frames", "3", "--save-every", "0", steps=2)  # fmt: skip
    spec = CriticSpec.load(out)
    assert (spec.frame_sampling, spec.num_frames, spec.check_view) == ("pairs", 4, (3, "uniform"))
    assert json.loads((out / CACHE_FILE).read_text())["key"]["num_frames"] == 3

    fed = []
    real = score_module.sample_views
    monkeypatch.setattr(
        score_module, "sample_views", lambda path, views, **k: fed.extend(views) or real(path, views, **k)
    )
    scores = tmp_path / "s.jsonl"
    score(out, world, scores)
    assert fed and set(fed) == {(4, "pairs"), (3, "uniform")}
    critic = load_critic(out)
    line = next(line for _, line in iter_json_lines(scores) if "error" not in line)
    seen = sample_frames(world / line["video"], 3)
    assert (
        line["check"]
        == check_captions(
            critic.checker, [seen], [line["prompt"]], instruction=spec.check_instruction, threshold=0.999
        )[0]
    )
    with pytest.raises(ValueError, match="check_frames"):
        score_module.rate(critic, [(seen, line["prompt"])])


def test_loading_refuses_a_critic_fed_differently(critic_dir, tmp_path):
    with pytest.raises(VideoliftError, match="num_frames=4"):
        load_critic(critic_dir, num_frames=4)
    copy = tmp_path / "copy"
    shutil.copytree(critic_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    spec = json.loads((copy / "critic_spec.json").read_text())
    spec["video_processor"]["size"]["longest_edge"] = 9999
    (copy / "critic_spec.json").write_text(json.dumps(spec))
    with pytest.raises(VideoliftError, match="video settings differ"):
        load_critic(copy)


def test_pipeline_critic_stage_resumes_its_own_run_and_replaces_any_other(world, tmp_path, capsys):
    """`videolift run`'s critic stage: a killed run continues from its checkpoint, a finished one of
    the same settings is kept (the stage was killed before its manifest recorded it); a finished run or
    one of other settings in the same directory is replaced (it is never mixed in)."""
    from videolift.critic.sft import SFTConfig
    from videolift.pipeline.stages import _train_critic_quietly

    out = tmp_path / "critic"

    def stage(lr: float = 5e-3, **extra) -> dict:
        cfg = SFTConfig(adapter="full", lr=lr, max_steps=4, batch_size=4, save_every=2)
        _train_critic_quietly(base=str(world / "base"), data=world / "hra.jsonl", videos=world, out=out, cfg=cfg, **extra)  # fmt: skip
        summary = out / "train_summary.json"
        return json.loads(summary.read_text()) if summary.exists() else {}

    assert stage(stop_at_step=2) == {}  # "killed" after update 2's checkpoint
    assert "resumed" not in capsys.readouterr().out
    assert stage()["resumed_from"] == 2 and [r["step"] for r in log_of(out)] == [1, 2, 3, 4]
    # Said as `critic train --resume` says it (the stage's other log lines stay quiet).
    assert capsys.readouterr().out.strip() == "critic: resumed from step-000002 (update 2 of 4)"
    weights = (out / "model.safetensors").read_bytes()
    assert stage()["resumed_from"] == 2 and (out / "model.safetensors").read_bytes() == weights  # kept
    replaced = stage(lr=1e-3)  # finished, other settings: trained again from the start
    assert replaced["resumed_from"] == 0 and replaced["steps"] == 4
    assert json.loads((out / "train_config.json").read_text())["lr"] == 1e-3
    stage(lr=2e-3, stop_at_step=2)  # an unfinished run of other settings is replaced too
    assert stage()["resumed_from"] == 0
    assert json.loads((out / "train_config.json").read_text())["lr"] == 5e-3


def test_pipeline_score_stage_says_how_many_videos_it_continues_from(world, critic_dir, tmp_path, capsys):
    """Inside `run` the score stage said nothing of the videos an earlier attempt had scored, where
    `critic score` says "N already done"."""
    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.stages import score_stage

    w = tmp_path / "w"
    (w / "align_videos").mkdir(parents=True)
    (w / "critic").symlink_to(critic_dir)
    (w / "align_videos" / "videos").symlink_to(world / "videos")
    (tmp_path / "p.yaml").write_text(f"workdir: {w}\n")
    cfg = PipelineConfig.load(tmp_path / "p.yaml")
    lines = (world / "manifest.jsonl").read_text().splitlines(keepends=True)
    (w / "align_videos" / "manifest.jsonl").write_text("".join(lines[:2]))
    score_stage(cfg, False).run()
    assert "continued" not in capsys.readouterr().out  # nothing scored before: nothing to say
    (w / "align_videos" / "manifest.jsonl").write_text("".join(lines))  # the first two are kept
    assert score_stage(cfg, False).run()["videos"] == 5
    said = " ".join(capsys.readouterr().out.split())
    assert "score: continued: 2 of its 5 videos were already scored (kept)" in said, said


def test_the_same_loop_does_caption_pretraining(world, tmp_path):
    from videolift.critic.data import caption_examples
    from videolift.critic.sft import SFTConfig, run_sft
    from videolift.models.vlm import load_vlm

    pairs = [
        (world / f"videos/v{i}.mp4", f"A white square moves right on {c}.") for i, c in enumerate(COLORS)
    ]
    examples = caption_examples(pairs)
    assert examples[0].user_text == "Describe the video." and examples[0].answer.startswith("A white square")
    out = tmp_path / "pretrained"
    said = []
    result = run_sft(examples, str(world / "base"), out, SFTConfig(adapter="full", max_steps=3, lr=5e-3, save_every=0, num_frames=3), log=said.append)  # fmt: skip
    assert result.steps == 3 and (out / "train_summary.json").is_file()
    # Qwen-VL takes frames in pairs: an odd count gets its last frame repeated, which the run says
    assert any(
        "--num-frames 3 is not a multiple of this model's temporal patch (2 frames)" in s for s in said
    )
    assert any("--num-frames 4 samples a frame there instead" in s for s in said)
    model, processor = load_vlm(out)  # a plain model directory: usable as `critic train --base`
    assert model.config.model_type == "qwen2_vl" and processor.video_processor is not None


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_qwen3_critics_read_timestamps_and_a_per_frame_budget(world, tmp_path, family):
    import re

    from videolift.core.video import sample_frames, sample_indices
    from videolift.critic.collate import Item
    from videolift.models.tiny_vlm import TinyVLMConfig

    build_tiny_vlm(tmp_path / "qwen3", TinyVLMConfig(family=family))
    out = tmp_path / "critic"
    run("critic", "train", "--base", tmp_path / "qwen3", "--data", world / "hra.jsonl", "--videos", world,
        "--out", out, "--max-steps", 4, "--lr", "5e-3", "--batch-size", "4", "--max-pixels", 56 * 56)  # fmt: skip
    critic = load_critic(out)
    assert critic.spec.model_type == family and critic.spec.max_pixels == 56 * 56
    # Plain transformers takes the frames it is given, as videolift does (it sampled its own by default).
    from transformers import AutoProcessor

    assert AutoProcessor.from_pretrained(out).video_processor.do_sample_frames is False
    # The prompt tells the model when each temporal patch was taken: from the file's 8 fps and the
    # sampled frames' indices in its 12 frames (Qwen3-VL averages the two frames of a patch).
    batch = critic.collator([Item(sample_frames(world / "videos/v0.mp4", 8), "a white square")])
    text = critic.processor.tokenizer.decode(batch["input_ids"][0])
    idx = sample_indices(12, 8)
    expected = [f"<{(idx[i] + idx[i + 1]) / 2 / 8:.1f} seconds>" for i in range(0, 8, 2)]
    assert re.findall(r"<[\d.]+ seconds>", text) == expected and expected[-1] == "<1.2 seconds>"
    # --max-pixels is per frame (Qwen3-VL's processor budgets all frames together): 56x56 frames,
    # a 4x4 grid of 14-px patches, for each of the 4 temporal patches.
    assert batch["video_grid_thw"].tolist() == [[4, 4, 4]]
    scores = tmp_path / "scores.jsonl"
    score(out, world, scores)
    lines = [obj for _, obj in iter_json_lines(scores)]
    assert len(lines) == 5 and sum("error" in line for line in lines) == 1  # the missing video


def test_a_critic_trained_in_its_own_process_equals_one_trained_here(world, tmp_path):
    """The pipeline's parallel critics (one process, one thread each) train exactly what it would."""
    from safetensors.torch import load_file

    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.stages import critic_stage

    (tmp_path / "hra_split").mkdir()
    shutil.copy(world / "hra.jsonl", tmp_path / "hra_split/train.jsonl")
    shutil.copy(world / "hra.jsonl", tmp_path / "hra_split/test.jsonl")
    critic = {"max_steps": 3, "batch_size": 4, "lr": 5e-3, "parallel": True, "val_every": 2}
    cfg = PipelineConfig.model_validate({"workdir": str(tmp_path), "critic": critic})
    here = critic_stage(cfg, str(world / "base"), world, "here", True)
    there = critic_stage(cfg, str(world / "base"), world, "there", True, own_process=True)
    assert here.settings == there.settings and "parallel" not in here.settings  # when, not what
    assert here.run() == {"reasons": True}
    result = there.run()
    assert result["peak_rss_mb"] > 0
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("here", "there"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # critic.val_every: the held-out split's loss, logged (the same in both)
    here_val, there_val = ([r.get("val_loss") for r in log_of(tmp_path / n)] for n in ("here", "there"))
    assert here_val[0] is None and None not in here_val[1:] and here_val == there_val


# ---- refusals before any work ------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [
        ("--batch-size", "0"),
        ("--lora-r", "0"),
        ("--lr", "-1"),
        ("--grad-accum", "0"),
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--epochs", "inf"),
        ("--max-steps", "-1"),
        ("--num-frames", "0"),
        ("--save-every", "-1"),
        ("--lora-alpha", "0"),
        ("--lora-dropout", "1"),
        ("--lora-dropout", "-0.1"),
        ("--max-new-tokens", "0"),
        ("--dtype", "fp33"),
        ("--seed", "-1"),
    ],
)
def test_train_refuses_a_bad_setting_by_its_option_before_writing(world, tmp_path, option, value):
    out = tmp_path / "critic"
    # The bad value comes last: it overrides train()'s own --max-steps / --batch-size.
    refused = train(world, out, option, value, steps=1, fails=2).output  # a usage error
    assert f"Error: {option} {value}" in refused and "Traceback" not in refused
    assert not out.exists()  # no train_config.json that would make the corrected run "unfinished"


@pytest.mark.parametrize("value", ["", ","])
def test_lora_targets_that_name_no_layer_are_refused_not_read_as_every_layer(world, tmp_path, value):
    refused = train(world, tmp_path / "critic", "--lora-targets", value, steps=1, fails=2).output
    assert "Error: --lora-targets: names no layer" in refused and not (tmp_path / "critic").exists()


def test_a_refused_run_leaves_out_free_for_the_corrected_command(world, tmp_path, critic_dir):
    out = tmp_path / "critic"
    # Settings found bad only once the model is loaded: still refused before OUT is written.
    assert "--lora-targets nope: matches no linear layer" in train(world, out, "--lora-targets", "nope", steps=1, fails=True).output  # fmt: skip
    assert not out.exists()
    assert "finished after 1 updates" in train(world, out, "--lora-targets", "q_proj", steps=1).output
    # A refused --overwrite leaves the run it would have replaced as it was.
    kept = tmp_path / "kept"
    shutil.copytree(critic_dir, kept)
    before = {p.name: p.read_bytes() for p in kept.iterdir() if p.is_file()}
    train(world, kept, "--overwrite", "--lora-targets", "nope", steps=1, fails=True)
    assert {p.name: p.read_bytes() for p in kept.iterdir() if p.is_file()} == before
    # An accepted one replaces all of it: the LoRA critic's adapter must not load onto the new full
    # weights (transformers attaches an adapter_config.json it finds beside them).
    assert (kept / "adapter_model.safetensors").exists()
    train(world, kept, "--overwrite", "--adapter", "full", steps=1)
    assert not any(kept.glob("adapter_*")) and (kept / "model.safetensors").exists()
    assert json.loads((kept / "critic_spec.json").read_text())["adapter"] == "full"


def test_a_critic_is_not_written_over_its_base(world, tmp_path):
    # It was: the critic's config, weights and tokenizer replaced the base's (an adapter beside them made
    # the next run on that base a peft traceback), and --overwrite deleted the base's weights first.
    base = tmp_path / "base"
    shutil.copytree(world / "base", base)
    before = {p.name: p.read_bytes() for p in base.iterdir()}
    for out, extra in ((base, ()), (tmp_path / "." / "base", ("--overwrite", "--adapter", "full"))):
        refused = run(
            "critic", "train", "--base", base, "--data", world / "hra.jsonl", "--videos", world, "--out", out,
            "--max-steps", "1", *extra, fails=2,
        ).output  # fmt: skip
        assert f"--out {out} is also --base: give the critic its own directory" in " ".join(refused.split())
    assert {p.name: p.read_bytes() for p in base.iterdir()} == before


def test_a_base_holding_an_adapter_is_refused_before_training(world, critic_dir, tmp_path):
    # A model with a critic's adapter beside it (saved into its base by an older version) was a peft
    # traceback ("No modules were targeted"): transformers loads the adapter onto the weights.
    mixed = tmp_path / "mixed"
    shutil.copytree(world / "base", mixed)
    for adapter in critic_dir.glob("adapter_*"):
        shutil.copy(adapter, mixed)
    out = tmp_path / "c"
    for base, says in (
        (mixed, "holds a model (config.json and its weights) and a peft adapter beside it"),
        (critic_dir, f"holds a peft adapter (adapter_config.json, on {world / 'base'}), not a model"),
    ):
        refused = run("critic", "train", "--base", base, "--data", world / "hra.jsonl", "--videos", world,
                      "--out", out, "--max-steps", "1", fails=True).output  # fmt: skip
        assert f"--base {base}: {says}" in " ".join(refused.split()), refused
    assert not out.exists()


def _with_bad_videos(world: Path, tmp_path: Path) -> Path:
    """The world's records with a missing video on line 3 and a non-video on line 6."""
    shutil.copytree(world / "videos", tmp_path / "videos")
    (tmp_path / "videos/not_a_video.mp4").write_text("not a video")
    good = [json.loads(line) for line in (world / "hra.jsonl").read_text().splitlines()]
    missing = dict(good[0], video_id="gone", video="videos/gone.mp4")
    broken = dict(good[1], video_id="broken", video="videos/not_a_video.mp4")
    data = tmp_path / "hra.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [*good[:2], missing, *good[2:], broken]))
    return data


def test_train_and_eval_refuse_what_hra_validate_refuses(world, critic_dir, tmp_path):
    # A rater's second record of one video counted twice in training and outvoted the others in a test set.
    lines = (world / "hra.jsonl").read_text().splitlines(keepends=True)
    lines[0] = json.dumps(json.loads(lines[0]) | {"annotator": "alice"}) + "\n"
    twice = tmp_path / "twice.jsonl"
    twice.write_text("".join([*lines, lines[0]]))
    where = f"{twice}, line {len(lines) + 1}"
    trained = run("critic", "train", "--base", world / "base", "--data", twice, "--videos", world,
                  "--out", tmp_path / "c", "--max-steps", "1", fails=True).output  # fmt: skip
    judged = run(
        "critic", "eval", "--critic", critic_dir, "--data", twice, "--videos", world, fails=True
    ).output
    for output in (trained, judged):
        assert where in " ".join(output.split()) and "second record" in output, output
    assert not (tmp_path / "c").exists()


def test_train_refuses_missing_and_unreadable_videos_before_training(world, tmp_path):
    data, out = _with_bad_videos(world, tmp_path), tmp_path / "critic"
    refused = run("critic", "train", "--base", world / "base", "--data", data, "--videos", tmp_path,
                  "--out", out, "--max-steps", "1", fails=True).output  # fmt: skip
    assert "2 record(s) name a missing or unreadable video" in refused
    assert f"{data}, line 3, field 'video'" in refused and "gone.mp4: file not found" in refused
    assert f"{data}, line 6, field 'video'" in refused and "not_a_video.mp4: not a readable video" in refused
    assert not out.exists()
    # A root that is not a directory, once (not a "file not found" for every record); --val-videos too
    videos = tmp_path / "nope"
    for where in (("--videos", videos), ("--videos", world, "--val-data", data, "--val-videos", videos)):
        refused = run("critic", "train", "--base", world / "base", "--data", world / "hra.jsonl", *where,
                      "--out", out, "--max-steps", "1", fails=True).output  # fmt: skip
        assert f"{videos}: the videos root of " in refused and "file not found" not in refused
    assert not out.exists()


def test_train_errors_name_the_jsonl_line_not_a_record_index(world, tmp_path):
    from videolift.core.errors import DataError
    from videolift.critic.data import hra_examples
    from videolift.critic.spec import CriticSpec
    from videolift.data.hra_file import read_hra_lines

    data = _with_bad_videos(world, tmp_path)
    numbered = read_hra_lines(data)
    assert [line for line, _ in numbered] == [1, 2, 3, 4, 5, 6]
    spec = CriticSpec(base_model="b", model_type="qwen2_vl")
    with pytest.raises(DataError, match=r"line 3, field 'video': video not found") as err:
        hra_examples([r for _, r in numbered], tmp_path, spec, file=data, lines=[n for n, _ in numbered])
    assert err.value.line == 3 and err.value.record is None


def test_eval_refuses_a_video_under_two_ids_before_scoring(world, critic_dir, tmp_path):
    # `critic score` takes a video once: its temporary manifest was refused, named as that file.
    lines = (world / "hra.jsonl").read_text().splitlines(keepends=True)
    again = dict(json.loads(lines[0]), video_id="v0-again", prompt="a white square on grey")
    data = tmp_path / "hra.jsonl"
    data.write_text("".join([*lines, json.dumps(again) + "\n"]))
    refused = run(
        "critic", "eval", "--critic", critic_dir, "--data", data, "--videos", world, fails=True
    ).output
    where = (
        f"{data}, line {len(lines) + 1}, field 'video_id': video 'videos/v0.mp4' is video id 'v0' on line 1"
    )
    assert where in " ".join(refused.split()), refused


def test_eval_refuses_unreadable_videos_before_scoring(world, critic_dir, tmp_path):
    data, scores = _with_bad_videos(world, tmp_path), tmp_path / "scores.jsonl"
    refused = run("critic", "eval", "--critic", critic_dir, "--data", data, "--videos", tmp_path,
                  "--scores", scores, fails=True).output  # fmt: skip
    assert f"{data}, line 3, field 'video'" in refused and f"{data}, line 6, field 'video'" in refused
    assert "accuracy over the rest would not be comparable" in refused
    assert not scores.exists() and "videos to score" not in refused


def test_eval_reads_its_data_before_the_critic_loads(world, critic_dir, tmp_path, monkeypatch):
    # A bad --data (or --pairs, or videos root) was reported only after the model load: minutes at 7B.
    import videolift.critic.answers as answers

    def no_load(*args, **kwargs):
        raise AssertionError("the critic loaded before its data was checked")

    monkeypatch.setattr(answers, "load_critic", no_load)
    good = world / "hra.jsonl"
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text((world / "hra.jsonl").read_text() + "{not json\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"a": "v0", "b": "gone", "winner": "a"}) + "\n")
    for where, says in (
        (("--data", malformed, "--videos", world), f"{malformed}, line 5"),
        (("--data", good, "--videos", tmp_path / "nope"), "the videos root of"),
        (("--data", good, "--videos", world, "--pairs", pairs), f"{pairs}, line 1, field 'b'"),
    ):
        refused = run("critic", "eval", "--critic", critic_dir, *where, fails=True).output
        assert says in " ".join(refused.split()), refused


def test_eval_names_a_video_that_opens_but_does_not_decode(world, critic_dir, tmp_path, monkeypatch):
    import videolift.core.video as video

    data = _with_bad_videos(world, tmp_path)
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:2] + lines[3:]))  # the non-video is now on line 5
    probe = video.probe_video
    monkeypatch.setattr(
        video, "probe_video", lambda p, **k: None if "not_a_video" in str(p) else probe(p, **k)
    )
    result = run("critic", "eval", "--critic", critic_dir, "--data", data, "--videos", tmp_path, "--json")
    assert (
        f"warning: {data}, line 5, field 'video':" in result.stderr and "count as unparsed" in result.stderr
    )
    report = json.loads(result.stdout)
    assert report["errors"] == 1 and [u["line"] for u in report["unreadable"]] == [5]


def test_pipeline_critic_eval_refuses_a_test_video_that_does_not_decode(
    world, critic_dir, tmp_path, monkeypatch
):
    """`videolift run` stops there, naming the video, rather than recording an accuracy that counts it as
    a wrong answer (and staying "up to date" once the video is fixed)."""
    import videolift.core.video as video
    from videolift.pipeline.config import PipelineConfig
    from videolift.pipeline.stages import critic_eval_stage

    data = _with_bad_videos(world, tmp_path)
    lines = data.read_text().splitlines(keepends=True)
    (tmp_path / "hra_split").mkdir()
    (tmp_path / "hra_split/test.jsonl").write_text("".join(lines[:2] + lines[3:]))  # the non-video: line 5
    shutil.copytree(critic_dir, tmp_path / "critic")
    probe = video.probe_video
    monkeypatch.setattr(
        video, "probe_video", lambda p, **k: None if "not_a_video" in str(p) else probe(p, **k)
    )
    stage = critic_eval_stage(
        PipelineConfig.model_validate({"workdir": str(tmp_path)}), tmp_path, "critic", False
    )
    with pytest.raises(VideoliftError, match=r"1 test video\(s\) could not be read \(.*test.jsonl, line 5: "):
        stage.run()
    assert not (tmp_path / "critic_eval.json").exists()  # not done: rerun once fixed


def test_eval_judges_a_critic_on_its_own_dimensions_and_refuses_bad_pairs_before_scoring(world, tmp_path):
    """A critic trained on a subset of the dimensions is judged on those (the others used to count as
    wrong); a pairs file naming an unknown video or another dimension, and an HRA file giving one id
    two videos, are refused before any video is scored."""
    out = tmp_path / "semantic"
    train(world, out, "--dimensions", "semantic_consistency", "--save-every", "0", steps=2)
    scores = tmp_path / "scores.jsonl"
    report = json.loads(run("critic", "eval", "--critic", out, "--data", world / "hra.jsonl", "--videos", world,
                            "--json", "--scores", scores).stdout)  # fmt: skip
    assert set(report["dimensions"]) == {"semantic_consistency"}
    assert report["mean_accuracy"] == report["dimensions"]["semantic_consistency"]["accuracy"]

    def refused(pairs: str = "", data: Path = world / "hra.jsonl") -> str:
        (tmp_path / "pairs.jsonl").write_text(pairs)
        extra = ("--pairs", tmp_path / "pairs.jsonl") if pairs else ()
        said = run("critic", "eval", "--critic", out, "--data", data, "--videos", world,
                   "--scores", tmp_path / "new.jsonl", *extra, fails=True).output  # fmt: skip
        assert not (tmp_path / "new.jsonl").exists() and "to score" not in said  # nothing scored
        return " ".join(said.split())

    ok = json.dumps({"a": "v0", "b": "v1", "winner": "a"})
    unknown = json.dumps({"a": "v0", "b": "v9", "winner": "a"})
    motion = json.dumps({"a": "v0", "b": "v1", "winner": "a", "dimension": "motion_smoothness"})
    assert "pairs.jsonl, line 2, field 'b': video 'v9' is not in the evaluated data" in refused(
        f"{ok}\n{unknown}\n"
    )
    assert "line 1, field 'dimension': the critic rates only semantic_consistency" in refused(motion + "\n")
    assert "pairs.jsonl: no pairwise judgements in the file (--pairs)" in refused("\n")
    itself = json.dumps({"a": "v0", "b": "v0", "winner": "tie"})
    assert "line 1, field 'b': a video judged against itself ('v0')" in refused(itself + "\n")
    records = (world / "hra.jsonl").read_text().splitlines()
    twice = json.loads(records[1]) | {"video_id": json.loads(records[0])["video_id"]}
    (tmp_path / "hra.jsonl").write_text("\n".join([*records, json.dumps(twice)]) + "\n")
    said = refused(data=tmp_path / "hra.jsonl")
    assert f"hra.jsonl, line {len(records) + 1}, field 'video'" in said and "one id names one video" in said


def test_lora_targets_are_checked_before_a_describing_critics_first_pass(world, tmp_path):
    out = tmp_path / "describe"
    said = train(world, out, "--describe", "--lora-targets", "nope", steps=1, fails=True).output
    assert "--lora-targets nope: matches no linear layer" in said
    assert not out.exists()  # not described first


def test_train_names_the_line_of_a_video_that_opens_but_does_not_decode(world, tmp_path, monkeypatch):
    """The quick check before training only opens each video; one that fails to decode when a batch needs
    it is named by the data file's line (it was named by path only)."""
    import videolift.core.video as video

    data = _with_bad_videos(world, tmp_path)
    lines = data.read_text().splitlines(keepends=True)
    data.write_text(lines[0] + lines[-1])  # a good video, then the non-video on line 2
    probe = video.probe_video
    monkeypatch.setattr(
        video, "probe_video", lambda p, **k: None if "not_a_video" in str(p) else probe(p, **k)
    )
    said = run("critic", "train", "--base", world / "base", "--data", data, "--videos", tmp_path,
               "--out", tmp_path / "c", "--max-steps", "2", "--batch-size", "4", fails=True).output  # fmt: skip
    assert f"{data}, line 2, field 'video'" in " ".join(said.split()) and "--resume" in said, said


def test_a_failed_run_whose_error_is_kept_does_not_keep_out_locked(world, tmp_path):
    """A caller that keeps the error of a failed run keeps its frames; a lock held there refused the retry
    in the same process as "in use" by itself."""
    from videolift.critic import sft
    from videolift.critic.data import caption_examples

    examples = caption_examples([(world / "videos/v0.mp4", "A white square moves right on red.")])
    cfg, out = sft.SFTConfig(adapter="full", max_steps=1, save_every=0), tmp_path / "c"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft, "resume_from", lambda *a, **k: (_ for _ in ()).throw(MemoryError("out of memory")))
        with pytest.raises(MemoryError) as kept:
            sft.run_sft(examples, str(world / "base"), out, cfg, log=lambda _: None)
    assert kept.value is not None and (out / "train_config.json").is_file()  # it had started
    assert sft.run_sft(examples, str(world / "base"), out, cfg, overwrite=True, log=lambda _: None).steps == 1


def test_a_batch_the_examples_cannot_fill_is_refused_before_the_first_passes(world, tmp_path, monkeypatch):
    """It was refused only after checking (or describing) every training video, minutes at real sizes.
    (Two processes, as under torchrun: one batch of every example leaves the second without a batch.)"""
    import videolift.critic.train as critic_train

    monkeypatch.setattr(
        critic_train, "_first_passes", lambda *a, **k: pytest.fail("the first passes ran before the refusal")
    )
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it (the run itself is refused before it starts)
    said = train(world, tmp_path / "c", "--check", "--batch-size", "100000", fails=True).output
    assert "make no full round of batch 100000 x 2 processes" in " ".join(said.split()), said
    assert not (tmp_path / "c").exists()


def test_float16_weights_under_fp16_mixed_precision_are_refused_before_the_run_starts(
    world, tmp_path, monkeypatch
):
    """fp16 mixed precision (an accelerate config's, on a GPU) scales the loss with torch's GradScaler,
    which refuses to unscale float16 gradients ("Attempting to unscale FP16 gradients"): a full critic
    loaded with --dtype float16 ended in that traceback at its first update. Emulated on the CPU: the
    accelerator given the CPU GradScaler and the fp16 setting accelerate gives it only on a GPU."""
    from videolift.core import distributed

    made = distributed.fresh_accelerator

    def fp16_amp(**settings):
        accelerator = made(**settings)
        accelerator.native_amp, accelerator.scaler = True, torch.amp.GradScaler("cpu")
        accelerator.state._mixed_precision = "fp16"  # (reset by the next fresh_accelerator): CPU autocast
        return accelerator

    monkeypatch.setattr("videolift.critic.sft.fresh_accelerator", fp16_amp)
    out = tmp_path / "c"
    refused = train(world, out, "--adapter", "full", "--dtype", "float16", steps=1, fails=True).output
    assert "--dtype float16" in refused and "float32" in " ".join(refused.split())
    assert not out.exists()  # refused before OUT is written
    train(world, tmp_path / "lora", "--dtype", "float16", "--save-every", "0", steps=1)  # fp32 adapters


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_plain_transformers_generation_with_the_saved_config_answers_as_critic_score(
    world, tmp_path, adapter
):
    """Found by generating with plain transformers from a critic of a base like Qwen2-VL-2B, whose tokenizer
    and generation_config end text with <|endoftext|>, not the <|im_end|> the critic is trained to end its
    answer with, and of an Instruct-like base whose generation_config shapes the logits: a full critic
    saved the base's generation_config, so `generate` ran past the answer ('Bad. ok<|im_end|>. ok...') under
    the base's repetition penalty; a LoRA critic saved none. Now the critic's generation_config.json holds
    critic score's own settings: its stop ids, greedy, unshaped logits, the spec's answer budget."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

    from videolift.core.video import sample_frames
    from videolift.critic.answers import generate
    from videolift.critic.collate import Item
    from videolift.critic.prompts import user_text

    base = tmp_path / "base"
    shutil.copytree(world / "base", base)
    generation = json.loads((base / "generation_config.json").read_text())
    tokenizer = json.loads((base / "tokenizer_config.json").read_text())
    generation |= {"eos_token_id": 0, "do_sample": True, "top_k": 1, "top_p": 0.001, "temperature": 0.1}
    generation["repetition_penalty"] = 1.3  # exaggerated (Qwen2-VL Instruct: 1.05)
    tokenizer["eos_token"] = "<|endoftext|>"  # id 0 in the tiny vocabulary, as in Qwen2-VL-2B's
    (base / "generation_config.json").write_text(json.dumps(generation))
    (base / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    out = tmp_path / "critic"
    run(
        "critic", "train", "--base", base, "--data", world / "hra.jsonl", "--videos", world, "--out", out,
        "--max-steps", 30, "--lr", "1e-2" if adapter == "full" else "2e-3", "--batch-size", 4,
        "--adapter", adapter, "--save-every", 0, "--no-progress",
    )  # fmt: skip
    critic = load_critic(out)
    spec = critic.spec
    frames = sample_frames(world / "videos/v1.mp4", 8)
    texts = [user_text("a white square on green", spec.question(d)) for d in spec.dimensions]
    ours = generate(critic, [Item(frames, t) for t in texts])
    if adapter == "full":
        model = AutoModelForImageTextToText.from_pretrained(out)
    else:  # peft keeps the base's generation_config: the critic's is set as docs/critic.md shows
        model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), out)
        model.generation_config = GenerationConfig.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    plain, ended = [], []
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for text in texts:
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[prompt], videos=[frames], return_tensors="pt")
        with torch.no_grad():
            ids = model.eval().generate(**inputs)  # nothing but the saved settings
        plain.append(processor.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
        ended.append(int(ids[0, -1]) == end)
    assert plain == ours
    if adapter == "full":  # trained enough to end an answer by itself (not by its budget)
        assert any(ended)


def test_answers_longer_than_the_answer_budget_are_reported_when_cut(world, tmp_path):
    """Found reviewing the training targets: an answer over --max-answer-tokens was cut without a word, its
    end-of-turn token after the cut (the critic learns to stop mid-reason; a one-pass answer's last
    dimensions vanish). The run now says how many are cut, and by how much."""
    from videolift.critic.data import caption_examples
    from videolift.critic.sft import SFTConfig, run_sft

    pairs = [
        (world / f"videos/v{i}.mp4", f"A white square moves right on {c}.") for i, c in enumerate(COLORS)
    ]
    pairs[0] = (pairs[0][0], "Red.")  # within the budget
    cfg = SFTConfig(
        adapter="full", max_steps=1, save_every=0, num_frames=2, max_answer_tokens=4, batch_size=2
    )
    said: list[str] = []
    run_sft(caption_examples(pairs), str(world / "base"), tmp_path / "out", cfg, log=said.append)
    notes = [s for s in said if "--max-answer-tokens" in s]
    assert len(notes) == 1 and notes[0].startswith(
        "note: 3 of 4 answers are longer than --max-answer-tokens 4"
    )
    said.clear()
    cfg.max_answer_tokens = 64
    run_sft(caption_examples(pairs), str(world / "base"), tmp_path / "whole", cfg, log=said.append)
    assert not [s for s in said if "--max-answer-tokens" in s]


@pytest.mark.parametrize(
    ("family", "adapter"), [("qwen2_vl", "lora"), ("qwen2_vl", "full"), ("qwen2_5_vl", "full")]
)
def test_a_frozen_towers_video_features_are_computed_once_and_train_the_same_weights(
    world, tmp_path, monkeypatch, family, adapter
):
    """Each video goes through the frozen vision tower once (its three questions, every epoch), and the
    run trains what encoding it with every batch trains; --vision-cache-mb 0, or a trained projector,
    encodes with every batch as before."""
    import importlib

    from safetensors.torch import load_file

    from videolift.models.tiny_vlm import TinyVLMConfig

    base = world / "base"
    if family != "qwen2_vl":
        base = tmp_path / family
        build_tiny_vlm(base, TinyVLMConfig(family=family))
    module = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    inner = {"qwen2_vl": "Qwen2VLModel", "qwen2_5_vl": "Qwen2_5_VLModel"}[family]
    encoded: list[int] = []
    original = getattr(module, inner).get_video_features

    def counted(self, pixel_values_videos, video_grid_thw=None, **kwargs):
        encoded.append(len(video_grid_thw))
        return original(self, pixel_values_videos, video_grid_thw, **kwargs)

    monkeypatch.setattr(getattr(module, inner), "get_video_features", counted)
    runs = {"cached": (), "off": ("--vision-cache-mb", "0"), "projector": ("--tune-projector",)}
    videos, weights = {}, {}
    for name, extra in runs.items():
        encoded.clear()
        out = tmp_path / name
        # 4 videos x 3 questions = 12 examples, batch 4: 6 updates are two passes over every video's questions
        said = run(
            "critic", "train", "--base", base, "--data", world / "hra.jsonl", "--videos", world, "--out", out,
            "--max-steps", 6, "--lr", "5e-3", "--batch-size", "4", "--adapter", adapter, "--save-every", "0",
            *extra,
        ).output  # fmt: skip
        videos[name] = sum(encoded)
        weights[name] = load_file(
            out / ("model.safetensors" if adapter == "full" else "adapter_model.safetensors")
        )
        assert ("computed once and kept" in said) == (name == "cached"), said
        if name == "projector":  # the run says why it is not kept
            assert "video features encoded with each batch: the vision tower or projector is trained" in said
    assert videos == {"cached": 4, "off": 24, "projector": 24}
    cached, off = weights["cached"], weights["off"]
    assert cached.keys() == off.keys()
    for key in cached:
        torch.testing.assert_close(cached[key], off[key], rtol=1e-5, atol=1e-6, msg=key)
