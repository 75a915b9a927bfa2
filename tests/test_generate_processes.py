"""The generation stage as real processes: killed with SIGKILL and rerun; sharded over 2 CPU ranks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from videolift.core.jsonl import iter_json_lines
from videolift.core.video import read_video

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    from videolift.models.tiny_cogvideox import build_tiny_cogvideox

    path = tmp_path_factory.mktemp("tiny_cogvideox")
    build_tiny_cogvideox(path)
    return path


def write_prompts(path: Path, n: int) -> Path:
    path.write_text("".join(f"a dog running number {i}\n" for i in range(n)))
    return path


def generate_args(model, prompts, out, *extra) -> list[str]:
    return ["generate", "--model", str(model), "--prompts", str(prompts), "--out", str(out), "--steps", "2",
            "--no-progress", *extra]  # fmt: skip


def lines(path: Path) -> list[dict]:
    return [record for _, record in iter_json_lines(path, skip_partial_last=True)] if path.exists() else []


def check_exactly_once(out: Path, keys: set[tuple[int, int]]) -> None:
    records = lines(out / "manifest.jsonl")
    got = [(r["prompt_index"], r["candidate"]) for r in records]
    assert len(got) == len(set(got)) and set(got) == keys  # no duplicates, no gaps
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(r["video"][7:] for r in records)
    for r in records:
        assert read_video(out / r["video"]).shape[0] == 9


def test_kill_9_then_rerun_gives_every_video_exactly_once(tiny_pipeline, tmp_path):
    prompts = write_prompts(tmp_path / "p.txt", 40)
    out = tmp_path / "out"
    args = [str(BIN / "videolift"), *generate_args(tiny_pipeline, prompts, out)]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / ".parts" / "rank0.jsonl"
    deadline = time.monotonic() + 120
    while len(lines(log)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(lines(log))
    assert 3 <= done_before < 40
    assert not (out / "manifest.jsonl").exists()

    rerun = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{40 - done_before} generated here, {done_before} already done" in rerun.stdout
    check_exactly_once(out, {(i, 0) for i in range(40)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_ranks_under_accelerate_launch_share_the_work(tiny_pipeline, tmp_path):
    prompts = write_prompts(tmp_path / "p.txt", 5)
    out = tmp_path / "out"
    # See STACK_NOTES: this is the invocation that gives real 2-rank gloo groups on a CPU machine.
    launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
              "-m", "videolift.cli"]  # fmt: skip
    env = {**ENV, "ACCELERATE_USE_CPU": "1"}
    args = generate_args(tiny_pipeline, prompts, out, "--per-prompt", "3", "--batch-size", "2")
    result = subprocess.run([*launch, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    keys = {(i, k) for i in range(5) for k in range(3)}
    shares = [
        {(r["prompt_index"], r["candidate"]) for r in lines(out / ".parts" / f"rank{r}.jsonl")}
        for r in (0, 1)
    ]
    assert all(shares), "both ranks must have generated videos"
    assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == keys
    assert {len(s) for s in shares} == {7, 8}
    assert "15 videos" in result.stdout and "2 process(es)" in result.stdout
    check_exactly_once(out, keys)

    # A single-process rerun sees both ranks' logs: nothing left to do.
    rerun = subprocess.run(
        [str(BIN / "videolift"), *args], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "0 generated here, 15 already done" in rerun.stdout
    check_exactly_once(out, keys)

    # One process makes the same videos, byte for byte: every video is made in the same pipeline call
    # (with 2 ranks sharing out single videos, one of them would be alone in a call: other float sums,
    # magnified by the lossy encode).
    alone = tmp_path / "alone"
    single = [str(BIN / "videolift"), *generate_args(tiny_pipeline, prompts, alone, *args[-4:])]
    assert subprocess.run(single, env=ENV, capture_output=True, text=True, timeout=300).returncode == 0
    assert lines(alone / "manifest.jsonl") == lines(out / "manifest.jsonl")
    for r in lines(out / "manifest.jsonl"):
        assert (out / r["video"]).read_bytes() == (alone / r["video"]).read_bytes(), r["video"]
