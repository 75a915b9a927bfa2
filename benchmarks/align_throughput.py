"""Alignment step throughput: cached latents + text embeddings vs re-encoding every step.

Both modes run the same model, batch and training step (``videolift.align.loss.batch_loss``,
backward, AdamW); they differ only in where the step's inputs come from:
- cached:   latent-distribution parameters and text embeddings read from the on-disk cache
            (precomputed once, timed separately);
- reencode: every step decodes the mp4s, runs the VAE encoder and the text encoder.
Each mode (and the one-off precompute) runs in a fresh process so its peak RSS is its own (the model
is built in one too: a child starts with its parent's peak on Linux). Default model: a tiny-but-not-trivial
CogVideoX (17x128x128 videos, 4-layer 128-wide transformer) built here, or with ``--family wan`` / ``ltx``
a Wan 2.1 / LTX-Video of the same width; ``--model`` takes any pipeline directory (with --frames/--size to match).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/align_throughput.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/align_throughput.py --steps 30 --batch 4
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/align_throughput.py --family wan
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_inputs(root: Path, args: argparse.Namespace) -> str:
    """A pipeline (unless --model) and ``batch`` videos of moving squares with prompts."""
    import numpy as np

    from videolift.core.video import write_video
    from videolift.models.tiny_cogvideox import TinyCogVideoXConfig, build_tiny_cogvideox

    model = args.model
    if model is None and args.family == "wan":
        from videolift.models.tiny_wan import build_tiny_wan

        model = str(root / "model")
        build_tiny_wan(model, layers=4, heads=4, head_dim=32, ffn_dim=256, text_dim=64, vae_dim=16, z_dim=8)
    elif model is None and args.family == "ltx":
        from videolift.models.tiny_ltx import build_tiny_ltx

        model = str(root / "model")
        build_tiny_ltx(model, layers=4, heads=4, head_dim=32, text_dim=64, vae_dim=16, latent_channels=8)
    elif model is None:
        model = str(root / "model")
        config = TinyCogVideoXConfig(
            vae_channels=(16, 32, 32, 32), latent_channels=8, layers=4, heads=4, head_dim=32,
            time_embed_dim=64, text_dim=64, max_text_len=32, sample_frames=args.frames,
            sample_height=args.size, sample_width=args.size,
        )  # fmt: skip
        build_tiny_cogvideox(model, config)
    rng = np.random.default_rng(0)
    for i in range(args.batch):
        video = np.full((args.frames, args.size, args.size, 3), 40, np.uint8)
        colour, side = rng.integers(0, 255, 3), args.size // 4
        for t in range(args.frames):
            x = (4 + 3 * t + 7 * i) % (args.size - side)
            video[t, side : 2 * side, x : x + side] = colour
        write_video(root / f"v{i}.mp4", video, crf=0, pix_fmt="yuv444p")
    return model


def worker(args: argparse.Namespace) -> None:
    if args.mode == "build":  # here, not in the parent: a child starts with its parent's peak RSS (Linux)
        print(json.dumps({"model": build_inputs(Path(args.root), args)}))
        return
    import torch

    from videolift.align.cache import EncodingCache, load_tensor, model_fingerprint, preprocess_video
    from videolift.align.loss import batch_loss, step_generator
    from videolift.core.video import read_video
    from videolift.models.families import spec_for

    root = Path(args.root)
    spec = spec_for(args.model)
    pipe = spec.load(args.model)
    transformer = pipe.transformer.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=1e-4)
    videos = [root / f"v{i}.mp4" for i in range(args.batch)]
    prompts = [f"a square moves right, take {i}" for i in range(args.batch)]
    prep = {"frames": args.frames, "stride": 1, "height": args.size, "width": args.size}
    coef = torch.full((args.batch,), 1.0 / args.batch)

    if args.mode in ("precompute", "cached"):  # the cached run finds everything precomputed
        fingerprint = model_fingerprint(args.model, pipe, trained=transformer)
        cache = EncodingCache(root / "cache", fingerprint, prep)
        start = time.perf_counter()
        paths, stats = cache.build(spec, pipe, list(zip(videos, prompts, strict=True)), progress=False)
        if args.mode == "precompute":
            seconds = time.perf_counter() - start
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))
            return
        assert stats.videos_encoded == 0 and stats.prompts_encoded == 0

        def inputs():
            params = torch.stack([load_tensor(p) for p, _ in paths])
            return params, torch.stack([load_tensor(t) for _, t in paths])

    else:

        def inputs():
            frames = [
                preprocess_video(read_video(v), num_frames=args.frames, height=args.size, width=args.size)
                for v in videos
            ]
            return spec.encode_videos(pipe, frames), spec.encode_prompts(pipe, prompts)

    def step(k: int) -> None:
        params, text = inputs()
        loss, _ = batch_loss(spec, pipe, transformer, params, text, coef, step_generator(0, 0, k, "cpu"))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for k in range(args.warmup):  # first steps pay one-off costs (allocator, kernel selection)
        step(k)
    start = time.perf_counter()
    for k in range(args.steps):
        step(args.warmup + k)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    params = sum(p.numel() for p in transformer.parameters())
    print(json.dumps({"steps_per_s": args.steps / seconds, "peak_mb": peak_mb, "params": params}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="pipeline directory (default: a tiny-but-not-trivial model built here)"
    )
    parser.add_argument(
        "--family", choices=("cogvideox", "wan", "ltx"), default="cogvideox", help="of the built model"
    )
    parser.add_argument("--batch", type=int, default=2, help="videos per step")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128, help="height = width")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    for name in ("batch", "steps", "frames", "size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        rows, model = {}, args.model
        # Every mode in a fresh process whose parent stays small: the peak RSS it reports is its own.
        for mode in ("build", "precompute", "cached", "reencode"):
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "--mode",
                mode,
                "--root",
                tmp,
                "--family",
                args.family,
            ]
            cmd += ["--model", model] if model else []
            for key in ("batch", "steps", "warmup", "frames", "size"):
                cmd += [f"--{key}", str(getattr(args, key))]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
            rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            model = model or rows["build"]["model"]
        rows.pop("build")
    shape = f"{args.frames}x{args.size}x{args.size}"
    print(f"model: {args.model or 'tiny ' + args.family} ({rows['cached']['params']:,} transformer params), "
          f"batch {args.batch} x {shape}, {args.steps} timed steps")  # fmt: skip
    pre = rows.pop("precompute")
    print(f"{'mode':>10} {'steps/s':>8} {'peak RSS MB':>12}")
    for mode, row in rows.items():
        print(f"{mode:>10} {row['steps_per_s']:>8.2f} {row['peak_mb']:>12.0f}")
    print(
        f"precompute, once for {args.batch} videos + prompts: {pre['seconds']:.2f} s, peak RSS {pre['peak_mb']:.0f} MB"
    )
    print(f"speed-up with the cache: {rows['cached']['steps_per_s'] / rows['reencode']['steps_per_s']:.1f}x")


if __name__ == "__main__":
    main()
