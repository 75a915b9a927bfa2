"""Tests of benchmarks/*.py. Nothing here times anything (the benchmarks measure; these check they run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
