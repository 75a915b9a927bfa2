"""Wan 2.1 as a second T2V family: detection, generation, its flow-matching loss, alignment, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from align_world import PROMPTS, align_config, full_alignment, generate_two, make_world, straight_and_resumed
from videolift.align.trainer import train
from videolift.cli import app
from videolift.core.errors import VideoliftError
from videolift.core.video import read_video, read_video_and_fps
from videolift.models.families import detect_family, get_spec, spec_for
from videolift.models.tiny_cogvideox import build_tiny_cogvideox
from videolift.models.tiny_wan import build_tiny_wan


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny Wan pipeline, four 9x32x32 videos scored 2 Good / 2 Bad, and a real set."""
    root = tmp_path_factory.mktemp("wan")
    build_tiny_wan(root / "model")
    return make_world(root, size=32)


def test_family_is_read_from_the_model_index(world, tmp_path):
    build_tiny_cogvideox(tmp_path / "cog")
    assert detect_family(str(world / "model")) == "wan"
    assert detect_family(str(tmp_path / "cog")) == "cogvideox"
    # An explicit family that another family's saved class contradicts is refused (it failed in diffusers).
    with pytest.raises(VideoliftError, match="is a CogVideoXPipeline, not a WanPipeline"):
        spec_for(str(tmp_path / "cog"), "wan")

    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoliftError, match="no model_index.json"):
        detect_family(str(tmp_path / "empty"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other/model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(VideoliftError, match="StableDiffusionPipeline is not supported.*WanPipeline"):
        detect_family(str(tmp_path / "other"))
    with pytest.raises(VideoliftError, match="HF_HUB_OFFLINE is set"):  # the Hub cannot be asked
        detect_family("no-such-org/no-such-model")
    with pytest.raises(VideoliftError, match="unknown T2V family 'hunyuan'"):
        get_spec("hunyuan")


def test_generate_cli_makes_wan_videos_and_checks_their_sizes(world, tmp_path):
    args, records = generate_two(world / "model", tmp_path)
    assert len(records) == 2 and records[0]["max_sequence_length"] == 512  # WanPipeline's own default
    # Wan 2.1's own guidance and frame rate when not given (CogVideoX's 6 and 8 would play it slowed down)
    assert (records[0]["guidance"], records[0]["fps"]) == (5.0, 16)
    assert read_video_and_fps(tmp_path / "out" / records[0]["video"])[1] == 16
    video = read_video(tmp_path / "out" / records[0]["video"])
    assert video.shape == (9, 32, 32, 3) and records[0]["negative_prompt"] is None

    # A negative prompt changes what guidance steers away from, and is recorded for regeneration.
    result = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "neg"), "--negative-prompt", "blurry static"]
    )
    assert result.exit_code == 0, result.output
    neg = [json.loads(line) for line in (tmp_path / "neg/manifest.jsonl").read_text().splitlines()]
    assert neg[0]["negative_prompt"] == "blurry static" and neg[0]["seed"] == records[0]["seed"]
    other = read_video(tmp_path / "neg" / neg[0]["video"])
    assert np.abs(other.astype(int) - video.astype(int)).mean() > 1.0

    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--frames", "10"])
    assert bad.exit_code != 0 and "Wan needs frames = 4k+1" in bad.output
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--width", "40"])
    assert bad.exit_code != 0 and "multiple of 16" in bad.output
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--dynamic-cfg"])
    assert bad.exit_code != 0 and "CogVideoX's" in bad.output
    assert not (tmp_path / "bad" / "manifest.jsonl").exists()


class _Recorder(torch.nn.Module):
    """Stands in for the transformer: records its inputs, predicts a fixed tensor."""

    def __init__(self, pred: torch.Tensor):
        super().__init__()
        self.pred, self.seen = pred, {}

    def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
        self.seen = {"x": hidden_states, "t": timestep}
        return (self.pred,)


