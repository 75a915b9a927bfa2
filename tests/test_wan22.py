"""Wan 2.2 TI2V-5B (``WanPipeline`` with ``expand_timesteps``, one transformer, the 48-channel VAE that
patchifies frames itself): generation with its own defaults, the flow-matching loss with per-token
timesteps laid out as the pipeline lays them out, alignment (full and LoRA) that plain diffusers loads,
resume. The two-expert A14B pipelines: tests/test_wan22_a14b.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from align_world import PROMPTS, align_config, full_alignment, make_world, straight_and_resumed
from videolift.align.loss import batch_loss, step_generator
from videolift.align.trainer import train
from videolift.cli import app
from videolift.core.errors import OptionError, VideoliftError
from videolift.core.video import read_video_and_fps
from videolift.models.base import SamplerSettings
from videolift.models.families import detect_family, get_spec
from videolift.models.tiny_wan import build_tiny_wan

SIZE = 64  # the tiny 2.2 VAE's 16x: 4x4 latents, 2x2 tokens a frame


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny Wan 2.2 TI2V-style pipeline, four 9x64x64 videos scored 2 Good / 2 Bad, and a real set."""
    root = tmp_path_factory.mktemp("wan22")
    build_tiny_wan(root / "model", wan22=True)
    return make_world(root, size=SIZE)


@pytest.fixture(scope="module")
def pipe(world):
    return get_spec("wan").load(str(world / "model"))


def test_the_tiny_pipeline_has_wan_2_2_ti2vs_layout(world, pipe):
    assert detect_family(str(world / "model")) == "wan"
    assert pipe.config.expand_timesteps and pipe.transformer_2 is None and pipe.config.boundary_ratio is None
    cfg = pipe.vae.config
    assert (cfg.is_residual, cfg.patch_size, cfg.in_channels) == (True, 2, 12)  # 2x2 pixels -> 12 channels
    assert get_spec("wan").compression(pipe) == (4, 16)
    # TI2V-5B's own sampling when unset, known before the model loads.
    assert get_spec("wan").own_sampling(str(world / "model"), frames=9) == (9, 704, 1280)


