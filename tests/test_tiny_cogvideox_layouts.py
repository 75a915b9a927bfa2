"""The tiny CogVideoX builder's CogVideoX-1.5 layout (patches across latent frames, rotary positions):
the model spec's training loss and sampling both run on it, as the toy base may use it."""

import numpy as np
import pytest
import torch

from align_world import build_tiny
from videolift.models.base import SamplerSettings
from videolift.models.families import get_spec
from videolift.models.tiny_cogvideox import TinyCogVideoXConfig, build_tiny_cogvideox


def two_losses(spec, pipe, latents: torch.Tensor) -> torch.Tensor:
    """The spec's per-sample training loss of two latents (a prompt and the empty one), checked finite."""
    text = spec.encode_prompts(pipe, ["a red circle moves left", ""])
    noise = torch.randn_like(latents)
    loss = spec.training_loss(
        pipe, pipe.transformer, latents, text, timesteps=torch.tensor([10, 900]), noise=noise
    )
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    return loss


def test_temporal_patches_train_and_sample():
    cfg = TinyCogVideoXConfig(
        patch_size_t=3, temporal_compression=1, sample_height=32, sample_width=32, sample_frames=9
    )
    pipe = build_tiny_cogvideox(None, cfg, seed=0)
    assert pipe.transformer.config.patch_size_t == 3
    assert pipe.transformer.config.use_rotary_positional_embeddings
    spec = get_spec("cogvideox")
    videos = [np.random.default_rng(i).integers(0, 255, (9, 32, 32, 3), dtype=np.uint8) for i in range(2)]
    latents = spec.sample_latents(pipe, spec.encode_videos(pipe, videos))
    assert latents.shape[1] == 9  # one latent frame per frame, grouped 3 by 3 inside the transformer
    loss = two_losses(spec, pipe, latents)
    loss.mean().backward()
    assert pipe.transformer.patch_embed.proj.weight.grad.abs().sum() > 0
    settings = SamplerSettings(steps=2, guidance=2.0, frames=9, height=32, width=32, fps=8)
    out = spec.generate(pipe, ["a red circle moves left"], [0], settings)
    assert out[0].shape == (9, 32, 32, 3) and out[0].dtype == np.uint8


def test_latent_frames_padded_to_whole_temporal_patches_as_cogvideox_1_5():
    # CogVideoX 1.5: 4x temporal compression and patches of 2 latent frames, so 81 frames -> 21 latent
    # frames, one short of a whole patch. Here 9 frames -> 3 latent frames.
    cfg = TinyCogVideoXConfig(
        patch_size_t=2, temporal_compression=4, sample_height=32, sample_width=32, sample_frames=9
    )
    pipe = build_tiny_cogvideox(None, cfg, seed=0)
    spec = get_spec("cogvideox")
    videos = [np.random.default_rng(i).integers(0, 255, (9, 32, 32, 3), dtype=np.uint8) for i in range(2)]
    params = spec.encode_videos(pipe, videos)
    assert params.shape[2] == 3
    latents = spec.sample_latents(pipe, params, torch.Generator().manual_seed(0))
    assert latents.shape[1] == 4  # the first latent frame put in front once more
    assert torch.equal(latents[:, 0], latents[:, 1])
    assert not torch.equal(latents[:, 1], latents[:, 2])
    two_losses(spec, pipe, latents)


def test_cogvideox_1_5_samples_at_thudms_size_and_frame_rate_by_default():
    # CogVideoX 1.5's config holds a 300x300 latent grid for its rotary positions (2400x2400 pixels);
    # THUDM samples it at 768x1360, and its 81 frames are 5 s at 16 fps (1.0: 49 frames at 8 fps).
    # Sizes that are given, and other layouts, are left alone.
    spec = get_spec("cogvideox")
    cfg = TinyCogVideoXConfig(patch_size_t=2, sample_height=2400, sample_width=2400, sample_frames=81)
    pipe = build_tiny_cogvideox(None, cfg, seed=0)
    assert spec.default_sampling(pipe) == (81, 768, 1360) and spec.fps(pipe) == 16
    assert spec.default_sampling(pipe, 9, 64, 96) == (9, 64, 96)
    v1 = build_tiny_cogvideox(None, TinyCogVideoXConfig(), seed=0)
    assert spec.default_sampling(v1) == (9, 64, 64) and spec.fps(v1) == 8


