"""LTX-Video as a third T2V family: detection, generation, its flow-matching loss on packed tokens with the
text's attention mask, alignment (full and LoRA) that plain diffusers loads, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from align_world import align_config, full_alignment, generate_two, make_world, straight_and_resumed
from videolift.align.trainer import train
from videolift.cli import app
from videolift.core.errors import VideoliftError
from videolift.core.video import read_video, read_video_and_fps
from videolift.models.base import SamplerSettings
from videolift.models.families import detect_family, get_spec, spec_for
from videolift.models.tiny_ltx import build_tiny_ltx
from videolift.models.tiny_wan import build_tiny_wan


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny LTX pipeline, four 9x32x32 videos scored 2 Good / 2 Bad, and a real set."""
    root = tmp_path_factory.mktemp("ltx")
    build_tiny_ltx(root / "model")
    return make_world(root, size=32)


@pytest.fixture(scope="module")
def pipe(world):
    return get_spec("ltx").load(str(world / "model"))


def test_family_is_read_from_the_model_index(world, tmp_path):
    build_tiny_wan(tmp_path / "wan")
    assert detect_family(str(world / "model")) == "ltx"
    assert detect_family(str(tmp_path / "wan")) == "wan"
    with pytest.raises(VideoliftError, match="is a LTXPipeline, not a WanPipeline"):
        spec_for(str(world / "model"), "wan")
    with pytest.raises(VideoliftError, match="is a WanPipeline, not a LTXPipeline"):
        spec_for(str(tmp_path / "wan"), "ltx")
    (tmp_path / "other").mkdir()
    (tmp_path / "other/model_index.json").write_text(json.dumps({"_class_name": "LTXConditionPipeline"}))
    with pytest.raises(VideoliftError, match="LTXConditionPipeline is not supported.*LTXPipeline \\(ltx\\)"):
        detect_family(str(tmp_path / "other"))
    # LTX-Video's own sizes when unset (no checkpoint records one), known before the model loads.
    assert get_spec("ltx").own_sampling(str(world / "model"), frames=9) == (9, 512, 704)


def test_generate_cli_makes_ltx_videos_and_checks_their_sizes(world, tmp_path):
    args, records = generate_two(world / "model", tmp_path)
    assert len(records) == 2 and records[0]["max_sequence_length"] == 128  # LTXPipeline's own default
    assert (records[0]["guidance"], records[0]["fps"]) == (3.0, 25)  # the pipeline's guidance and frame rate
    assert read_video_and_fps(tmp_path / "out" / records[0]["video"])[1] == 25
    video = read_video(tmp_path / "out" / records[0]["video"])
    assert video.shape == (9, 32, 32, 3)

    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--frames", "10"])
    assert bad.exit_code != 0 and "LTX-Video needs frames = 4k+1" in bad.output  # the tiny VAE's 4x
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--width", "40"])
    assert bad.exit_code != 0 and "LTXPipeline needs a multiple of 32" in bad.output
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--steps", "1"])
    assert bad.exit_code != 0 and "needs at least 2 steps" in bad.output  # diffusers: an IndexError
    bad = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "bad"), "--dynamic-cfg"])
    assert bad.exit_code != 0 and "CogVideoX's" in bad.output
    assert not (tmp_path / "bad" / "manifest.jsonl").exists()


def test_the_frame_rate_conditions_the_video(pipe):
    # LTX is conditioned on the frame rate (its rotary positions in time): `--fps` is passed as it, so the
    # MP4 plays at the rate the model made the clip for. Same seed, other rate: another video.
    spec = get_spec("ltx")

    def sample(fps: int) -> np.ndarray:
        settings = SamplerSettings(steps=2, guidance=3.0, frames=9, height=32, width=32, fps=fps)
        return spec.generate(pipe, ["a red square moves right"], [0], settings)[0].astype(int)

    own = sample(25)
    assert np.array_equal(sample(25), own)
    assert np.abs(sample(8) - own).mean() > 0.1  # 0.29; exactly 0 if it did not reach the pipeline


class _Recorder(torch.nn.Module):
    """Stands in for the transformer: records its inputs, predicts a fixed tensor (or calls ``inner``)."""

    def __init__(self, pred: torch.Tensor | None = None, inner=None):
        super().__init__()
        self.pred, self.inner, self.seen = pred, inner, {}
        self.config = getattr(inner, "config", None) or type("C", (), {"patch_size": 1, "patch_size_t": 1})

    def forward(self, **kw):
        self.seen = kw
        return self.inner(**kw) if self.inner is not None else (self.pred,)