def test_generate_cli_makes_wan22_videos_at_its_frame_rate(world, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red square moves right\n")
    args = ["generate", "--model", str(world / "model"), "--prompts", str(prompts), "--steps", "2",
            "--frames", "9", "--height", str(SIZE), "--width", str(SIZE), "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(x) for x in (tmp_path / "out/manifest.jsonl").read_text().splitlines()]
    assert (record["guidance"], record["fps"], record["max_sequence_length"]) == (5.0, 24, 512)
    video, fps = read_video_and_fps(tmp_path / "out" / record["video"])
    assert video.shape == (9, SIZE, SIZE, 3) and fps == 24  # 121 frames at 24 fps: TI2V-5B's 5 s clips

    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--width", "48"])
    assert bad.exit_code != 0 and "multiple of 32 (VAE scale 16 x patch 2)" in bad.output


class _Recorder(torch.nn.Module):
    """Stands in for the transformer: records its inputs, predicts a fixed tensor (or calls ``inner``)."""

    def __init__(self, pred: torch.Tensor | None = None, inner=None):
        super().__init__()
        self.pred, self.inner, self.seen = pred, inner, {}

    def forward(self, **kw):
        self.seen = kw
        return self.inner(**kw) if self.inner is not None else (self.pred,)


def test_flow_matching_loss_with_per_token_timesteps_against_a_hand_computation(pipe):
    spec = get_spec("wan")
    assert spec.shift(pipe.scheduler) == 5.0  # the tiny model's UniPC flow_shift, as TI2V-5B's
    t = torch.tensor([0, 500, 999])
    # (t + 1) / 1000, shifted: s*x / (1+(s-1)x)
    sigma = torch.tensor([5 * 0.001 / (1 + 4 * 0.001), 5 * 0.501 / (1 + 4 * 0.501), 1.0])
    gen = torch.Generator().manual_seed(0)
    latents, noise, pred = (torch.randn(3, 8, 3, 4, 6, generator=gen) for _ in range(3))
    model = _Recorder(pred)
    loss = spec.training_loss(pipe, model, latents, torch.zeros(3, 8, 32), timesteps=t, noise=noise)
    s = sigma.view(-1, 1, 1, 1, 1)
    assert torch.allclose(model.seen["hidden_states"], (1 - s) * latents + s * noise)
    # One timestep per token (3 frames x 2 x 3 patches of 1x2x2), every token at its sample's noise level.
    assert model.seen["timestep"].shape == (3, 3 * 2 * 3)
    assert torch.allclose(model.seen["timestep"], (sigma * 1000)[:, None].expand(3, 18))
    assert torch.allclose(loss, ((pred - (noise - latents)) ** 2).flatten(1).mean(1))


def test_training_calls_the_transformer_with_the_timestep_layout_sampling_uses(pipe, monkeypatch):
    spec = get_spec("wan")
    calls = []
    forward = pipe.transformer.forward
    monkeypatch.setattr(pipe.transformer, "forward", lambda **kw: calls.append(kw) or forward(**kw))
    settings = SamplerSettings(steps=2, guidance=1.0, frames=9, height=SIZE, width=SIZE, fps=24)
    [video] = spec.generate(pipe, [PROMPTS[0]], [0], settings)
    monkeypatch.undo()
    sampled = calls[0]

    params = spec.encode_videos(pipe, [video])
    assert params.shape == (1, 2 * 8, 3, SIZE // 16, SIZE // 16)  # mean and log-variance of 8 channels
    latents = spec.sample_latents(pipe, params)
    text = spec.encode_prompts(pipe, [PROMPTS[0]])
    model = _Recorder(inner=pipe.transformer)
    spec.training_loss(
        pipe, model, latents, text, timesteps=torch.tensor([500]), noise=torch.randn_like(latents)
    )
    trained = model.seen
    assert trained["hidden_states"].shape == sampled["hidden_states"].shape
    assert trained["timestep"].shape == sampled["timestep"].shape == (1, 3 * 2 * 2)
    assert trained["timestep"].dtype == sampled["timestep"].dtype == torch.float32
    for layout in (trained["timestep"], sampled["timestep"]):  # text-to-video: one level for all tokens
        assert torch.equal(layout, layout[:, :1].expand_as(layout))

    # The per-token path is the transformer's 2.2 branch; with equal levels it predicts what one
    # timestep a sample would (so the loss is the velocity loss of 2.1, conditioned as TI2V-5B samples).
    x, t = trained["hidden_states"], trained["timestep"]
    with torch.no_grad():
        per_token = pipe.transformer(
            hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False
        )
        one = pipe.transformer(
            hidden_states=x, timestep=t[:, 0], encoder_hidden_states=text, return_dict=False
        )
    assert torch.allclose(per_token[0], one[0], atol=1e-5)


def test_a_bf16_transformer_trains_with_per_token_timesteps():
    # As DeepSpeed runs it: inputs in bf16, per-token timesteps through the fp32 time embedder.
    spec = get_spec("wan")
    pipe = build_tiny_wan(wan22=True)
    videos = [np.random.default_rng(i).integers(0, 255, (9, SIZE, SIZE, 3), dtype=np.uint8) for i in range(2)]
    params, text = spec.encode_videos(pipe, videos), spec.encode_prompts(pipe, ["a red circle", ""])
    model = _Recorder(inner=pipe.transformer.to(torch.bfloat16))
    loss, per_sample = batch_loss(
        spec, pipe, model, params, text, torch.tensor([0.5, 0.5]), step_generator(0, 0, 0, "cpu")
    )
    assert model.seen["hidden_states"].dtype == torch.bfloat16 and model.seen["timestep"].shape == (2, 12)
    assert per_sample.dtype == torch.float32 and torch.isfinite(per_sample).all()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_full_alignment_lowers_the_objective_and_exports_a_wan22_pipeline(world, tmp_path):
    _, base, aligned, before, after = full_alignment("wan", world, tmp_path / "run")
    assert after < 0.9 * before, (before, after)
    assert aligned.config.expand_timesteps and aligned.vae.config.patch_size == 2  # still a TI2V-5B
    aligned.set_progress_bar_config(disable=True)
    frames = aligned(PROMPTS[0], num_inference_steps=2, num_frames=9, height=SIZE, width=SIZE,
                     output_type="np", generator=torch.Generator().manual_seed(0)).frames  # fmt: skip
    assert frames.shape == (1, 9, SIZE, SIZE, 3) and np.isfinite(frames).all()


def test_lora_alignment_loads_with_plain_diffusers(world, tmp_path):
    from diffusers import WanPipeline

    (tmp_path / "val.txt").write_text(PROMPTS[0] + "\n")
    lora = dict(method="rs", finetune="lora", lora_rank=4, lora_alpha=8, lr=1e-2, max_steps=3)
    samples = dict(
        validation_prompts=tmp_path / "val.txt", validation_steps=2, frames=9, height=SIZE, width=SIZE
    )
    result = train(align_config(world, tmp_path / "run", **lora, **samples), progress=False)
    sample, fps = read_video_and_fps(tmp_path / "run/validation/step-0000003/000.mp4")
    assert sample.shape == (9, SIZE, SIZE, 3) and fps == 24  # sampled through the trainer at 2.2's rate
    pipe = WanPipeline.from_pretrained(world / "model")
    pipe.load_lora_weights(result.export_dir)
    base = WanPipeline.from_pretrained(world / "model").transformer
    gen = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 8, 3, 4, 4, generator=gen), torch.randn(1, 8, 32, generator=gen)
    t = torch.full((1, 12), 500.0)  # per token, as WanPipeline passes it
    out = [m(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
           for m in (pipe.transformer, base)]  # fmt: skip
    assert not torch.allclose(out[0], out[1], atol=1e-4)
    pipe.set_progress_bar_config(disable=True)
    video = pipe(
        PROMPTS[0], num_inference_steps=2, num_frames=9, height=SIZE, width=SIZE, output_type="np"
    ).frames
    assert video.shape == (1, 9, SIZE, SIZE, 3)


def test_resumed_wan22_run_ends_with_the_uninterrupted_weights(world, tmp_path):
    a, b = straight_and_resumed(world, tmp_path, family="wan")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_two_expert_pipelines_need_an_expert_and_half_of_one_is_refused(world, pipe, tmp_path):
    spec = get_spec("wan")
    spec.check_trainable(pipe)  # TI2V-5B: trainable
    pipe.register_to_config(boundary_ratio=0.875)  # a boundary without the low-noise expert
    try:
        with pytest.raises(VideoliftError, match="transformer_2 without boundary_ratio.* Wan 2.2 TI2V-5B"):
            spec.check_trainable(pipe)
    finally:
        pipe.register_to_config(boundary_ratio=None)

    two = build_tiny_wan(wan22=False)
    two.register_modules(transformer_2=build_tiny_wan(seed=1).transformer)
    two.register_to_config(boundary_ratio=0.875)
    two.save_pretrained(tmp_path / "a14b")
    with pytest.raises(OptionError, match="--expert is required"):  # an A14B: tests/test_wan22_a14b.py
        train(align_config(world, tmp_path / "run", model=str(tmp_path / "a14b")), progress=False)