@pytest.mark.parametrize("family", ["cogvideox", "wan", "ltx"])
def test_a_bf16_transformer_gets_the_fp32_loss_at_every_timestep(family):
    # DeepSpeed bf16 runs the transformer in bf16 with no autocast. The noising and the loss must stay fp32:
    # in bf16, CogVideoX's alpha_bar rounds to 1 at small t (no noise, x0 independent of the model: a zero
    # loss; a bf16 weight 1 / (1 - alpha_bar) made it NaN), and Wan's timestep sigma * 1000 is off by up
    # to 2 (LTX's alike). So a bf16 model's losses equal the fp32 one's up to its own rounding, t = 0 included.
    spec = get_spec(family)
    pipe = build_tiny(family)
    videos = [np.random.default_rng(i).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8) for i in range(2)]
    latents = spec.sample_latents(pipe, spec.encode_videos(pipe, videos), torch.Generator().manual_seed(0))
    text = spec.encode_prompts(pipe, ["a red circle", ""])
    noise, steps = torch.randn_like(latents), torch.tensor([0, 500])
    with torch.no_grad():
        full = spec.training_loss(pipe, pipe.transformer, latents, text, timesteps=steps, noise=noise)
        half = spec.training_loss(
            pipe, pipe.transformer.to(torch.bfloat16), latents, text.bfloat16(), timesteps=steps, noise=noise
        )
    assert half.dtype == torch.float32 and (full > 0).all()
    assert torch.allclose(half, full, rtol=0.1), (half, full)


@pytest.mark.parametrize(
    "cfg",
    [
        TinyCogVideoXConfig(),
        TinyCogVideoXConfig(sample_height=48, sample_width=80, sample_frames=13),
        TinyCogVideoXConfig(patch_size_t=2, sample_height=2400, sample_width=2400, sample_frames=81),
    ],
    ids=["v1", "other-size", "v1.5"],
)
def test_own_size_read_from_the_configs_is_the_loaded_pipelines(cfg, tmp_path):
    """What `eval --oracle` and toy runs check before generating: the size sampling would use."""
    spec = get_spec("cogvideox")
    pipe = build_tiny_cogvideox(tmp_path / "m", cfg, seed=0)
    assert spec.own_sampling(str(tmp_path / "m")) == spec.default_sampling(pipe)
    assert spec.own_sampling(str(tmp_path / "m"), 9, None, 96) == spec.default_sampling(pipe, 9, None, 96)
    assert spec.own_sampling("THUDM/CogVideoX-2b") is None  # a Hub id: known once loaded


@pytest.mark.parametrize(
    "cfg",
    [
        TinyCogVideoXConfig(rotary=True),  # CogVideoX 1.0 5B: rotary positions, cropped to the grid
        TinyCogVideoXConfig(patch_size_t=2),  # CogVideoX 1.5: sliced rotary grid, padded latent frames
    ],
    ids=["v1-rotary", "v1.5"],
)
def test_training_calls_the_transformer_as_sampling_does(cfg, monkeypatch):
    """A guard, checked against diffusers' CogVideoXPipeline: training (1.0: at 64x96, not its config's 64x64)
    gives the transformer the rotary embeddings, latent layout and prompt
    embedding that sampling gives it, and no ``ofs`` (the T2V pipeline passes none); the loss is diffusers'
    CogVideoX training example's, v turned into x0 by ``get_velocity`` and weighted 1 / (1 - alpha_bar)."""
    spec = get_spec("cogvideox")
    pipe = build_tiny_cogvideox(None, cfg, seed=0)
    pipe.text_encoder.eval()  # as from_pretrained leaves it (built in memory: dropout on)
    width = 64 if cfg.patch_size_t else 96  # 1.5's sliced grid stops at the config's size
    calls = []
    forward = pipe.transformer.forward
    monkeypatch.setattr(pipe.transformer, "forward", lambda **kw: calls.append(kw) or forward(**kw))
    settings = SamplerSettings(steps=1, guidance=1.0, frames=9, height=64, width=width, fps=8)
    [video] = spec.generate(pipe, ["a red circle moves left"], [0], settings)
    sampled = calls[-1]
    calls.clear()

    latents = spec.sample_latents(pipe, spec.encode_videos(pipe, [video]), torch.Generator().manual_seed(0))
    text = spec.encode_prompts(pipe, ["a red circle moves left"])
    noise, steps = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1)), torch.tensor([700])
    loss = spec.training_loss(pipe, pipe.transformer, latents, text, timesteps=steps, noise=noise)
    trained = calls[-1]
    assert trained["hidden_states"].shape == sampled["hidden_states"].shape
    assert torch.equal(trained["encoder_hidden_states"], sampled["encoder_hidden_states"])
    assert all(
        torch.equal(a, b)
        for a, b in zip(trained["image_rotary_emb"], sampled["image_rotary_emb"], strict=True)
    )
    assert trained.get("ofs") is None and sampled.get("ofs") is None

    alpha_bar = pipe.scheduler.alphas_cumprod[700]
    noisy = alpha_bar.sqrt().float() * latents + (1 - alpha_bar).sqrt().float() * noise
    with torch.no_grad():
        v = forward(hidden_states=noisy, encoder_hidden_states=text, timestep=steps,
                    image_rotary_emb=trained["image_rotary_emb"], return_dict=False)[0]  # fmt: skip
    x0 = alpha_bar.sqrt().float() * noisy - (1 - alpha_bar).sqrt().float() * v
    expected = (((x0 - latents) ** 2) / (1 - alpha_bar).float()).mean()
    assert torch.allclose(loss, expected.reshape(1), rtol=1e-4), (loss, expected)