def test_flow_matching_loss_on_packed_tokens_against_a_hand_computation(pipe):
    spec = get_spec("ltx")
    # LTX's scheduler shifts by sequence length when sampling; its static shift is 1: sigma = (t + 1) / 1000,
    # the scheduler's own training grid.
    assert pipe.scheduler.config.use_dynamic_shifting and spec.shift(pipe.scheduler) == 1.0
    t = torch.tensor([0, 500, 999])
    sigma = spec.sigmas(pipe, t, torch.float32)
    assert torch.allclose(sigma, torch.tensor([0.001, 0.501, 1.0]))
    own = type(pipe.scheduler).from_config(pipe.scheduler.config)  # as loaded: sampling resets its sigmas
    assert torch.equal(sigma, own.sigmas[999 - t])  # its own training grid (unshifted: dynamic shifting)

    gen = torch.Generator().manual_seed(0)
    latents, noise = (torch.randn(3, 8, 3, 4, 6, generator=gen) for _ in range(2))
    pred = torch.randn(3, 3 * 4 * 6, 8, generator=gen)  # (B, tokens, C): frame-major, then rows, columns
    text = torch.zeros(3, 16, 32)
    text[:, :5] = torch.randn(3, 5, 32, generator=gen)  # five prompt tokens, then zero padding
    model = _Recorder(pred)
    loss = spec.training_loss(pipe, model, latents, text, timesteps=t, noise=noise)

    def pack(x):  # (B, C, F, h, w) -> (B, F*h*w, C), by hand
        return x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], -1, x.shape[1])

    s = sigma.view(-1, 1, 1, 1, 1)
    seen = model.seen
    assert torch.allclose(seen["hidden_states"], pack((1 - s) * latents + s * noise))
    assert torch.allclose(seen["timestep"], sigma * 1000)
    assert (seen["num_frames"], seen["height"], seen["width"]) == (3, 4, 6)
    assert seen["encoder_attention_mask"].tolist() == [[True] * 5 + [False] * 11] * 3
    assert torch.allclose(loss, ((pred - pack(noise - latents)) ** 2).mean(dim=(1, 2)))


def test_training_calls_the_transformer_as_sampling_does(pipe, monkeypatch):
    """Same grid, rotary scale and mask as LTXPipeline passes at its default frame rate."""
    spec = get_spec("ltx")
    calls = []
    forward = pipe.transformer.forward
    monkeypatch.setattr(pipe.transformer, "forward", lambda **kw: calls.append(kw) or forward(**kw))
    settings = SamplerSettings(steps=2, guidance=1.0, frames=9, height=32, width=32, fps=25)
    [video] = spec.generate(pipe, ["a red square moves right"], [0], settings)
    monkeypatch.undo()
    sampled = calls[0]

    model = _Recorder(inner=pipe.transformer)
    latents = spec.sample_latents(pipe, spec.encode_videos(pipe, [video]))
    text = spec.encode_prompts(pipe, ["a red square moves right"])
    spec.training_loss(
        pipe, model, latents, text, timesteps=torch.tensor([500]), noise=torch.randn_like(latents)
    )
    trained = model.seen
    for key in ("num_frames", "height", "width"):
        assert trained[key] == sampled[key], key
    assert tuple(trained["rope_interpolation_scale"]) == tuple(sampled["rope_interpolation_scale"])
    assert trained["hidden_states"].shape == sampled["hidden_states"].shape
    assert torch.equal(trained["encoder_attention_mask"], sampled["encoder_attention_mask"].bool())


