"""Throughput of the generation stage (videos/s, s/video, peak RSS) for batch sizes 1/2/4.

Each batch size runs ``generate_videos`` in a fresh process so its peak RSS is its own (the model is
built in one too: a child starts with its parent's peak on Linux). By default
it builds the tiny CogVideoX (9x64x64) in a temp dir; pass ``--model`` for the toy base model or a
real checkpoint (with --steps/--frames/--height/--width to match).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generate_throughput.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generate_throughput.py --videos 16 --batch-sizes 1,4,8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    from videolift.data.generate import generate_videos

    out = Path(args.out)
    prompts = out.parent / "prompts.txt"
    prompts.write_text("".join(f"a dog running on the beach, take {i}\n" for i in range(args.videos)))
    options = {k: getattr(args, k) for k in ("frames", "height", "width", "steps", "batch_size", "device")}
    # Warm-up batch first: the first pipeline call pays one-off costs (allocator, kernel selection).
    generate_videos(
        args.model, prompts, out.parent / "warmup", limit=args.batch_size, progress=False, **options
    )
    summary = generate_videos(args.model, prompts, out, progress=False, **options)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    manifest = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    shape = f"{manifest['frames']}x{manifest['height']}x{manifest['width']}"
    print(
        json.dumps(
            {"videos": summary.generated, "seconds": summary.loop_seconds, "peak_mb": peak_mb, "shape": shape}
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="pipeline directory or Hub id (default: a tiny CogVideoX built here)")
    parser.add_argument("--videos", type=int, default=8, help="videos per batch size")
    parser.add_argument("--batch-sizes", default="1,2,4")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.videos < 1 or args.steps < 1 or min(batch_sizes) < 1:
        parser.error("--videos, --steps and every --batch-sizes entry must be at least 1")
    if max(batch_sizes) > args.videos:
        parser.error(
            f"--videos {args.videos} is fewer than batch size {max(batch_sizes)}: that row would not run it"
        )

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        if model is None:  # built in a child: a child starts with its parent's peak RSS (Linux)
            model = str(Path(tmp) / "tiny_cogvideox")
            build = f"from videolift.models.tiny_cogvideox import build_tiny_cogvideox; build_tiny_cogvideox({model!r})"
            subprocess.run([sys.executable, "-c", build], env=env, check=True)
        print(f"model: {args.model or 'tiny CogVideoX'}, {args.steps} steps, {args.videos} videos per row")
        print(f"{'batch':>5} {'size':>10} {'videos/s':>9} {'s/video':>8} {'peak RSS MB':>12}")
        for batch in batch_sizes:
            run_dir = Path(tmp) / f"batch{batch}"
            run_dir.mkdir()
            cmd = [sys.executable, __file__, "--worker", "--model", model, "--out", str(run_dir / "out"),
                   "--videos", str(args.videos), "--batch-size", str(batch), "--steps", str(args.steps),
                   "--device", args.device]  # fmt: skip
            for key in ("frames", "height", "width"):
                if getattr(args, key) is not None:
                    cmd += [f"--{key}", str(getattr(args, key))]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"batch size {batch} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rate = row["videos"] / row["seconds"]
            print(f"{batch:>5} {row['shape']:>10} {rate:>9.2f} {1 / rate:>8.3f} {row['peak_mb']:>12.0f}")


if __name__ == "__main__":
    main()