def test_flow_matching_loss_uses_shifted_sigmas_and_the_velocity_target(world):
    spec = get_spec("wan")
    pipe = spec.load(str(world / "model"))
    assert spec.shift(pipe.scheduler) == 3.0  # the tiny model's UniPC flow_shift, as Wan2.1-1.3B's
    t = torch.tensor([0, 500, 999])
    sigma = spec.sigmas(pipe, t, torch.float32)  # (t + 1) / 1000, shifted: s*x / (1+(s-1)x)
    assert torch.allclose(
        sigma, torch.tensor([3 * 0.001 / (1 + 2 * 0.001), 3 * 0.501 / (1 + 2 * 0.501), 1.0])
    )

    gen = torch.Generator().manual_seed(0)
    latents, noise, pred = (torch.randn(3, 4, 3, 4, 4, generator=gen) for _ in range(3))
    model = _Recorder(pred)
    loss = spec.training_loss(pipe, model, latents, torch.zeros(3, 8, 32), timesteps=t, noise=noise)
    s = sigma.view(-1, 1, 1, 1, 1)
    assert torch.allclose(model.seen["x"], (1 - s) * latents + s * noise)
    assert torch.allclose(model.seen["t"], sigma * 1000)
    assert torch.allclose(loss, ((pred - (noise - latents)) ** 2).flatten(1).mean(1))