def test_zeroed_text_padding_carries_the_mask_and_changes_nothing_behind_it(world, pipe, tmp_path):
    from videolift.align.cache import EncodingCache, load_tensor, model_fingerprint

    spec = get_spec("ltx")
    prompts = ["a red square moves right", ""]
    embeds, mask, _, _ = pipe.encode_prompt(
        prompts, do_classifier_free_guidance=False, max_sequence_length=128
    )
    ours = spec.encode_prompts(pipe, prompts)
    assert torch.equal(spec.text_mask(ours), mask) and mask.sum(1).tolist() == [6, 1]  # words + </s>; </s>
    assert embeds[0, 6:].abs().sum() > 0  # T5's padding rows carry values; the cached ones are zero
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3 * 8 * 8, 8, generator=gen)
    kw = dict(hidden_states=x, timestep=torch.tensor([500.0, 500.0]), num_frames=3, height=8, width=8,
              rope_interpolation_scale=(4 / 25, 4, 4), return_dict=False)  # fmt: skip
    with torch.no_grad():
        sampled = pipe.transformer(encoder_hidden_states=embeds, encoder_attention_mask=mask, **kw)[0]
        trained = pipe.transformer(
            encoder_hidden_states=ours, encoder_attention_mask=spec.text_mask(ours), **kw
        )[0]
        unmasked = pipe.transformer(encoder_hidden_states=embeds, encoder_attention_mask=mask | True, **kw)[0]
    assert torch.allclose(trained, sampled, atol=1e-5)
    assert not torch.allclose(unmasked, sampled, atol=1e-3)  # the mask matters: it is not dropped

    fingerprint = model_fingerprint(str(world / "model"), pipe, trained=pipe.transformer)
    cache = EncodingCache(
        tmp_path / "cache", fingerprint, align_config(world, tmp_path / "run").preprocessing()
    )
    [(_, text)], _ = cache.build(spec, pipe, [(world / "videos/v0.mp4", prompts[0])], progress=False)
    assert torch.equal(load_tensor(text), ours[0])  # stored as its six rows, restored to 128


def test_latents_are_normalised_as_the_pipeline_denormalises_them(pipe):
    spec = get_spec("ltx")
    mean = torch.randn(2, 8, 3, 4, 4)
    params = torch.cat([mean, torch.full_like(mean, -30.0)], dim=1)  # (almost) no posterior noise
    latents = spec.sample_latents(pipe, params, torch.Generator().manual_seed(0))
    vae = pipe.vae
    assert not torch.equal(vae.latents_std, torch.ones(8))  # the tiny VAE's statistics are not 0 / 1
    # LTXPipeline decodes latents * std / scaling_factor + mean: undoing it must give the VAE mean back.
    back = latents * vae.latents_std.view(1, 8, 1, 1, 1) / vae.config.scaling_factor + vae.latents_mean.view(
        1, 8, 1, 1, 1
    )
    assert torch.allclose(back, mean, atol=1e-5)


def test_full_alignment_lowers_the_objective_and_exports_an_ltx_pipeline(world, tmp_path):
    _, base, aligned, before, after = full_alignment("ltx", world, tmp_path / "run")
    assert after < 0.9 * before, (before, after)
    assert torch.equal(aligned.vae.latents_std, base.vae.latents_std)  # the VAE's buffers came along
    aligned.set_progress_bar_config(disable=True)
    frames = aligned("a red square moves right", num_inference_steps=2, num_frames=9, height=32, width=32,
                     output_type="np", generator=torch.Generator().manual_seed(0)).frames  # fmt: skip
    assert frames.shape == (1, 9, 32, 32, 3) and np.isfinite(frames).all()


def test_lora_alignment_loads_with_plain_diffusers(world, tmp_path):
    from diffusers import LTXPipeline

    (tmp_path / "val.txt").write_text("a red square moves right\n")
    lora = dict(method="rs", finetune="lora", lora_rank=4, lora_alpha=8, lr=1e-2, max_steps=3)
    samples = dict(validation_prompts=tmp_path / "val.txt", validation_steps=2, frames=9, height=32, width=32)
    result = train(align_config(world, tmp_path / "run", **lora, **samples), progress=False)
    # Samples of the model as it trains: the run's clip size, LTX's 25 fps (the rate it is conditioned on).
    sample, fps = read_video_and_fps(tmp_path / "run/validation/step-0000003/000.mp4")
    assert sample.shape == (9, 32, 32, 3) and fps == 25
    pipe = LTXPipeline.from_pretrained(world / "model")
    pipe.load_lora_weights(result.export_dir)
    base = LTXPipeline.from_pretrained(world / "model").transformer
    gen = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 3 * 8 * 8, 8, generator=gen), torch.randn(1, 8, 32, generator=gen)
    kw = dict(hidden_states=x, encoder_hidden_states=text, encoder_attention_mask=torch.ones(1, 8),
              timestep=torch.tensor([500.0]), num_frames=3, height=8, width=8, return_dict=False)  # fmt: skip
    out = [m(**kw)[0] for m in (pipe.transformer, base)]
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_resumed_ltx_run_ends_with_the_uninterrupted_weights(world, tmp_path):
    a, b = straight_and_resumed(world, tmp_path, family="ltx")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
