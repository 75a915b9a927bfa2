"""The shipped GPU recipes run end to end: each `configs/pipeline/*.yaml` with human ratings from a
file, exactly as a user runs it, on tiny models of the same families (the checkpoints, sizes and
step counts overridden with `--set`, every other setting the file's own)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from align_world import COLOURS, build_tiny, square_video
from videolift.cli import app
from videolift.core.video import write_video

REPO = Path(__file__).resolve().parents[1]
DIMENSIONS = ("semantic_consistency", "motion_smoothness", "video_fidelity")
REASON = "The square is blurry."
# shipped file -> tiny T2V family, tiny VLM family, frame size the tiny T2V samples at
RECIPES = {
    "cogvideox2b_qwen2vl.yaml": ("cogvideox", "qwen2_vl", 64),
    "wan21_1.3b_qwen25vl.yaml": ("wan", "qwen2_5_vl", 32),
    "wan22_ti2v_5b_qwen25vl.yaml": ("wan22", "qwen2_5_vl", 32),  # a Wan 2.2 TI2V-style WanPipeline
    "ltx_video_qwen25vl.yaml": ("ltx", "qwen2_5_vl", 32),
}


def _data(root: Path, size: int) -> None:
    """What the recipe's `data/` holds on a user's machine: rated videos, prompt files, a real set."""
    rng = random.Random(0)
    hra, real = [], []
    for i in range(24):
        colour, rgb = list(COLOURS.items())[i % 4]
        prompt = f"a {colour} square moves right"
        write_video(root / f"videos/v{i}.mp4", square_video(rgb, i % 5, size), crf=0, pix_fmt="yuv444p")
        for annotator in ("a1", "a2"):
            # Mostly Good: a tiny random critic learns to answer parseably within a few dozen updates.
            labels = {d: rng.choice(["Good"] * 8 + ["Normal", "Bad"]) for d in DIMENSIONS}
            ratings = {d: {"label": x, "reason": "" if x == "Good" else REASON} for d, x in labels.items()}
            hra.append({"video_id": f"v{i}", "video": f"videos/v{i}.mp4", "prompt": prompt,
                        "annotator": annotator, "ratings": ratings})  # fmt: skip
        real.append({"video": f"videos/v{i}.mp4", "prompt": prompt})
    (root / "hra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hra))
    (root / "openvid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in real))
    (root / "align_prompts.txt").write_text("".join(f"a {c} square moves right\n" for c in COLOURS))
    (root / "heldout_prompts.txt").write_text("a red square moves left\na blue square moves left\n")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_gpu_recipe_runs_end_to_end_on_tiny_models(name, tmp_path, monkeypatch):
    from videolift.models.tiny_vlm import TinyVLMConfig, build_tiny_vlm

    t2v_family, vlm_family, size = RECIPES[name]
    build_tiny(t2v_family, tmp_path / "t2v")
    # A head of a pretrained VLM's scale: LoRA (as shipped) leaves it frozen, and a random one at the usual
    # 0.02 lets no answer become likely (which one came out likeliest then depended on the CPU's arithmetic).
    build_tiny_vlm(tmp_path / "vlm", TinyVLMConfig(family=vlm_family, corpus=[REASON], head_scale=10.0))
    recipe = tmp_path / "recipe"
    (recipe / "data").mkdir(parents=True)
    shutil.copy(REPO / "configs/pipeline" / name, recipe / name)
    _data(recipe / "data", size)
    shipped = yaml.safe_load((REPO / "configs/pipeline" / name).read_text())

    monkeypatch.chdir(recipe)  # the file's data paths are relative to where `run` starts
    small = [
        f"t2v={tmp_path / 't2v'}",
        f"vlm={tmp_path / 'vlm'}",
        "sampler.steps=2",
        "sampler.batch_size=4",
        "sampler.frames=9",
        f"sampler.height={size}",
        f"sampler.width={size}",
        # The tiny VLM answers parseably after a few dozen updates at a high rate (LoRA, as shipped).
        "critic.max_steps=50",
        "critic.batch_size=8",
        "critic.lr=0.01",
        "critic.grad_accum=1",  # 50 updates of 8: a shipped accumulation would leave it unparseable
        "align.settings.max_steps=2",
        "align.settings.warmup_steps=1",
        "align.settings.frames=9",
        f"align.settings.height={size}",
        f"align.settings.width={size}",
    ]
    args = ["run", name, "--workdir", str(tmp_path / "run"), "--no-progress"]
    result = CliRunner().invoke(app, [*args, *(x for s in small for x in ("--set", s))])
    assert result.exit_code == 0, result.output

    w = tmp_path / "run"
    summary = json.loads((w / "summary.json").read_text())
    assert summary["align_rewards"] == "critic"
    assert set(summary["critic"]["accuracy"]) == {*DIMENSIONS, "mean"}
    for model in ("base", "aligned_rwl"):  # judged by the critic only: no oracle outside the toy world
        assert 0.0 <= summary[model]["critic_mean_reward"] <= 1.0
        assert summary[model].get("oracle_mean_reward") is None
    assert 0.0 <= summary["aligned_rs"]["critic_mean_reward"] <= 1.0  # both methods trained
    # The ratings came from the file, split by video; every model made a video of each held-out prompt.
    test, train = (
        [json.loads(x) for x in (w / f"hra_split/{n}.jsonl").read_text().splitlines()]
        for n in ("test", "train")
    )
    assert len(test) + len(train) == 48 and {r["annotator"] for r in test + train} == {"a1", "a2"}
    assert test and not {r["video"] for r in test} & {r["video"] for r in train}
    for model in ("base", "aligned_rwl", "aligned_rs"):
        made = [
            json.loads(x)["prompt"] for x in (w / "eval" / model / "manifest.jsonl").read_text().splitlines()
        ]
        assert sorted(made) == ["a blue square moves left", "a red square moves left"]
    # Everything not overridden is the shipped recipe's: the critic's adapter, the paper's optimizer.
    spec = json.loads((w / "critic/critic_spec.json").read_text())
    assert spec["adapter"] == shipped["critic"]["adapter"] == "lora"
    assert (w / "critic/adapter_model.safetensors").is_file()
    losses = [json.loads(x)["loss"] for x in (w / "critic/train_log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] / 3  # the adapters learned to answer, not only to nudge a guess
    scored = [json.loads(x) for x in (w / "align_scores.jsonl").read_text().splitlines()]
    assert all(r["reward"] is not None for r in scored)
    trained_critic = json.loads((w / "critic/train_config.json").read_text())
    assert (trained_critic["lora_r"], trained_critic["lora_alpha"]) == (
        shipped["critic"].get("lora_r", 16),
        shipped["critic"].get("lora_alpha", 32),
    )  # the recipe's LoRA (the 13B release's r 128 / alpha 256 for CogVideoX-2B's)
    assert trained_critic["gradient_checkpointing"] is shipped["critic"]["gradient_checkpointing"] is True
    assert trained_critic["dtype"] == shipped["critic"]["dtype"]  # a bf16 base (float32: 33 GB for a 7B)
    trained = json.loads((w / "aligned_rwl/align_config.json").read_text())
    for key in ("lr", "weight_decay", "grad_accum", "max_grad_norm", "gradient_checkpointing", "finetune"):
        assert trained[key] == shipped["align"]["settings"][key], key
    assert tuple(trained["betas"]) == tuple(shipped["align"]["settings"]["betas"])
    generated = json.loads((w / "align_videos/manifest.jsonl").read_text().splitlines()[0])
    assert generated["guidance"] == shipped["sampler"]["guidance"]
    assert generated["negative_prompt"] == shipped["sampler"].get("negative_prompt")  # Wan's, kept
    assert (w / "report.html").stat().st_size > 0


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_gpu_recipes_train_their_7b_critic_on_a_bf16_base(name):
    """The critic's base in bfloat16 (its LoRA stays fp32): at float32 a 7B base holds 33 GB and a plain
    `videolift run`, which has no accelerate autocast, multiplies in fp32 (docs/evaluate.md, estimates)."""
    critic = yaml.safe_load((REPO / "configs/pipeline" / name).read_text())["critic"]
    assert (critic["adapter"], critic["dtype"]) == ("lora", "bfloat16")


def test_cogvideox_recipe_counts_are_the_papers_and_agree_with_each_other():
    """What LIFT_REFERENCE.md states, and the arithmetic the files' comments claim, on 8 GPUs."""
    from videolift.align.config import AlignConfig
    from videolift.critic.sft_config import SFTConfig

    recipe = yaml.safe_load((REPO / "configs/pipeline/cogvideox2b_qwen2vl.yaml").read_text())
    sampler, critic, align = recipe["sampler"], recipe["critic"], recipe["align"]["settings"]
    gpus = yaml.safe_load((REPO / "configs/accelerate/ddp.yaml").read_text())["num_processes"]
    assert gpus == 8
    # the generated videos: 49 frames of 480x720, 50 steps, guidance 6; alignment trains at that size
    assert (sampler["frames"], sampler["height"], sampler["width"]) == (49, 480, 720)
    assert (sampler["steps"], sampler["guidance"]) == (50, 6.0)
    assert (align["frames"], align["height"], align["width"]) == (49, 480, 720)
    # critic: 9K / 1K split, AdamW 1e-5 cosine with 3 % warmup, ~20 epochs, 8 frames, LoRA r 128 / alpha 256
    assert recipe["hra"]["test_fraction"] == 0.1
    assert (critic["lr"], critic["epochs"], critic["lora_r"], critic["lora_alpha"]) == (1e-5, 20, 128, 256)
    defaults = SFTConfig()
    assert (defaults.warmup_ratio, defaults.num_frames) == (0.03, 8)
    assert critic["batch_size"] * critic["grad_accum"] * gpus == 128  # the 13B release's global batch
    # alignment: the release's optimizer, 64 videos a step, 20 epochs of ~40K generated + ~20K real videos
    assert (align["lr"], tuple(align["betas"]), align["weight_decay"]) == (1e-5, (0.9, 0.95), 1e-4)
    assert (align["warmup_steps"], align["max_grad_norm"], align["mixed_precision"]) == (200, 1.0, "bf16")
    per_step = (align["batch_size"] + align["real_batch_size"]) * align["grad_accum"] * gpus
    assert per_step == 64 and align["max_steps"] * per_step == 20 * 60_000
    assert align["warmup_steps"] < align["max_steps"] // 10
    # the standalone align config (`align --config`, DeepSpeed) trains what the pipeline's align stage does
    standalone = AlignConfig.load(
        REPO / "configs/align/cogvideox2b_lift.yaml", model="m", scores="s.jsonl", videos="v", out="o"
    )
    for key, value in align.items():
        assert getattr(standalone, key) == (tuple(value) if key == "betas" else value), key
    assert standalone.checkpoint_every <= standalone.max_steps
