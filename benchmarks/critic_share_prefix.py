"""Critic scoring with and without a shared prefix: wall time per video, same critic, same videos, same answers.

``critic score`` answers a video's three questions from one prefill of its video and caption (default); with
``--no-share-prefix`` each question's sequence is encoded whole, the video through the vision tower and the
language model three times. Two critics, trained here for a few updates (the answers only need to be
the same both ways, not good):

- the toy critic: the toy world's pretrained VLM (``src/videolift/toy/assets/vlm``) on toy clips, 9 frames;
- a tiny Qwen2-VL with more video tokens: random base, ``--frame-size`` frames, ``--num-frames`` of them.

A second table says where the time goes each way: in the processor (chat template expansion, tokens and the
video's processing; ``critic score`` processes a video once for its three questions), in its video processor
alone (with its calls per video), and in the model's forward passes. The model's cost on a CPU says little
about a GPU's, so a last line gives the processor's own milliseconds per video at a real clip's size
(``--real-size``, Qwen2-VL's released video processor settings).

    python benchmarks/critic_share_prefix.py
    python benchmarks/critic_share_prefix.py --num-videos 48 --frame-size 448 --num-frames 16 --train-steps 10
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def toy_world(root: Path, n_videos: int, train_steps: int) -> tuple[Path, Path, Path]:
    """The toy critic (briefly trained on oracle-rated toy clips) and a held-out manifest to score."""
    cli = [sys.executable, "-m", "videolift.cli"]

    def run(*args: object) -> None:
        subprocess.run([*cli, *map(str, args)], check=True, capture_output=True)

    run(
        "toy",
        "corpus",
        "--n",
        48,
        "--split",
        "train",
        "--defect-rate",
        0.5,
        "--seed",
        31,
        "--out",
        root / "train",
    )
    run("toy", "rate", "--manifest", root / "train/manifest.jsonl", "--videos", root / "train",
        "--out", root / "train/hra.jsonl", "--oracle")  # fmt: skip
    run("toy", "corpus", "--n", n_videos, "--split", "heldout", "--defect-rate", 0.5, "--seed", 22,
        "--out", root / "score")  # fmt: skip
    run("critic", "train", "--base", REPO / "src/videolift/toy/assets/vlm", "--data", root / "train/hra.jsonl",
        "--videos", root / "train", "--out", root / "critic", "--adapter", "full", "--lr", "1e-3",
        "--batch-size", 4, "--num-frames", 9, "--max-steps", train_steps, "--no-progress")  # fmt: skip
    return root / "critic", root / "score/manifest.jsonl", root / "score"


def qwen_world(
    root: Path, n_videos: int, train_steps: int, frame_size: int, num_frames: int
) -> tuple[Path, Path, Path]:
    """A tiny random Qwen2-VL critic fed ``num_frames`` frames of ``frame_size`` pixels, and its manifest."""
    import numpy as np

    from videolift.core.video import write_video
    from videolift.critic.sft_config import SFTConfig
    from videolift.critic.train import train_critic
    from videolift.models.tiny_vlm import TinyVLMConfig, build_tiny_vlm

    build_tiny_vlm(root / "base", TinyVLMConfig(frame_size=frame_size))
    rng = np.random.default_rng(0)
    colors = ["red", "green", "blue", "yellow", "white on a snow field at noon"]
    records = []
    for i in range(n_videos):
        video = np.zeros((num_frames, frame_size, frame_size, 3), np.uint8)
        video[:] = rng.integers(0, 255, 3)
        for t in range(num_frames):
            video[t, 20:60, 4 + 4 * t : 44 + 4 * t] = 255
        write_video(root / f"videos/v{i:03d}.mp4", video, crf=0, pix_fmt="yuv444p")
        prompt = f"a square moves right on {colors[i % len(colors)]}"
        ratings = {d: {"label": ["Good", "Normal", "Bad"][(i + k) % 3], "reason": "the square moves"}
                   for k, d in enumerate(("semantic_consistency", "motion_smoothness", "video_fidelity"))}  # fmt: skip
        records.append({"video": f"videos/v{i:03d}.mp4", "prompt": prompt, "ratings": ratings})
    (root / "hra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "manifest.jsonl").write_text(
        "".join(json.dumps({"video": r["video"], "prompt": r["prompt"]}) + "\n" for r in records)
    )
    cfg = SFTConfig(max_steps=train_steps, lr=5e-3, batch_size=8, save_every=0, num_frames=num_frames)
    train_critic(str(root / "base"), root / "hra.jsonl", root, root / "critic", cfg, log=lambda _: None)
    return root / "critic", root / "manifest.jsonl", root


class Timers:
    """Time spent in the processor (``processor(...)``: chat template expansion, tokenization, video
    processing), in its video processor alone (and how often it runs), and in the model's forward passes
    (vision tower and language model, every generation step), while scoring."""

    def __init__(self, critic) -> None:
        self.critic = critic
        self.seconds = {"processor": 0.0, "video_processor": 0.0, "model": 0.0}
        self.video_calls = 0

    def _timed(self, key, fn, count=False):
        @functools.wraps(fn)  # generate reads the forward's signature
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[key] += time.perf_counter() - started
                self.video_calls += count

        return wrapper

    def __enter__(self):
        processor, model = self.critic.processor, self.critic.model
        self.classes = [type(processor), type(processor.video_processor)]
        self.saved = [c.__call__ for c in self.classes]
        self.classes[0].__call__ = self._timed("processor", self.saved[0])
        self.classes[1].__call__ = self._timed("video_processor", self.saved[1], count=True)
        self.model = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a LoRA
        self.model.forward = self._timed("model", self.model.forward)
        return self

    def __exit__(self, *exc) -> None:
        for cls, call in zip(self.classes, self.saved, strict=True):
            cls.__call__ = call
        del self.model.forward


def measure(critic_dir: Path, manifest: Path, videos: Path, out: Path, args) -> dict:
    """Best of ``args.repeats`` scoring runs each way (alternating), and whether the score files agree;
    for the best run of each, the time spent in the processor and in the model."""
    from videolift.critic.answers import load_critic
    from videolift.critic.score import read_manifest, score_manifest

    critic = load_critic(critic_dir, device=args.device)
    records = read_manifest(manifest)
    # An untimed run each way over one batch's videos first: the first generate calls pay one-off costs
    # (allocator, kernel selection), which the shared run, timed first, would otherwise carry alone.
    warmup = out / f"{critic_dir.parent.name}-warmup-manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    warmup.write_text("".join(lines[: max(1, args.batch_size // len(critic.prompts("")))]))
    for share in (True, False):
        critic.share_prefix = share
        target = out / f"{critic_dir.parent.name}-warmup-{share}.jsonl"
        score_manifest(critic, warmup, videos, target, batch_size=args.batch_size, progress=False,
                       log=lambda _: None)  # fmt: skip
    best = {True: float("inf"), False: float("inf")}
    parts: dict[bool, Timers] = {}
    for _ in range(args.repeats):
        for share in (True, False):
            critic.share_prefix = share
            target = out / f"{critic_dir.parent.name}-{share}.jsonl"
            target.unlink(missing_ok=True)
            started = time.perf_counter()
            with Timers(critic) as timers:
                score_manifest(critic, manifest, videos, target, batch_size=args.batch_size, progress=False,
                               log=lambda _: None)  # fmt: skip
            elapsed = time.perf_counter() - started
            if elapsed < best[share]:
                best[share], parts[share] = elapsed, timers
    same = (out / f"{critic_dir.parent.name}-True.jsonl").read_text() == (
        out / f"{critic_dir.parent.name}-False.jsonl"
    ).read_text()
    from videolift.core.video import sample_frames

    frames = sample_frames(videos / records[0]["video"], critic.spec.num_frames, critic.spec.frame_sampling)
    encoded = critic.collator.encode_prompt(frames, critic.prompts(records[0]["prompt"])[0][1])
    ids = encoded["input_ids"][0]
    video_tokens = int(sum(int(t) == critic.model.config.video_token_id for t in ids))
    n = len(records)
    result = {"videos": n, "video_tokens": video_tokens, "prompt_tokens": len(ids), "same": same}
    for share, key in ((True, "shared"), (False, "unshared")):
        t = parts[share]
        result[key] = best[share] / n
        result[key + "_parts"] = {k: v / n for k, v in t.seconds.items()} | {"video_calls": t.video_calls / n}
    return result


def processor_per_video(num_frames: int, height: int, width: int, repeats: int) -> dict[str, float]:
    """Milliseconds of processor work to put one video's three questions into a shared-prefix batch
    (``critic.prefix.plan``), with Qwen2-VL's own video processor settings (its released checkpoints':
    frames resized within 602,112 pixels, 14-pixel patches, 2x2 merged) on ``num_frames`` random frames of
    ``height`` x ``width``; and of one full encoding (one question with its video)."""
    import numpy as np
    from transformers import Qwen2VLVideoProcessor

    from videolift.critic.collate import ChatCollator, Item
    from videolift.critic.prefix import plan
    from videolift.critic.prompts import DEFAULT_QUESTIONS, user_text
    from videolift.models.tiny_vlm import TinyVLMConfig, build_tiny_vlm
    from videolift.models.vlm import get_family

    model, processor = build_tiny_vlm(config=TinyVLMConfig())
    processor.video_processor = Qwen2VLVideoProcessor(do_sample_frames=False, cap_pixels_per_frame=False)
    collator = ChatCollator(processor, get_family("qwen2_vl"))
    frames = np.random.default_rng(0).integers(0, 255, (num_frames, height, width, 3), dtype=np.uint8)
    items = [Item(frames, user_text("a red circle moves left", q)) for q in DEFAULT_QUESTIONS.values()]
    vision = {model.config.video_token_id}

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return 1000 * min(times)

    tokens = int(
        (collator.encode_prompt(frames, items[0].user_text)["input_ids"] == model.config.video_token_id).sum()
    )
    return {
        "video_tokens": tokens,
        "encode": best(lambda: collator.encode_prompt(frames, items[0].user_text)),
        "plan": best(lambda: plan(collator, items, vision)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=24, help="videos scored per critic")
    parser.add_argument("--train-steps", type=int, default=20, help="updates of each critic")
    parser.add_argument("--frame-size", type=int, default=224, help="tiny Qwen2-VL: frame size (pixels)")
    parser.add_argument("--num-frames", type=int, default=16, help="tiny Qwen2-VL: frames per video")
    parser.add_argument("--batch-size", type=int, default=24, help="prompts per generate call (8 videos)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on shared CPUs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs each way (best counts)")
    parser.add_argument("--real-size", default="16x480x720", help="processor only: FRAMESxHEIGHTxWIDTH")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, build in (
            ("toy critic (toy VLM, 9 frames of 48x48)", lambda r: toy_world(r, args.num_videos, args.train_steps)),
            (f"tiny Qwen2-VL ({args.num_frames} frames of {args.frame_size}x{args.frame_size})",
             lambda r: qwen_world(r, args.num_videos, args.train_steps, args.frame_size, args.num_frames)),
        ):  # fmt: skip
            root = tmp / f"w{len(rows)}"
            root.mkdir()
            critic_dir, manifest, videos = build(root)
            rows.append((name, measure(critic_dir, manifest, videos, tmp, args)))

    print(f"critic score, batch {args.batch_size}, {args.threads} thread(s), device {args.device}, best of "
          f"{args.repeats}; seconds per video (decoding, processor and model included)")  # fmt: skip
    print("| critic | videos | video tokens | prompt tokens | unshared s/video | shared s/video | speed-up | "
          "same scores |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for name, m in rows:
        print(f"| {name} | {m['videos']} | {m['video_tokens']} | {m['prompt_tokens']} | {m['unshared']:.3f} | "
              f"{m['shared']:.3f} | {m['unshared'] / m['shared']:.2f}x | {m['same']} |")  # fmt: skip
    print("\nwhere the time goes, ms per video (share of the run): the processor (template, tokens, video), its "
          "video processor alone (calls per video), the model's forward passes")  # fmt: skip
    print("| critic | prefix | total ms | processor ms | video processor ms (calls) | model ms |\n"
          "|---|---|---|---|---|---|")  # fmt: skip
    for name, m in rows:
        for key in ("unshared", "shared"):
            t, total = m[key + "_parts"], m[key]
            print(f"| {name} | {key} | {1000 * total:.0f} | {1000 * t['processor']:.0f} "
                  f"({t['processor'] / total:.0%}) | {1000 * t['video_processor']:.0f} "
                  f"({t['video_processor'] / total:.0%}; {t['video_calls']:.0f}) | {1000 * t['model']:.0f} "
                  f"({t['model'] / total:.0%}) |")  # fmt: skip
    frames, height, width = (int(x) for x in args.real_size.split("x"))
    real = processor_per_video(frames, height, width, args.repeats)
    print(f"\nprocessor only, Qwen2-VL's video processor settings, {frames} frames of {height}x{width} "
          f"({real['video_tokens']} video tokens): one question encoded with its video "
          f"{real['encode']:.0f} ms; a video's three questions planned for a shared prefix "
          f"{real['plan']:.0f} ms")  # fmt: skip
    if not all(m["same"] for _, m in rows):
        raise SystemExit("scores differ with and without a shared prefix")


if __name__ == "__main__":
    main()