@pytest.mark.parametrize(("n", "shift"), [(1000, 1.0), (1000, 3.0), (1000, 5.0), (1000, 12.0), (7, 3.0)])
def test_training_noise_levels_are_the_flow_match_schedulers_grid(n, shift):
    """The trainer's t in [0, N) draws diffusers' FlowMatchEulerDiscreteScheduler's own sigmas and timesteps
    (what diffusers' flow-matching examples, finetrainers and DiffSynth-Studio draw from), bit for bit:
    never sigma 0 (a clean input, nothing to learn), sigma 1 (pure noise) included."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=n, shift=shift)
    pipe = type("P", (), {"scheduler": ref})()
    spec = get_spec("wan")
    sigma = spec.sigmas(pipe, torch.arange(n), torch.float32)
    assert torch.equal(sigma, ref.sigmas.flip(0))  # the grid runs noisiest first; t, noisiest last
    assert torch.equal(sigma * n, ref.timesteps.flip(0))  # the timestep training feeds the transformer
    assert float(sigma.min()) > 0 and float(sigma.max()) == 1.0


def test_the_wan_pipelines_own_flow_shift_gives_the_same_grid(world):
    from diffusers import FlowMatchEulerDiscreteScheduler

    spec = get_spec("wan")
    pipe = spec.load(str(world / "model"))  # UniPC with flow_shift 3, as Wan2.1-1.3B's
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    t = torch.arange(1000)
    assert torch.equal(spec.sigmas(pipe, t, torch.float32), ref.sigmas.flip(0))
    model = _Recorder(torch.zeros(4, 4, 3, 4, 4))
    ends = torch.tensor([0, 1, 998, 999])
    latents = torch.randn(4, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    spec.training_loss(
        pipe, model, latents, torch.zeros(4, 8, 32), timesteps=ends, noise=torch.ones_like(latents)
    )
    assert torch.equal(model.seen["t"], ref.timesteps[999 - ends])
    assert float(model.seen["t"][-1]) == 1000.0  # t = 999: pure noise, the sampler's first step
    assert torch.equal(model.seen["x"][-1], torch.ones_like(latents[-1]))


def test_latents_are_normalised_as_the_pipeline_denormalises_them(world):
    spec = get_spec("wan")
    pipe = spec.load(str(world / "model"))
    mean = torch.randn(2, 4, 3, 4, 4)
    params = torch.cat([mean, torch.full_like(mean, -30.0)], dim=1)  # (almost) no posterior noise
    latents = spec.sample_latents(pipe, params, torch.Generator().manual_seed(0))
    cfg = pipe.vae.config
    # WanPipeline decodes latents / (1 / std) + mean: undoing it must give the VAE mean back.
    back = latents * torch.tensor(cfg.latents_std).view(1, 4, 1, 1, 1) + torch.tensor(cfg.latents_mean).view(
        1, 4, 1, 1, 1
    )
    assert torch.allclose(back, mean, atol=1e-5)


def test_full_alignment_lowers_the_objective_and_exports_a_wan_pipeline(world, tmp_path):
    _, _, _, before, after = full_alignment("wan", world, tmp_path / "run")
    assert after < 0.9 * before, (before, after)


def test_lora_alignment_loads_with_plain_diffusers(world, tmp_path):
    from diffusers import WanPipeline

    result = train(align_config(world, tmp_path / "run", method="rs", finetune="lora", lora_rank=4, lora_alpha=8,
                        lr=1e-2, max_steps=3), progress=False)  # fmt: skip
    pipe = WanPipeline.from_pretrained(world / "model")
    pipe.load_lora_weights(result.export_dir)
    base = WanPipeline.from_pretrained(world / "model").transformer
    gen = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 4, 3, 4, 4, generator=gen), torch.randn(1, 8, 32, generator=gen)
    t = torch.tensor([500.0])
    out = [m(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
           for m in (pipe.transformer, base)]  # fmt: skip
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_resumed_wan_run_ends_with_the_uninterrupted_weights(world, tmp_path):
    a, b = straight_and_resumed(world, tmp_path)  # family None vs "wan"
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    # A family the model was not saved with is refused before the checkpoint is compared.
    more = dict(real=world / "real.jsonl", max_steps=6, checkpoint_every=2, resume=True, family="cogvideox")
    with pytest.raises(VideoliftError, match="is a WanPipeline, not a CogVideoXPipeline"):
        train(align_config(world, tmp_path / "b", **more), progress=False)


def test_a_boundary_without_a_second_expert_is_refused_for_alignment_with_a_reason(world):
    spec = get_spec("wan")
    pipe = spec.load(str(world / "model"))
    spec.check_trainable(pipe)  # Wan 2.1: trainable (2.2 TI2V-5B and A14B: tests/test_wan22*.py)
    pipe.register_to_config(boundary_ratio=0.875)  # Wan 2.2 A14B's switch, with no transformer_2 to switch to
    with pytest.raises(VideoliftError, match="transformer_2 without boundary_ratio, or the other way round"):
        spec.check_trainable(pipe)


def test_text_cache_drops_wans_zero_padding_and_restores_it_on_load(world, tmp_path):
    from videolift.align.cache import EncodingCache, load_tensor, model_fingerprint, tensor_shape

    spec = get_spec("wan")
    pipe = spec.load(str(world / "model"))
    fingerprint = model_fingerprint(str(world / "model"), pipe, trained=pipe.transformer)
    cache = EncodingCache(
        tmp_path / "cache", fingerprint, align_config(world, tmp_path / "run").preprocessing()
    )
    [(_, text)], _ = cache.build(spec, pipe, [(world / "videos/v0.mp4", PROMPTS[0])], progress=False)
    full = spec.encode_prompts(pipe, [PROMPTS[0]])[0]
    assert full.shape[0] == 512 and not full[-1].any()  # Wan pads every prompt to 512 tokens with zeros
    assert torch.equal(load_tensor(text), full) and tensor_shape(text) == tuple(full.shape)
    assert text.stat().st_size < full.numel() * full.element_size() / 10  # a few tokens stored, not 512


def test_a_bf16_export_keeps_wans_fp32_modules_in_fp32():
    from diffusers import WanTransformer3DModel

    from videolift.align.export import cast_for_export

    transformer = build_tiny_wan().transformer
    before = {n: p.detach().clone() for n, p in transformer.named_parameters()}
    cast_for_export(transformer, torch.bfloat16)
    kept = [n for n, p in transformer.named_parameters() if p.dtype == torch.float32]
    keep = set(WanTransformer3DModel._keep_in_fp32_modules)
    assert kept == [n for n, _ in transformer.named_parameters() if set(n.split(".")) & keep]
    assert any("time_embedder" in n for n in kept) and any("scale_shift_table" in n for n in kept)
    assert all(torch.equal(p, before[n]) for n, p in transformer.named_parameters() if n in kept)
    assert transformer.patch_embedding.weight.dtype == torch.bfloat16


def test_wan_loads_its_vae_in_fp32_and_still_samples_in_bf16(world):
    from videolift.models.base import SamplerSettings

    spec = get_spec("wan")
    pipe = spec.load(str(world / "model"), dtype="bfloat16")
    assert pipe.vae.dtype == torch.float32 and pipe.transformer.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.bfloat16
    settings = SamplerSettings(steps=2, guidance=5.0, frames=9, height=32, width=32, fps=16)
    [video] = spec.generate(pipe, ["a red square moves right"], [0], settings)
    assert video.shape == (9, 32, 32, 3)
    assert spec.encode_videos(pipe, [video]).dtype == torch.float32
