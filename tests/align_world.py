"""The small alignment world both T2V families are trained on in tests: four videos of a coloured
square moving right, scored 2 Good / 2 Bad, and a two-clip real set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from videolift.align.config import AlignConfig
from videolift.core.video import write_video

DIMS = ("semantic_consistency", "motion_smoothness", "video_fidelity")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (220, 220, 30)}
PROMPTS = [f"a {name} square moves right" for name in COLOURS]
WEIGHTS = [0.9, 0.05, 0.9, 0.05]  # the rewards of the four videos, in order


def build_tiny(family: str, out_dir: Path | None = None):
    """A tiny pipeline of ``family`` (saved to ``out_dir`` when given); "wan22": a Wan 2.2 TI2V-style one."""
    from videolift.models.tiny_cogvideox import build_tiny_cogvideox
    from videolift.models.tiny_ltx import build_tiny_ltx
    from videolift.models.tiny_wan import build_tiny_wan

    if family == "wan22":
        return build_tiny_wan(out_dir, wan22=True)
    return {"cogvideox": build_tiny_cogvideox, "wan": build_tiny_wan, "ltx": build_tiny_ltx}[family](out_dir)


def square_video(rgb, shift: int, size: int = 64) -> np.ndarray:
    """9 frames of a size/4 square moving right by size/16 per frame."""
    video = np.full((9, size, size, 3), 40, np.uint8)
    side, step = size // 4, size // 16
    for t in range(9):
        x = step + shift + step * t
        video[t, side + side // 4 : 2 * side + side // 4, x : x + side] = rgb
    return video


def score_line(video: str, prompt: str, label: str | None, reward: float | None) -> str:
    ratings = {d: {"label": label, "reason": "", "score": reward} for d in DIMS}
    return json.dumps({"video": video, "prompt": prompt, "ratings": ratings, "reward": reward}) + "\n"


def make_world(root: Path, size: int = 64) -> Path:
    """Videos, ``scores.jsonl`` and ``real.jsonl`` under ``root`` (the model is the caller's)."""
    lines = []
    for i, (prompt, rgb) in enumerate(zip(PROMPTS, COLOURS.values(), strict=True)):
        write_video(root / f"videos/v{i}.mp4", square_video(rgb, i, size), crf=0, pix_fmt="yuv444p")
        lines.append(
            score_line(f"videos/v{i}.mp4", prompt, *(("Good", 0.9) if i % 2 == 0 else ("Bad", 0.05)))
        )
    (root / "scores.jsonl").write_text("".join(lines))
    (root / "real.jsonl").write_text(
        "".join(
            json.dumps({"video": f"videos/v{i}.mp4", "prompt": "a square moves right"}) + "\n" for i in (1, 3)
        )
    )
    return root


def align_config(world: Path, out: Path, **kw) -> AlignConfig:
    base = dict(
        model=str(world / "model"), scores=world / "scores.jsonl", videos=world, out=out, num_workers=0,
        warmup_steps=0, lr=1e-3, batch_size=2, max_steps=4, checkpoint_every=100,
        cache_dir=world / "cache",  # shared: keyed by model, video and preprocessing
    )  # fmt: skip
    return AlignConfig(**(base | kw))


def objective(family: str, pipe, transformer, world: Path, weights: list[float] = WEIGHTS) -> float:
    """The reward-weighted loss of the four videos with fixed latents, timesteps and noise (no training
    randomness): what an alignment run on this world should lower."""
    import torch

    from videolift.align.loss import batch_loss, step_generator
    from videolift.core.video import read_video
    from videolift.models.families import get_spec

    spec = get_spec(family)
    params = spec.encode_videos(pipe, [read_video(world / f"videos/v{i}.mp4") for i in range(4)])
    text = spec.encode_prompts(pipe, PROMPTS)
    coef = torch.tensor(weights) / len(weights)
    with torch.no_grad():
        losses = [
            float(batch_loss(spec, pipe, transformer, params, text, coef, step_generator(7, 0, k, "cpu"))[0])
            for k in range(16)
        ]
    return float(np.mean(losses))


def full_alignment(family: str, world: Path, out: Path):
    """30 full fine-tuning steps on the world with its real set; the run's result, the base pipeline and
    the exported one (loaded with plain diffusers), and the objective before and after."""
    import json

    from videolift.align.trainer import train
    from videolift.models.families import get_spec

    result = train(align_config(world, out, real=world / "real.jsonl", max_steps=30, batch_size=4,
                                weight_decay=0.0), progress=False)  # fmt: skip
    assert json.loads((out / "align_config.json").read_text())["family"] == family  # detected
    pipeline = get_spec(family).pipeline_type()
    base, aligned = pipeline.from_pretrained(world / "model"), pipeline.from_pretrained(result.export_dir)
    before, after = (objective(family, base, m, world) for m in (base.transformer, aligned.transformer))
    return result, base, aligned, before, after


def straight_and_resumed(world: Path, out: Path, **extra) -> tuple[dict, dict]:
    """The exported transformer weights of a 4-step run, and of one stopped at step 2 and resumed."""
    from safetensors.torch import load_file

    from videolift.align.trainer import train

    kw = dict(real=world / "real.jsonl", max_steps=4, checkpoint_every=2)
    straight = train(align_config(world, out / "a", **kw), progress=False)
    train(align_config(world, out / "b", **(kw | {"max_steps": 2})), progress=False)
    resumed = train(align_config(world, out / "b", **kw, resume=True, **extra), progress=False)
    a, b = (
        load_file(str(r.export_dir / "transformer/diffusion_pytorch_model.safetensors"))
        for r in (straight, resumed)
    )
    return a, b


def generate_two(model: Path, tmp_path: Path) -> tuple[list[str], list[dict]]:
    """`videolift generate` of two prompts (2 steps, 9x32x32) into tmp_path/out: the command line without
    --out (for reruns with other options) and the manifest's records."""
    from typer.testing import CliRunner

    from videolift.cli import app

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red square moves right\na blue square moves right\n")
    args = ["generate", "--model", str(model), "--prompts", str(prompts), "--steps", "2",
            "--frames", "9", "--height", "32", "--width", "32", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    return args, [json.loads(line) for line in (tmp_path / "out/manifest.jsonl").read_text().splitlines()]
