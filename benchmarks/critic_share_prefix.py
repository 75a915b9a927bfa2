"""Critic scoring with and without a shared prefix: wall time per video, same critic, same videos, same answers.

``critic score`` answers a video's three questions from one prefill of its video and caption (default); with
``--no-share-prefix`` each question's sequence is encoded whole, the video through the vision tower and the
language model three times. Two critics, trained here for a few updates (the answers only need to be
the same both ways, not good):

- the toy critic: the toy world's pretrained VLM (``src/videolift/toy/assets/vlm``) on toy clips, 9 frames;
- a tiny Qwen2-VL with more video tokens: random base, ``--frame-size`` frames, ``--num-frames`` of them.

    python benchmarks/critic_share_prefix.py
    python benchmarks/critic_share_prefix.py --num-videos 48 --frame-size 224 --num-frames 16
"""

from __future__ import annotations

import argparse
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


def measure(critic_dir: Path, manifest: Path, videos: Path, out: Path, args) -> dict:
    """Best of ``args.repeats`` scoring runs each way (alternating), and whether the score files agree."""
    from videolift.critic.answers import load_critic
    from videolift.critic.score import read_manifest, score_manifest

    critic = load_critic(critic_dir, device=args.device)
    records = read_manifest(manifest)
    best = {True: float("inf"), False: float("inf")}
    for _ in range(args.repeats):
        for share in (True, False):
            critic.share_prefix = share
            target = out / f"{critic_dir.parent.name}-{share}.jsonl"
            target.unlink(missing_ok=True)
            started = time.perf_counter()
            score_manifest(critic, manifest, videos, target, batch_size=args.batch_size, progress=False,
                           log=lambda _: None)  # fmt: skip
            best[share] = min(best[share], time.perf_counter() - started)
    same = (out / f"{critic_dir.parent.name}-True.jsonl").read_text() == (
        out / f"{critic_dir.parent.name}-False.jsonl"
    ).read_text()
    from videolift.core.video import sample_frames

    frames = sample_frames(videos / records[0]["video"], critic.spec.num_frames, critic.spec.frame_sampling)
    encoded = critic.collator.encode_prompt(frames, critic.prompts(records[0]["prompt"])[0][1])
    ids = encoded["input_ids"][0]
    video_tokens = int(sum(int(t) == critic.model.config.video_token_id for t in ids))
    return {"videos": len(records), "video_tokens": video_tokens, "prompt_tokens": len(ids), "same": same,
            "shared": best[True] / len(records), "unshared": best[False] / len(records)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=24, help="videos scored per critic")
    parser.add_argument("--train-steps", type=int, default=20, help="updates of each critic")
    parser.add_argument("--frame-size", type=int, default=224, help="tiny Qwen2-VL: frame size (pixels)")
    parser.add_argument("--num-frames", type=int, default=16, help="tiny Qwen2-VL: frames per video")
    parser.add_argument("--batch-size", type=int, default=24, help="prompts per generate call (8 videos)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable on shared CPUs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs each way (best counts)")
    args = parser.parse_args()

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
    if not all(m["same"] for _, m in rows):
        raise SystemExit("scores differ with and without a shared prefix")


if __name__ == "__main__":
    main()
