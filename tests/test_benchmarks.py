"""Smoke tests of benchmarks/*.py: each runs to its table with tiny settings, so code changes cannot
break them silently. Nothing here times anything (the benchmarks measure; these check they run).

The scripts that run their work in child processes (a fresh process per row for its own peak RSS) are
run with those children in this process: the commands they build are parsed by the script's own main.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def children_in_process(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Run the script's ``python SCRIPT ...`` and ``python -c CODE`` children here; the commands run."""
    commands: list[list[str]] = []

    def run(cmd, env=None, capture_output=False, text=False, check=False):
        commands.append(cmd)
        assert cmd[0] == sys.executable
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            if cmd[1] == "-c":
                exec(cmd[2], {})
            else:
                assert Path(cmd[1]) == Path(module.__file__)
                module.main(cmd[2:])
        return subprocess.CompletedProcess(cmd, 0, out.getvalue(), "")

    monkeypatch.setattr(module.subprocess, "run", run)
    return commands


def test_video_read(capsys):
    load("video_read").main(["--videos", "2", "--frames", "3", "--size", "16", "--repeats", "1"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| reader (2 clips, 3x16x16 yuv444p, best of 1) | ms / video | identical frames |"
    assert out[3].startswith("| `read_video`") and out[3].endswith("| True |")
    assert out[4].startswith("speed-up: ")


def test_toy_oracle_agreement(capsys):
    args = ["--n", "3", "--workers", "1", "--annotators", "2", "--conditions", "raw,yuv420p"]
    load("toy_oracle_agreement").main(args)
    out = capsys.readouterr().out
    assert "## condition: raw  (3 videos," in out and "## condition: yuv420p  (3 videos," in out
    assert "| dimension | defect | videos | raw | yuv420p |" in out
    assert "## simulated panel: 2 annotators" in out
    assert "| video_fidelity |" in out


def test_generate_throughput(monkeypatch, capsys):
    module = load("generate_throughput")
    commands = children_in_process(module, monkeypatch)
    module.main(["--videos", "2", "--batch-sizes", "1,2", "--steps", "1", "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert len(commands) == 3  # the model's build, then one process per batch size
    assert out[1].split() == ["batch", "size", "videos/s", "s/video", "peak", "RSS", "MB"]
    assert [line.split()[:2] for line in out[2:]] == [["1", "9x64x64"], ["2", "9x64x64"]]


@pytest.mark.parametrize("family", ["cogvideox", "wan"])
def test_align_throughput(monkeypatch, capsys, family):
    module = load("align_throughput")
    commands = children_in_process(module, monkeypatch)
    module.main(
        ["--family", family, "--batch", "1", "--steps", "1", "--warmup", "0"]
        + ["--frames", "9", "--size", "32"]
    )
    out = capsys.readouterr().out.splitlines()
    assert [c[c.index("--mode") + 1] for c in commands] == ["build", "precompute", "cached", "reencode"]
    assert out[0].startswith(f"model: tiny {family} (")
    assert out[0].endswith("batch 1 x 9x32x32, 1 timed steps")
    assert out[1].split() == ["mode", "steps/s", "peak", "RSS", "MB"]
    assert [line.split()[0] for line in out[2:4]] == ["cached", "reencode"]
    assert out[4].startswith("precompute, once for 1 videos + prompts:")
    assert out[5].startswith("speed-up with the cache: ")


def test_critic_throughput(capsys):
    args = ["--num-videos", "2", "--train-steps", "1", "--batch-size", "6", "--repeats", "1"]
    load("critic_throughput").main(args)
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "| scorer | generate calls | seconds | videos/s | speed-up |"
    assert out[3].startswith("| naive loop (batch 1, video read per question) | 6 |")
    assert out[5].startswith("| videolift score (batch 6) | 1 |")
    assert out[6] == "identical greedy answers: True; identical score lines: True"


def test_critic_throughput_reads_frames_as_the_critic_samples_them(tmp_path, monkeypatch):
    """The naive loop and the batched answers feed a 'pairs' critic the frames the scorer does (both
    read uniform frames whatever the critic's sampling)."""
    import numpy as np

    import videolift.critic.answers as answers
    from videolift.core.video import sample_frames, write_video

    levels = np.arange(16, dtype=np.uint8)[:, None, None, None] * 16  # every frame its own grey
    write_video(tmp_path / "v.mp4", np.broadcast_to(levels, (16, 16, 16, 3)), crf=0, pix_fmt="yuv444p")

    class Critic:
        spec = SimpleNamespace(num_frames=4, frame_sampling="pairs")

        def prompts(self, caption):
            return [(None, "how is it?")]

    fed = []
    monkeypatch.setattr(answers, "generate", lambda critic, items: fed.extend(items) or ["a"] * len(items))
    module = load("critic_throughput")
    module.naive_loop(Critic(), [{"video": "v.mp4", "prompt": "a fade"}], tmp_path)
    module.batched_answers(Critic(), [{"video": "v.mp4", "prompt": "a fade"}], tmp_path, 3)
    want = sample_frames(tmp_path / "v.mp4", 4, "pairs")
    assert not np.array_equal(want, sample_frames(tmp_path / "v.mp4", 4))  # the test tells them apart
    assert len(fed) == 2 and all(np.array_equal(item.frames, want) for item in fed)


def test_critic_share_prefix(monkeypatch, capsys):
    from typer.testing import CliRunner

    from videolift.cli import app

    module = load("critic_share_prefix")

    def run(cmd, check=False, capture_output=False):  # the toy world's `python -m videolift.cli ...`
        assert cmd[:3] == [sys.executable, "-m", "videolift.cli"]
        result = CliRunner().invoke(app, cmd[3:])
        assert result.exit_code == 0, result.output
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(module.subprocess, "run", run)
    args = ["--num-videos", "2", "--train-steps", "1", "--frame-size", "56", "--num-frames", "2"]
    module.main([*args, "--batch-size", "6", "--repeats", "1", "--real-size", "2x56x56"])
    out = capsys.readouterr().out.splitlines()
    columns = "critic | videos | video tokens | prompt tokens | unshared s/video | shared s/video | speed-up"
    assert out[1] == f"| {columns} | same scores |"
    rows = [line for line in out if line.startswith(("| toy critic", "| tiny Qwen2-VL"))]
    assert [row.split(" | ")[1] for row in rows[:2]] == ["2", "2"]
    assert all(row.endswith("| True |") for row in rows[:2])
    assert [row.split(" | ")[1] for row in rows[2:]] == ["unshared", "shared", "unshared", "shared"]
    assert out[-1].startswith("processor only, Qwen2-VL's video processor settings, 2 frames of 56x56")
