"""Alignment end to end on a tiny CogVideoX: cache, training, weighting, exports, resume, DDP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from align_world import COLOURS, align_config, build_tiny, make_world, objective, score_line, square_video
from sigterm import sigterm_when
from videolift.align.cache import READ_BATCH, EncodingCache, load_tensor, model_fingerprint
from videolift.align.config import AlignConfig
from videolift.align.loss import batch_loss, step_generator
from videolift.align.trainer import train
from videolift.core.errors import VideoliftError
from videolift.core.memory import clips_per_call
from videolift.core.video import write_video
from videolift.models.families import get_spec
from videolift.models.tiny_cogvideox import build_tiny_cogvideox

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny pipeline, four 9x64x64 videos, a scores file (2 Good, 2 Bad) and a real set."""
    root = tmp_path_factory.mktemp("align")
    build_tiny_cogvideox(root / "model")
    return make_world(root)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _transformer_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "transformer" / "diffusion_pytorch_model.safetensors"))


def test_cache_is_computed_once_and_keyed(world, tmp_path):
    spec = get_spec("cogvideox")
    pipe = spec.load(str(world / "model"))
    fp = model_fingerprint(str(world / "model"), pipe, trained=pipe.transformer)
    items = [(world / f"videos/v{i}.mp4", f"prompt {i % 2}") for i in range(4)]
    cache = EncodingCache(tmp_path / "cache", fp, AlignConfig(**_min(world)).preprocessing())
    paths, stats = cache.build(spec, pipe, items, progress=False)
    assert (stats.videos_encoded, stats.prompts_encoded) == (4, 2)
    mtimes = {p: p.stat().st_mtime_ns for pair in paths for p in pair}

    calls = []
    encode = spec.encode_videos
    spec.encode_videos = lambda *a, **k: calls.append(1) or encode(*a, **k)
    again, stats = cache.build(spec, pipe, items, progress=False)
    assert again == paths and not calls and (stats.videos_cached, stats.prompts_cached) == (4, 2)
    assert mtimes == {p: p.stat().st_mtime_ns for pair in again for p in pair}  # nothing rewritten

    changed = tmp_path / "v0.mp4"  # a copy we can change
    write_video(changed, square_video((220, 30, 30), 0), crf=0, pix_fmt="yuv444p")
    first, _ = cache.build(spec, pipe, [(changed, "prompt 0")], progress=False)
    time.sleep(0.01)
    write_video(changed, square_video((30, 30, 220), 0), crf=0, pix_fmt="yuv444p")
    second, stats = cache.build(spec, pipe, [(changed, "prompt 0")], progress=False)
    assert second[0][0] != first[0][0] and stats.videos_encoded == 1 and stats.prompts_encoded == 0
    resized = EncodingCache(tmp_path / "cache", fp, {**cache.preprocessing, "height": 32, "width": 32})
    assert resized.latent_path(items[0][0]) != paths[0][0]  # preprocessing is part of the key
    other_model = EncodingCache(tmp_path / "cache", "another-model", cache.preprocessing)
    assert other_model.text_path("prompt 0") != paths[0][1]


def test_vae_batches_follow_clip_size_and_tiling_keys_the_cache(world, tmp_path, monkeypatch):
    def per_call(t: int, h: int, w: int) -> int:
        return clips_per_call(t, h, w, cap=READ_BATCH)

    assert per_call(9, 64, 64) == 16 and per_call(9, 48, 48) == 16  # toy clips: as before
    assert per_call(17, 128, 128) == 2 and per_call(49, 480, 720) == 1

    spec = get_spec("cogvideox")
    pipe = spec.load(str(world / "model"))
    items = [(world / f"videos/v{i}.mp4", "p") for i in range(4)]
    sizes = []
    encode = spec.encode_videos
    monkeypatch.setattr(spec, "encode_videos", lambda p, clips: sizes.append(len(clips)) or encode(p, clips))
    cfg = AlignConfig(**_min(world))
    batched, _ = EncodingCache(tmp_path / "a", "m", cfg.preprocessing()).build(
        spec, pipe, items, progress=False
    )
    single, _ = EncodingCache(tmp_path / "b", "m", cfg.preprocessing()).build(
        spec, pipe, items, video_batch=1, progress=False
    )
    assert sizes == [4, 1, 1, 1, 1]
    for (a, _), (b, _) in zip(batched, single, strict=True):  # the same latents up to float32 reordering
        torch.testing.assert_close(load_tensor(a), load_tensor(b), rtol=0, atol=2e-3)
    # The size rule is what sizes the calls (4 toy clips fit under READ_BATCH either way).
    monkeypatch.setattr("videolift.align.cache.clips_per_call", lambda *size, cap: 3)
    sizes.clear()
    EncodingCache(tmp_path / "c", "m", cfg.preprocessing()).build(spec, pipe, items, progress=False)
    assert sizes == [3, 2]  # the fourth clip beside a copy of itself (next test)

    tiled = cfg.model_copy(update={"vae_tiling": True})
    assert cfg.preprocessing() == {"frames": None, "stride": 1, "height": None, "width": None}  # keys kept
    assert tiled.preprocessing() == {**cfg.preprocessing(), "vae_tiling": True}
    video = items[0][0]
    untiled_at = EncodingCache(tmp_path / "a", "m", cfg.preprocessing()).latent_path(video)
    assert EncodingCache(tmp_path / "a", "m", tiled.preprocessing()).latent_path(video) != untiled_at
    assert (
        cfg.model_copy(update={"encode_batch_size": 1}).training_fingerprint() == cfg.training_fingerprint()
    )


def test_a_cache_build_cut_short_and_finished_later_holds_what_one_build_holds(world, tmp_path):
    """A kill -9 mid-build leaves some latents; the rerun encodes the rest, fewer to a VAE call. It must
    store exactly what an uninterrupted build stores, or the resumed run ends with other weights."""
    spec = get_spec("cogvideox")
    pipe = spec.load(str(world / "model"))
    items = [(world / f"videos/v{i}.mp4", "p") for i in range(4)]
    preprocessing = AlignConfig(**_min(world)).preprocessing()
    whole, _ = EncodingCache(tmp_path / "a", "m", preprocessing).build(spec, pipe, items, progress=False)
    cut = EncodingCache(tmp_path / "b", "m", preprocessing)
    cut.build(spec, pipe, items[:3], progress=False)  # what the killed build left
    resumed, stats = cut.build(spec, pipe, items, progress=False)
    assert stats.videos_encoded == 1 and stats.videos_cached == 3
    for (a, _), (b, _) in zip(whole, resumed, strict=True):
        assert torch.equal(load_tensor(a), load_tensor(b)), a.name
    # What the kill left half-written is removed by a later build once old enough to be nobody's.
    old, fresh = tmp_path / "b/latents/.x.safetensors.a1.tmp", tmp_path / "b/text/.y.safetensors.b2.tmp"
    for tmp in (old, fresh):
        tmp.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    cut.build(spec, pipe, items, progress=False)
    assert not old.exists() and fresh.exists()


def test_content_keys_follow_copied_videos_and_hash_each_file_once(world, tmp_path, monkeypatch):
    """--hash-content: a copied video tree hits the cache (no encoding), and a file is hashed once
    per (path, size, mtime), remembered in CACHE/file_hashes.json across runs; without it a copy
    is keyed by where it lies."""
    import shutil

    from videolift.core import files

    hashed = []
    content_hash = files.content_hash
    monkeypatch.setattr(files, "content_hash", lambda p: hashed.append(Path(p)) or content_hash(p))
    spec = get_spec("cogvideox")
    pipe = spec.load(str(world / "model"))
    preprocessing = AlignConfig(**_min(world)).preprocessing()
    memo = tmp_path / "cache/file_hashes.json"

    def build(videos: Path):
        cache = EncodingCache(tmp_path / "cache", "fp", preprocessing, hash_content=True, memo=memo)
        items = [(videos / f"v{i}.mp4", f"prompt {i % 2}") for i in range(4)]
        return cache.build(spec, pipe, items, progress=False)

    paths, stats = build(world / "videos")
    assert stats.videos_encoded == 4 and len(hashed) == 4
    again, stats = build(world / "videos")  # a new run: the memo answers, nothing is read
    assert again == paths and stats.videos_cached == 4 and len(hashed) == 4
    shutil.copytree(world / "videos", tmp_path / "copy")
    copied, stats = build(tmp_path / "copy")
    assert [lat for lat, _ in copied] == [lat for lat, _ in paths]
    assert stats.videos_encoded == 0 and len(hashed) == 8  # each copy hashed once, none encoded
    assert sum(str(tmp_path / "copy") in key for key in json.loads(memo.read_text())) == 4

    by_place = EncodingCache(tmp_path / "cache", "fp", preprocessing)
    assert by_place.latent_path(tmp_path / "copy/v0.mp4") != by_place.latent_path(world / "videos/v0.mp4")


def _min(world: Path) -> dict:
    return {"model": "m", "scores": world / "scores.jsonl", "videos": world, "out": world / "unused"}


def test_fingerprint_follows_encoder_contents_not_paths(world, tmp_path):
    """A copy of the same encoders (an aligned pipeline aligned again) reuses the cache; another
    transformer's weights do not matter; a changed VAE does."""
    import shutil

    from diffusers import CogVideoXPipeline

    def fingerprint(model: Path, memo: Path | None = None) -> str:
        pipe = CogVideoXPipeline.from_pretrained(model)
        return model_fingerprint(str(model), pipe, trained=pipe.transformer, memo=memo)

    memo = tmp_path / "cache" / "file_hashes.json"
    original = fingerprint(world / "model", memo)
    copy = tmp_path / "copy"
    shutil.copytree(world / "model", copy)
    pipe = CogVideoXPipeline.from_pretrained(copy)
    with torch.no_grad():
        for p in pipe.transformer.parameters():
            p.add_(0.5)
    pipe.transformer.save_pretrained(copy / "transformer")
    assert fingerprint(copy, memo) == original
    assert len(json.loads(memo.read_text())) >= 2 * 2  # VAE and text-encoder files of both dirs

    with torch.no_grad():
        next(pipe.vae.parameters()).add_(0.01)
    pipe.vae.save_pretrained(copy / "vae")
    assert fingerprint(copy, memo) != original
    assert fingerprint(copy) == fingerprint(copy, memo)  # the memo saves reading, never changes a key


def test_training_decreases_weighted_loss_and_full_export_loads(world, tmp_path):
    from diffusers import CogVideoXPipeline

    result = train(
        align_config(world, tmp_path / "run", max_steps=40, batch_size=4, weight_decay=0.0, cache_dir=None),
        progress=False,
    )
    assert result.export_dir == tmp_path / "run" / "pipeline" and result.steps == 40
    base = CogVideoXPipeline.from_pretrained(world / "model")
    aligned = CogVideoXPipeline.from_pretrained(result.export_dir)  # plain diffusers
    weights = [0.9, 0.05, 0.9, 0.05]
    before, after = (
        objective("cogvideox", base, base.transformer, world, weights),
        objective("cogvideox", base, aligned.transformer, world, weights),
    )
    assert after < 0.85 * before, (before, after)

    log = [json.loads(line) for line in (tmp_path / "run/logs/train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    assert {"loss", "loss_syn_weighted", "weight_mean", "lr", "steps_per_s", "samples_per_s"} <= set(log[0])
    assert list((tmp_path / "run/logs/tensorboard").glob("events.out.tfevents.*"))
    assert result.data["cache"]["videos_encoded"] == 4
    environment = json.loads((tmp_path / "run/train_summary.json").read_text())["environment"]
    assert environment["torch"] == torch.__version__
    assert environment["diffusers"] and environment["device"] == "cpu"


def test_a_library_caller_gets_the_messages_instead_of_stdout(world, tmp_path, capsys):
    said: list[str] = []
    train(align_config(world, tmp_path / "run", max_steps=2), progress=False, log=said.append)
    assert said[0].startswith("align: ") and said[-1].startswith("done: 2 steps")
    printed = capsys.readouterr()
    # progress=False: no bars at all, diffusers' and transformers' loading and saving bars included
    assert printed.out == "" and "%|" not in printed.err, printed.err
    assert "4 synthetic videos (weights" in said[0]  # none dropped: nothing said of it
    # What a run drops is said at its start, not only stored in the summary (docs/align.md).
    said.clear()
    train(align_config(world, tmp_path / "rs", method="rs", max_steps=1), progress=False, log=said.append)
    assert "2 synthetic videos of 4 (2 not all Good dropped)" in said[0]
    scores = tmp_path / "null.jsonl"
    scores.write_text(
        (world / "scores.jsonl").read_text() + score_line("videos/v1.mp4", "a square", None, None)
    )
    said.clear()
    train(align_config(world, tmp_path / "null", scores=scores, max_steps=1), progress=False, log=said.append)
    assert "4 synthetic videos of 5 (1 without a reward dropped)" in said[0]


def test_the_cache_decodes_only_the_frames_it_keeps(world, tmp_path, monkeypatch):
    import videolift.align.cache as cache_module

    read, asked = cache_module.read_video, []
    monkeypatch.setattr(cache_module, "read_video", lambda path, n=None: asked.append(n) or read(path, n))
    train(
        align_config(world, tmp_path / "run", frames=5, frame_stride=1, cache_dir=tmp_path / "c"),
        progress=False,
    )
    assert asked and set(asked) == {5}  # of 9 frames: the first 5 kept


def test_the_log_gives_each_updates_own_rate_and_throughput_without_checkpoint_saving(
    world, tmp_path, monkeypatch
):
    import time

    import videolift.align.trainer as trainer

    used: list[float] = []
    step = torch.optim.AdamW.step

    def recording(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    save = trainer.save_checkpoint

    def slow_save(*args, **kwargs):
        time.sleep(1.0)
        return save(*args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording)
    monkeypatch.setattr(trainer, "save_checkpoint", slow_save)
    train(
        align_config(world, tmp_path / "run", max_steps=6, warmup_steps=4, checkpoint_every=2), progress=False
    )
    log = [json.loads(line) for line in (tmp_path / "run/logs/train.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx(used) and used[0] == 0.0  # warm-up starts at 0
    # A tiny step takes milliseconds: a second of saving counted in would bring a line below 1 step/s.
    assert min(r["steps_per_s"] for r in log) > 2


def _record_trained_text(monkeypatch) -> tuple[Any, list[torch.Tensor]]:
    """The CogVideoX spec the trainer will use, and the list each training row's text embedding is
    appended to as the loss is computed."""
    import videolift.align.trainer as trainer

    spec = get_spec("cogvideox")
    seen: list[torch.Tensor] = []
    loss = spec.training_loss

    def recording_loss(pipe, model, latents, text, **kw):
        seen.append(text.detach().clone())
        return loss(pipe, model, latents, text, **kw)

    monkeypatch.setattr(spec, "training_loss", recording_loss)
    monkeypatch.setattr(trainer, "get_spec", lambda family: spec)
    return spec, seen


def test_text_dropout_trains_some_rows_on_the_empty_prompt(world, tmp_path, monkeypatch):
    """With --text-dropout the empty prompt is cached once and about that share of the rows the
    transformer trains on carry its embedding instead of their own prompt's."""
    spec, seen = _record_trained_text(monkeypatch)
    result = train(
        align_config(world, tmp_path / "run", max_steps=30, batch_size=2, text_dropout=0.3), progress=False
    )
    cache = result.data["cache"]
    assert cache["prompts_cached"] + cache["prompts_encoded"] == 4 + 1  # four prompts and the empty one

    pipe = spec.load(str(world / "model"))
    empty = spec.encode_prompts(pipe, [""])[0]
    own = spec.encode_prompts(pipe, [f"a {name} square moves right" for name in COLOURS])
    rows = torch.cat(seen)
    is_empty = torch.tensor([torch.allclose(r, empty) for r in rows])
    is_own = torch.tensor([any(torch.allclose(r, o) for o in own) for r in rows])
    assert bool((is_empty ^ is_own).all())  # every row is one or the other
    assert 0.15 < float(is_empty.float().mean()) < 0.45, is_empty.float().mean()


def test_weighted_sampling_trains_mostly_the_high_reward_videos(world, tmp_path, monkeypatch):
    """--syn-sampling weighted draws videos by weight (raw rewards 0.9 for the two Good, 0.05 for the
    two Bad) and scales every loss by the mean weight; uniform sees each video equally often."""
    spec, seen = _record_trained_text(monkeypatch)
    pipe = spec.load(str(world / "model"))
    good = spec.encode_prompts(pipe, ["a red square moves right", "a blue square moves right"])
    share, logged = {}, {}
    for sampling in ("uniform", "weighted"):
        seen.clear()
        out = tmp_path / sampling
        train(align_config(world, out, max_steps=20, syn_sampling=sampling, log_every=1), progress=False)
        rows = torch.cat(seen)
        share[sampling] = float(
            torch.tensor([any(torch.allclose(r, g) for g in good) for r in rows]).float().mean()
        )
        lines = (out / "logs" / "train.jsonl").read_text().splitlines()
        logged[sampling] = {round(json.loads(line)["weight_mean"], 6) for line in lines}
    assert share["uniform"] == 0.5 and share["weighted"] > 0.85, share
    assert logged["weighted"] == {0.475}  # every coefficient is the mean weight
    assert len(logged["uniform"]) > 1


def test_synthetic_min_timestep_applies_to_synthetic_rows_only(world):
    """Synthetic rows draw t >= the minimum, real rows keep the full range; with 0 the draws are the
    default ones (so existing runs and resumes are unchanged)."""
    from videolift.core.video import read_video

    spec, seen = get_spec("cogvideox"), []

    class Spy:
        def __getattr__(self, name):
            return getattr(spec, name)

        def training_loss(self, *args, timesteps, **kw):
            seen.append(timesteps.clone())
            return spec.training_loss(*args, timesteps=timesteps, **kw)

    from diffusers import CogVideoXPipeline

    pipe = CogVideoXPipeline.from_pretrained(world / "model")
    params = spec.encode_videos(pipe, [read_video(world / f"videos/v{i}.mp4") for i in range(4)] * 8)
    text = spec.encode_prompts(pipe, ["a red square moves right"] * 32)
    coef = torch.full((32,), 1 / 32)
    with torch.no_grad():
        for syn_min in (0, 0, 600):
            batch_loss(
                Spy(),
                pipe,
                pipe.transformer,
                params,
                text,
                coef,
                step_generator(3, 0, 0, "cpu"),
                n_syn=16,
                syn_min_timestep=syn_min,
            )
    default, again, restricted = seen
    assert torch.equal(default, again) and int(default[:16].min()) < 600
    assert int(restricted[:16].min()) >= 600 and torch.equal(restricted[16:], default[16:])


@pytest.mark.parametrize("reward", [0.0, 0.9])
def test_zero_weight_video_does_not_change_weights(world, tmp_path, reward):
    scores = tmp_path / "one.jsonl"
    scores.write_text(score_line("videos/v0.mp4", "a red square moves right", "Good", reward))
    cfg = align_config(world, tmp_path / "run", scores=scores, max_steps=3, weight_decay=0.0, batch_size=1)
    trained = _transformer_state(train(cfg, progress=False).export_dir)
    base = _transformer_state(world / "model")
    unchanged = all(torch.equal(trained[k], base[k]) for k in base)
    assert unchanged == (reward == 0.0)


def test_a_diverged_run_stops_with_a_clear_error_and_writes_no_checkpoint_of_it(world, tmp_path):
    scores = tmp_path / "huge.jsonl"
    scores.write_text(score_line("videos/v0.mp4", "a red square moves right", "Good", 1e308))
    # Between log lines, the checkpoint's check of the weights stops it; at a log line, the loss does (no
    # need to train on to the next checkpoint).
    for run, settings, said in (
        ("a", {"checkpoint_every": 1, "log_every": 2}, "the weights are NaN or infinite at step 1"),
        ("b", {"checkpoint_every": 100, "max_steps": 50}, r"the loss is (inf|nan) at step 1 "),
    ):
        cfg = align_config(
            world, tmp_path / run, scores=scores, batch_size=1, **({"max_steps": 2} | settings)
        )
        with pytest.raises(VideoliftError, match=f"training diverged: {said}"):
            train(cfg, progress=False)
        checkpoints = tmp_path / run / "checkpoints"
        assert not checkpoints.exists() or not any(checkpoints.iterdir())
    # The diverged line is strict JSON (jq refuses a bare NaN): null, and the value named.
    refuse = {"parse_constant": lambda name: pytest.fail(f"{name} in the log")}
    last = json.loads((tmp_path / "b" / "logs" / "train.jsonl").read_text().splitlines()[-1], **refuse)
    assert last["step"] == 1 and last["loss"] is None and last["non_finite"]["loss"] in ("nan", "inf")


def test_fp16_needs_a_gradient_scaler_and_an_update_it_skips_keeps_the_lr_schedule(
    world, tmp_path, monkeypatch
):
    """On the CPU accelerate gives fp16 neither autocast nor a GradScaler: a LoRA run ended at its first step
    in "mat1 and mat2 must have the same dtype" after the whole cache (a full one trained in fp32). On a
    GPU (emulated: the CPU GradScaler and autocast the critic's test uses too) an update the scaler skips
    moves no weight, and the LR schedule waits for it, as accelerate's prepared scheduler does."""
    import videolift.align.trainer as trainer
    from videolift.core import distributed

    out = tmp_path / "cpu"
    with pytest.raises(
        VideoliftError, match="--mixed-precision fp16: .* GPU only, and this run is on the cpu"
    ):
        train(align_config(world, out, finetune="lora", mixed_precision="fp16"), progress=False)
    assert not out.exists()  # refused before anything is written

    made = distributed.fresh_accelerator

    def fp16_amp(**settings):
        accelerator = made(**settings)
        # a scale of 2^100 overflows the fp16 backward at every update: every step is skipped
        accelerator.native_amp, accelerator.scaler = True, torch.amp.GradScaler("cpu", init_scale=2.0**100)
        accelerator.state._mixed_precision = "fp16"  # (reset by the next fresh_accelerator): CPU autocast
        return accelerator

    monkeypatch.setattr(trainer, "fresh_accelerator", fp16_amp)
    cfg = align_config(world, tmp_path / "gpu", finetune="lora", mixed_precision="fp16", max_steps=3,
                       warmup_steps=2, checkpoint_every=1, keep_checkpoints=3)  # fmt: skip
    train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "gpu/logs/train.jsonl").read_text().splitlines()]
    assert [(r["step"], r["lr"], r["grad_norm"]) for r in log] == [
        (1, 0.0, None),
        (2, 0.0, None),
        (3, 0.0, None),
    ]
    first, last = (
        load_tensors(tmp_path / f"gpu/checkpoints/step-000000{i}/model.safetensors") for i in (1, 3)
    )
    assert all(torch.equal(first[k], last[k]) for k in first)  # nothing moved


def test_a_warm_up_longer_than_the_run_is_said(world, tmp_path):
    said: list[str] = []
    train(align_config(world, tmp_path / "run", max_steps=2, warmup_steps=4), progress=False, log=said.append)
    warning = next(line for line in said if line.startswith("warning: --warmup-steps"))
    assert "--warmup-steps 4 is not below --max-steps 2" in warning and "0.25 x --lr" in warning


def test_gradient_checkpointing_is_exact_and_ema_is_exported(world, tmp_path):
    from safetensors.torch import load_file

    def run(name: str, **kw) -> dict[str, torch.Tensor]:
        cfg = align_config(world, tmp_path / name, max_steps=3, checkpoint_every=1, keep_checkpoints=3, **kw)
        return _transformer_state(train(cfg, progress=False).export_dir)

    plain, checkpointed = run("plain"), run("gc", gradient_checkpointing=True)
    assert all(torch.allclose(plain[k], checkpointed[k], atol=1e-6) for k in plain)
    ema = run("ema", ema_decay=0.99)
    # diffusers' EMAModel: decay 0 at the first update, then min(ema_decay, (1 + s) / (10 + s)).
    steps = [
        load_file(str(tmp_path / f"plain/checkpoints/step-000000{i}/model.safetensors")) for i in (1, 2, 3)
    ]
    for k in steps[0]:  # checkpoints hold the trained weights; the frozen ones are the base's throughout
        shadow = steps[0][k]
        for s, weights in enumerate(steps[1:], start=1):
            decay = min(0.99, (1 + s) / (10 + s))
            shadow = decay * shadow + (1 - decay) * weights[k]
        assert torch.allclose(ema[k], shadow, atol=1e-6), k
    assert all(torch.equal(ema[k], plain[k]) for k in set(plain) - set(steps[0]))
    assert any(not torch.allclose(ema[k], plain[k]) for k in plain)


def test_rs_lora_export_loads_with_plain_diffusers(world, tmp_path):
    from diffusers import CogVideoXPipeline
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    cfg = align_config(
        world, tmp_path / "run", method="rs", finetune="lora", lora_rank=4, lora_alpha=8, lr=1e-2, max_steps=3
    )
    result = train(cfg, progress=False)
    assert (
        result.export_dir == tmp_path / "run" / "lora" and result.data["kept"] == 2
    )  # only the all-Good videos

    pipe = CogVideoXPipeline.from_pretrained(world / "model")
    pipe.load_lora_weights(result.export_dir)  # plain diffusers
    manual = CogVideoXPipeline.from_pretrained(world / "model").transformer
    manual.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=cfg.lora_targets))
    lora = {
        k.removeprefix("transformer."): v
        for k, v in load_file(str(result.export_dir / "pytorch_lora_weights.safetensors")).items()
    }
    set_peft_model_state_dict(manual, lora)
    base = CogVideoXPipeline.from_pretrained(world / "model").transformer

    gen = torch.Generator().manual_seed(0)
    x, text, t = (
        torch.randn(1, 3, 4, 8, 8, generator=gen),
        torch.randn(1, 16, 32, generator=gen),
        torch.tensor([500]),
    )
    out = {name: m(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0] for name, m in
           (("loaded", pipe.transformer), ("manual", manual), ("base", base))}  # fmt: skip
    assert torch.allclose(out["loaded"], out["manual"], atol=1e-6)  # rank and alpha survived the round trip
    assert not torch.allclose(out["loaded"], out["base"], atol=1e-4)  # and the adapter does something

    # Its checkpoints hold the adapters, not the frozen transformer, and a resumed run ends where an
    # uninterrupted one does.
    saved = load_file(str(tmp_path / "run/checkpoints/step-0000003/model.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    train(cfg.model_copy(update={"max_steps": 5, "resume": True}), progress=False)
    train(cfg.model_copy(update={"max_steps": 5, "out": tmp_path / "straight"}), progress=False)
    resumed, straight = (
        load_file(str(d / "lora/pytorch_lora_weights.safetensors"))
        for d in (tmp_path / "run", tmp_path / "straight")
    )
    assert resumed.keys() == straight.keys()
    assert all(torch.allclose(resumed[k], straight[k], rtol=1e-5, atol=1e-7) for k in resumed)


def _cli_args(world: Path, out: Path, **kw) -> list[str]:
    args = dict(model=world / "model", scores=world / "scores.jsonl", videos=world, out=out, real=world / "real.jsonl",
                max_steps=20, checkpoint_every=3, batch_size=1, grad_accum=2, warmup_steps=2, lr=1e-3, num_workers=0, seed=3) | kw  # fmt: skip
    return [x for k, v in args.items() for x in (f"--{k.replace('_', '-')}", str(v))] + ["--quiet"]


def test_a_video_that_fails_to_decode_when_encoded_is_named_by_its_line(world, tmp_path, monkeypatch):
    """The check before training reads headers; a video that opens but fails to decode midway shows only
    when it is encoded, and is then named by the scores file's line, as the check names its problems."""
    import videolift.align.cache as cache_module
    from videolift.core.errors import DataError, VideoError

    read = cache_module.read_video

    def failing(path, *args, **kwargs):
        if Path(path).name == "v2.mp4":
            raise VideoError(path, "could not decode frame 3")
        return read(path, *args, **kwargs)

    monkeypatch.setattr(cache_module, "read_video", failing)
    with pytest.raises(DataError) as caught:
        train(
            align_config(world, tmp_path / "run", max_steps=1, cache_dir=tmp_path / "cache"), progress=False
        )
    text = str(caught.value)
    assert f"{world / 'scores.jsonl'}, line 3, field 'video'" in text and "could not decode frame 3" in text


def test_a_run_into_an_out_another_run_is_training_in_is_refused(world, tmp_path):
    """E.g. `--resume` while the ranks of a torchrun killed -9 still train in OUT: refused before it
    writes; OUT is free again once that run has ended."""
    from videolift.core.files import lock_run

    out = tmp_path / "run"
    held = lock_run(out, "videolift align")  # the other run
    with pytest.raises(
        VideoliftError, match=rf"in use by another `videolift align` run \(process {os.getpid()}\)"
    ):
        train(align_config(world, out, max_steps=1), progress=False)
    assert [p.name for p in out.iterdir()] == [".lock"]  # nothing written
    held.close()
    assert train(align_config(world, out, max_steps=1), progress=False).steps == 1
    # A run that fails after taking the lock releases it, even while its caller keeps the error (and so
    # the run's frame): a retry in the same process is not refused as "in use" by itself.
    import videolift.align.trainer as trainer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            trainer, "cache_all", lambda *a, **k: (_ for _ in ()).throw(MemoryError("out of memory"))
        )
        with pytest.raises(MemoryError) as kept:
            train(align_config(world, tmp_path / "again", max_steps=1), progress=False)
    assert kept.value is not None
    assert train(align_config(world, tmp_path / "again", max_steps=1), progress=False).steps == 1


def test_resume_after_kill_matches_uninterrupted_run(world, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [str(BIN / "videolift"), "align", *_cli_args(world, tmp_path / "killed")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "killed/checkpoints/step-0000006").exists():
            assert proc.poll() is None and time.time() < deadline, "training ended before the checkpoint"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "killed/pipeline").exists()  # really killed mid-run

    # The run directory moves (to another disk, say) before it resumes, which saves memory now (as after
    # running out of it): the same updates follow.
    moved = (tmp_path / "killed").rename(tmp_path / "moved")
    resumed = AlignConfig.load(None, **_flags(world, moved), resume=True, gradient_checkpointing=True)
    train(resumed, progress=False)
    train(AlignConfig.load(None, **_flags(world, tmp_path / "straight")), progress=False)
    a, b = _transformer_state(moved / "pipeline"), _transformer_state(tmp_path / "straight/pipeline")
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)
    steps = [json.loads(x)["step"] for x in (moved / "logs/train.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))  # lines past the last checkpoint were replaced, not duplicated
    assert len(list((moved / "checkpoints").glob("step-*"))) == 2  # keep_checkpoints


def test_sigterm_checkpoints_the_update_it_stops_at_and_resume_matches(world, tmp_path):
    """A scheduler's stop (SIGTERM; Slurm's preemption) ended the run at once: every update since the last
    checkpoint was lost. Now the update under way ends, is checkpointed, and the run exits 143."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = {"max_steps": 12, "checkpoint_every": 100}  # no checkpoint but the last of its own
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        [str(BIN / "videolift"), "align", *_cli_args(world, out, **args)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    # Twice: Slurm signals every process, and a launcher passes its own on (a second SIGTERM cut it short)
    said = sigterm_when(proc, lambda: len(_lines(out / "logs/train.jsonl")) >= 2, times=2)
    assert proc.returncode == 143, said
    (checkpoint,) = (out / "checkpoints").glob("step-*")
    stopped_at = int(checkpoint.name.split("-")[1])
    said = " ".join(said.split())
    assert f"Terminated (SIGTERM) after update {stopped_at} of 12, checkpointed: what was finished" in said
    assert "Traceback" not in said
    assert 2 <= stopped_at < 12 and not (out / "pipeline").exists()
    steps = [json.loads(x)["step"] for x in (out / "logs/train.jsonl").read_text().splitlines()]
    assert steps == list(range(1, stopped_at + 1))  # every update it made is kept

    flags = {**_flags(world, out), **args}
    train(AlignConfig.load(None, **flags, resume=True), progress=False)
    train(AlignConfig.load(None, **{**flags, "out": tmp_path / "straight"}), progress=False)
    a, b = _transformer_state(out / "pipeline"), _transformer_state(tmp_path / "straight/pipeline")
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)


def test_sigterm_to_one_of_two_processes_checkpoints_the_same_update_on_both(world, tmp_path):
    """The signal reaches the ranks at different moments (here one rank alone): they agree, at each
    update's end, to stop at the same one and checkpoint it together, instead of one rank leaving the
    other waiting in a collective."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    out = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "videolift"), "align",
           *_cli_args(world, out, max_steps=30, checkpoint_every=100)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )

    def rank1() -> int | None:  # torchrun's worker of rank 1 (its child)
        workers = [p for p in Path("/proc").glob("[0-9]*") if _ppid(p) == proc.pid]
        found = [int(p.name) for p in workers if _environ(p).get("RANK") == "1"]
        return found[0] if len(found) == 1 else None

    said = sigterm_when(proc, lambda: len(_lines(out / "logs/train.jsonl")) >= 2 and rank1(), pid=rank1)
    assert proc.returncode != 0 and said.count(", checkpointed: what was finished is kept") == 2
    (checkpoint,) = (out / "checkpoints").glob("step-*")
    stopped_at = int(checkpoint.name.split("-")[1])
    assert 2 <= stopped_at < 30 and not (out / "pipeline").exists()
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == stopped_at and state["world_size"] == 2
    assert {p.name for p in checkpoint.glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _environ(proc: Path) -> dict[str, str]:
    try:
        pairs = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _flags(world: Path, out: Path) -> dict:
    args = _cli_args(world, out)[:-1]
    return {args[i][2:].replace("-", "_"): args[i + 1] for i in range(0, len(args), 2)}


def test_two_process_ddp_on_cpu_stays_in_sync(world, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    prompts = tmp_path / "val.txt"  # validation samples: each rank samples its share
    prompts.write_text("a red square moves right\na blue square moves right\na green square moves right\n")
    held = tmp_path / "held.jsonl"  # three held-out batches of one clip: rank 1 pads its second round
    held.write_text(
        "".join(json.dumps({"video": f"videos/v{i}.mp4", "prompt": "a square"}) + "\n" for i in (0, 2, 3))
    )
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "videolift"), "align",
           *_cli_args(world, tmp_path / "ddp", max_steps=4, checkpoint_every=2), "--validation-prompts",
           str(prompts), "--validation-steps", "1", "--validation-real", str(held), "--validation-real-videos",
           str(world)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:  # never leave ranks behind (torchrun does not always reap them)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads((tmp_path / "ddp/train_summary.json").read_text())
    assert summary["world_size"] == 2
    rank0, rank1 = summary["ranks"]
    assert rank0["first_ids"] != rank1["first_ids"]  # different shards of each global batch
    assert rank0["checksum"] == rank1["checksum"]  # ...yet identical weights
    base = _transformer_state(world / "model")
    trained = _transformer_state(tmp_path / "ddp/pipeline")
    assert any(not torch.equal(base[k], trained[k]) for k in base)
    for step in ("step-0000000", "step-0000002", "step-0000004"):
        folder = tmp_path / "ddp" / "validation" / step
        assert sorted(p.name for p in folder.iterdir()) == ["000.mp4", "001.mp4", "002.mp4", "samples.jsonl"]
        assert len((folder / "samples.jsonl").read_text().splitlines()) == 3
    # The held-out loss over both processes is the one process's (its draws: by batch, not by rank).
    lines = [json.loads(x) for x in (tmp_path / "ddp" / "logs" / "validation.jsonl").read_text().splitlines()]
    assert [(x["step"], x["clips"]) for x in lines] == [(0, 3), (2, 3), (4, 3)]
    one = align_config(world, tmp_path / "one", max_steps=1, real_batch_size=1, validation_real=held,
                       validation_real_videos=world)  # fmt: skip
    train(one, progress=False)
    alone = json.loads((tmp_path / "one" / "logs" / "validation.jsonl").read_text().splitlines()[0])
    assert alone["step"] == 0 and alone["val_loss"] == pytest.approx(lines[0]["val_loss"], rel=1e-6)


def test_a_run_of_two_processes_resumed_by_one_goes_on_where_it_stopped(world, tmp_path):
    """2 -> 1 processes (LoRA, EMA): the resume continues at the checkpoint's step with its schedule and
    says how the videos per step change. The videos go on from where the two processes stopped drawing:
    each micro-step drew positions (micro x processes + rank) of the seeded stream, so one process
    resumed at micro-step 4 drew positions 4.. again, which the two had drawn (the warning said only
    "the data order differs")."""
    from videolift.align.data import Stream

    # A seed whose streams differ at the two positions, so the old order is told from the new one.
    seed = next(s for s in range(50) if Stream(4, 1, seed=s).indices(4) != Stream(4, 1, seed=s).indices(8))
    out, kw = tmp_path / "run", dict(max_steps=2, checkpoint_every=2, seed=seed, ema_decay=0.9)
    env = dict(os.environ, HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "videolift"), "align",
           *_cli_args(world, out, **kw), "--lora", "--lora-rank", "4"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    said: list[str] = []
    flags = _flags(world, out) | kw | {"max_steps": 4}
    resumed = AlignConfig.load(None, **flags, finetune="lora", lora_rank=4, resume=True)
    assert train(resumed, progress=False, log=said.append).steps == 4
    text = " ".join(said)
    assert f"resumed from {out / 'checkpoints/step-0000002'} at step 2" in text
    assert "checkpoint written by 2 processes, now 1: 8 videos per step before it, 4 from it on" in text
    assert "go on from step 2 of 4" in text
    # Micro-step 4 of the one process: the 2 x 2 x 2 = 8 batches drawn before it, then the next.
    syn, real = Stream(4, 1, seed=seed).indices(8), Stream(2, 1, seed=seed + 1).indices(8)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 1 and summary["ranks"][0]["first_ids"] == syn + [-1 - i for i in real]
    state = json.loads((out / "checkpoints/step-0000004/trainer_state.json").read_text())
    assert state["world_size"] == 1 and state["stream_batches"] == 8 + 4  # where a further resume goes on
    lines = [json.loads(x) for x in (out / "logs/train.jsonl").read_text().splitlines()]
    assert [(x["step"], x["world_size"]) for x in lines] == [(1, 2), (2, 2), (3, 1), (4, 1)]
    # The schedule of a straight 4-step run: warm-up over steps 1-2, then constant.
    straight = align_config(world, tmp_path / "straight", max_steps=4, warmup_steps=2, lr=1e-3, batch_size=1,
                            grad_accum=2, seed=seed, finetune="lora", lora_rank=4)  # fmt: skip
    train(straight, progress=False)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "straight/logs/train.jsonl").read_text().splitlines()]
    assert [x["lr"] for x in lines] == lrs


def test_cli_refuses_to_overwrite_checkpoints_without_resume(world, tmp_path):
    from typer.testing import CliRunner

    from videolift.cli import app

    (tmp_path / "run/checkpoints/step-0000003").mkdir(parents=True)
    (tmp_path / "run/checkpoints/step-0000003/trainer_state.json").write_text("{}")
    result = CliRunner().invoke(app, ["align", *_cli_args(world, tmp_path / "run")])
    assert result.exit_code == 1 and "pass --resume" in result.output and "--overwrite" in result.output


def test_cli_overwrite_starts_again_leaving_nothing_of_the_earlier_run_but_its_cache(world, tmp_path):
    from typer.testing import CliRunner

    from videolift.cli import app

    out = tmp_path / "run"
    args = ["align", *_cli_args(world, out, max_steps=3, checkpoint_every=1, keep_checkpoints=3)]
    assert CliRunner().invoke(app, args).exit_code == 0  # a full fine-tune: OUT/pipeline
    cached = sorted(p.name for p in (out / "cache").rglob("*"))
    both = CliRunner().invoke(app, [*args, "--resume", "--overwrite"])
    assert both.exit_code == 2 and "resume and overwrite exclude each other" in both.output
    # A run refused by its checks leaves the earlier one whole, also by one made once the model is loaded.
    config = (out / "align_config.json").read_text()
    for late in (["--scores", str(tmp_path / "none.jsonl")], ["--lora", "--lora-targets", "nonexistent"]):
        refused = CliRunner().invoke(app, [*args, "--overwrite", *late])
        assert (
            refused.exit_code == 1 and (out / "pipeline").is_dir() and (out / "train_summary.json").exists()
        )
        assert (
            len(list((out / "checkpoints").iterdir())) == 3
            and (out / "align_config.json").read_text() == config
        )
    again = ["align", *_cli_args(world, out, max_steps=2, checkpoint_every=2), "--lora", "--overwrite"]
    result = CliRunner().invoke(app, again)
    assert result.exit_code == 0, result.output
    assert not (out / "pipeline").exists() and (out / "lora").is_dir()  # no full model beside the LoRA
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002"]
    assert [json.loads(line)["step"] for line in (out / "logs" / "train.jsonl").read_text().splitlines()] == [
        1,
        2,
    ]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 2
    assert set(cached) <= {p.name for p in (out / "cache").rglob("*")}  # the latents are not encoded again


def test_cli_resume_names_the_settings_that_changed(world, tmp_path):
    from typer.testing import CliRunner

    from videolift.cli import app

    flags = _flags(world, tmp_path / "run")
    saved = AlignConfig.load(None, **flags).model_dump(mode="json")
    ckpt = tmp_path / "run/checkpoints/step-0000003"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 3, "config": {**saved, "lr": 0.5}}))
    result = CliRunner().invoke(app, ["align", *_cli_args(world, tmp_path / "run"), "--resume"])
    assert result.exit_code == 1
    assert "lr: 0.5 in the checkpoint, 0.001 now" in result.output and "max_steps" in result.output
    assert not (tmp_path / "run/align_config.json").exists()  # refused before writing anything


def test_cli_no_progress_silences_every_bar_including_encoding(world, tmp_path):
    from typer.testing import CliRunner

    from videolift.cli import app

    def bars(out: Path, flag: str) -> str:
        args = _cli_args(world, out, max_steps=1, cache_dir=out / "cache")[:-1]  # without --quiet
        result = CliRunner().invoke(app, ["align", *args, flag])
        assert result.exit_code == 0, result.output
        return result.stderr

    assert "encode videos" in bars(tmp_path / "shown", "--progress")
    for flag in ("--no-progress", "--quiet"):
        shown = bars(tmp_path / flag, flag)
        assert "encode videos" not in shown and "align:" not in shown and "%|" not in shown


def test_a_missing_video_is_named_by_its_line_before_anything_is_written(world, tmp_path):
    from typer.testing import CliRunner

    from videolift.cli import app

    scores = tmp_path / "scores.jsonl"
    lines = (world / "scores.jsonl").read_text().splitlines()
    scores.write_text("\n".join(lines) + "\n" + score_line("videos/gone.mp4", "a square", "Good", 0.9))
    args = _cli_args(world, tmp_path / "run", scores=scores)
    result = CliRunner().invoke(app, ["align", *args])
    assert result.exit_code == 1, result.output
    assert f"scores.jsonl, line {len(lines) + 1}, field 'video': no video at" in result.output
    assert not (tmp_path / "run").exists()


def test_cli_hash_content_keys_the_cache_by_content(world, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from videolift.cli import app

    monkeypatch.chdir(world)  # the model named relative to here, with a trailing slash
    args = _cli_args(world, tmp_path / "run", max_steps=1, cache_dir=tmp_path / "cache", model="model/")
    result = CliRunner().invoke(app, ["align", *args, "--hash-content"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run/align_config.json").read_text())
    assert saved["hash_content"] is True
    assert saved["model"] == str((world / "model").resolve())  # a LoRA's base, found from anywhere
    memo = json.loads((tmp_path / "cache/file_hashes.json").read_text())
    assert sum(".mp4|" in key for key in memo) == 4  # the four videos, by content


def test_cli_vae_tiling_and_encode_batch_size_reach_the_encoder(world, tmp_path, monkeypatch):
    from diffusers import AutoencoderKLCogVideoX
    from typer.testing import CliRunner

    from videolift.cli import app

    tiled, sizes = [], []  # recorded, not switched on: diffusers' tiles do not fit the tiny VAE (below)
    monkeypatch.setattr(AutoencoderKLCogVideoX, "enable_tiling", lambda self, *a: tiled.append(1))
    spec = get_spec("cogvideox")
    encode = spec.encode_videos
    monkeypatch.setattr(
        type(spec), "encode_videos", lambda self, p, clips: sizes.append(len(clips)) or encode(p, clips)
    )
    args = _cli_args(world, tmp_path / "run", max_steps=1, cache_dir=tmp_path / "cache")
    result = CliRunner().invoke(app, ["align", *args, "--vae-tiling", "--encode-batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert tiled == [1] and sizes == [3, 2]  # four videos, three at a time (the lone fourth with a copy)
    saved = json.loads((tmp_path / "run/align_config.json").read_text())
    assert saved["vae_tiling"] is True and saved["encode_batch_size"] == 3


def test_tiles_that_do_not_fit_the_frames_are_refused_before_latents_are_cached(world, tmp_path):
    """diffusers' CogVideoX tiles are sized by the VAE's config (half its sample size) and line up only
    for real frame sizes; on the tiny VAE they give 9x9 latents of 64x64 frames, which used to be cached
    and fail the first training step with a shape error deep in the scheduler."""
    from typer.testing import CliRunner

    from videolift.cli import app

    args = _cli_args(world, tmp_path / "run", max_steps=1, cache_dir=tmp_path / "cache")
    result = CliRunner().invoke(app, ["align", *args, "--vae-tiling"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert "encoded 64x64 frames to 9x9 latents, not 8x8 with --vae-tiling" in said, said
    assert "run without tiling" in said
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "latent" in str(p)]


def test_videos_of_other_sizes_are_refused_before_anything_is_encoded(world, tmp_path):
    """Real clips at another size or length fail only once every video is encoded unless found from the
    files' metadata first (hours on a GPU for the paper's 40K videos); --height / --width resize them."""
    from typer.testing import CliRunner

    from videolift.cli import app

    write_video(tmp_path / "small.mp4", square_video((220, 30, 30), 0, size=32), crf=0, pix_fmt="yuv444p")
    write_video(tmp_path / "short.mp4", square_video((220, 30, 30), 0)[:5], crf=0, pix_fmt="yuv444p")
    for name in ("small", "short"):
        (tmp_path / f"{name}.jsonl").write_text(
            json.dumps({"video": f"{name}.mp4", "prompt": "a square"}) + "\n"
        )

    def align(name: str, *extra: str):
        args = _cli_args(world, tmp_path / name / "run", max_steps=1, real=tmp_path / f"{name}.jsonl")
        return CliRunner().invoke(app, ["align", *args, "--real-videos", str(tmp_path), *extra])

    for name, other in (("small", "9x32x32"), ("short", "5x64x64")):
        said = " ".join(align(name).output.split())
        assert (
            f"cannot share a batch: 9x64x64 ({world / 'videos/v0.mp4'}, {world / 'scores.jsonl'} line 1) vs {other} ({tmp_path / name}.mp4, {tmp_path / name}.jsonl line 1)"
            in said
        ), said
        assert "set --frames / --height / --width" in said
        assert not (tmp_path / name).exists()  # nothing written, nothing encoded
    said = " ".join(align("short", "--frames", "9").output.split())
    assert "short.jsonl, line 1, field 'video'" in said and "has 5 frames (stride 1), fewer than 9" in said
    resized = align("small", "--height", "64", "--width", "64")
    assert resized.exit_code == 0, resized.output


def test_cli_lora_targets_adapts_the_feed_forward_layers_too(world, tmp_path):
    """--lora-targets (comma-separated) reaches peft: the exported adapter holds exactly the named
    layers, plain diffusers loads it, and a name that matches nothing is refused before any video
    is encoded."""
    from diffusers import CogVideoXPipeline
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from videolift.cli import app

    args = _cli_args(world, tmp_path / "run", max_steps=2, lora_rank=2, lora_alpha=2)
    result = CliRunner().invoke(app, ["align", *args, "--lora", "--lora-targets", "to_q, ff.net.2"])
    assert result.exit_code == 0, result.output
    keys = load_file(str(tmp_path / "run/lora/pytorch_lora_weights.safetensors")).keys()
    # "transformer.transformer_blocks.N.<layer>.lora_A.weight" -> "<layer>"
    adapted = {k.split(".lora_")[0].split(".", 3)[-1] for k in keys}
    assert adapted == {"attn1.to_q", "ff.net.2"}, adapted
    pipe = CogVideoXPipeline.from_pretrained(world / "model")
    pipe.load_lora_weights(tmp_path / "run/lora", weight_name="pytorch_lora_weights.safetensors")
    assert any("ff.net.2.lora_A" in n for n, _ in pipe.transformer.named_parameters())

    bad = _cli_args(world, tmp_path / "bad", max_steps=2)
    result = CliRunner().invoke(app, ["align", *bad, "--lora", "--lora-targets", "to_qq"])
    assert result.exit_code != 0 and "to_qq" in result.output and "ff.net.2" in result.output, result.output
    assert not (tmp_path / "bad/lora").exists() and not (tmp_path / "bad/cache").exists()  # before encoding


def test_a_restart_and_a_finished_runs_resume_keep_logs_summary_and_export_whole(world, tmp_path):
    """Steps logged by an attempt killed before its first checkpoint are replaced in TensorBoard as in
    train.jsonl; resuming a finished run (which re-exports) keeps its last log line and leaves one
    complete pipeline, the previous export moved aside and removed only once the new one is in place."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from videolift.core.files import replace_dir

    out = tmp_path / "run"
    train(align_config(world, out, max_steps=2), progress=False)
    shutil.rmtree(out / "checkpoints")  # as if killed after logging, before any checkpoint
    train(align_config(world, out, max_steps=2), progress=False)
    events = EventAccumulator(str(out / "logs/tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("align/loss")] == [1, 2]
    before = json.loads((out / "train_summary.json").read_text())

    train(align_config(world, out, max_steps=2, resume=True), progress=False)  # nothing left to train
    after = json.loads((out / "train_summary.json").read_text())
    assert after["last_log"] == before["last_log"] and after["last_log"]["step"] == 2
    assert after["ranks"][0]["first_ids"] == before["ranks"][0]["first_ids"] is not None
    assert sorted(p.name for p in out.iterdir() if "pipeline" in p.name) == ["pipeline"]

    # The swap itself: the old export stays whole until the new one has replaced it.
    (tmp_path / "new").mkdir()
    (tmp_path / "new/model.bin").write_text("new")
    seen = []
    real_replace = os.replace
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("videolift.core.files.os.replace", lambda a, b: seen.append(sorted(
            p.name for p in Path(b).parent.iterdir())) or real_replace(a, b))  # fmt: skip
        replace_dir(tmp_path / "new", out / "pipeline")
    assert (out / "pipeline/model.bin").read_text() == "new" and not (out / ".pipeline.old").exists()
    assert all("pipeline" in names or ".pipeline.old" in names for names in seen)


def test_a_bf16_runs_export_keeps_the_frozen_parts_as_the_base_has_them(world, tmp_path):
    """Mixed precision holds the VAE and text encoder in bf16; the export copies the base's files of
    them instead, so no precision is lost and the aligned model, aligned again, hits the same cache."""
    out = tmp_path / "bf16"
    (tmp_path / "val.txt").write_text("a red square moves right\n")  # samples in bf16 autocast too
    cmd = [str(BIN / "videolift"), "align", *_cli_args(world, out, max_steps=1), "--mixed-precision", "bf16",
           "--validation-prompts", str(tmp_path / "val.txt"), "--validation-steps", "1"]  # fmt: skip
    # its own process: accelerate fixes one precision per process
    done = subprocess.run(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-0000000", "step-0000001"]
    for part in ("vae", "text_encoder"):
        for file in (world / "model" / part).iterdir():
            assert (out / "pipeline" / part / file.name).read_bytes() == file.read_bytes(), file
    cache = {"cache_dir": tmp_path / "cache", "max_steps": 1}
    train(align_config(world, tmp_path / "base", **cache), progress=False)  # the base fills the cache
    again = train(
        align_config(world, tmp_path / "again", model=str(out / "pipeline"), **cache), progress=False
    )
    assert again.data["cache"]["videos_encoded"] == 0 and again.data["cache"]["prompts_encoded"] == 0


@pytest.mark.parametrize("family", ["cogvideox", "wan", "ltx"])
def test_a_transformer_cast_to_bf16_trains_as_deepspeed_runs_it(family):
    # DeepSpeed with bf16 casts the transformer itself and runs no autocast: the cached fp32 latents and
    # text must reach it in bf16, and the per-sample losses come back in fp32.
    pipe = build_tiny(family)
    spec = get_spec(family)
    videos = [np.random.default_rng(i).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8) for i in range(2)]
    params, text = spec.encode_videos(pipe, videos), spec.encode_prompts(pipe, ["a red circle", ""])
    model = pipe.transformer.to(torch.bfloat16)
    loss, per_sample = batch_loss(
        spec, pipe, model, params, text, torch.tensor([0.5, 0.5]), step_generator(0, 0, 0, "cpu")
    )
    assert per_sample.dtype == torch.float32 and torch.isfinite(per_sample).all()
    loss.backward()
    assert all(
        p.grad is not None and p.grad.dtype == torch.bfloat16 for p in model.parameters() if p.requires_grad
    )


def test_bf16_full_fine_tune_starts_from_the_checkpoints_own_fp32_weights(world, tmp_path):
    from videolift.align.trainer import _load_model

    saved = _transformer_state(world / "model")
    cfg = align_config(world, tmp_path / "run", mixed_precision="bf16", family="cogvideox")
    _, pipe, _, _, params = _load_model(cfg, torch.bfloat16)
    state = pipe.transformer.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())  # not a bf16 rounding of them
    assert all(p.dtype == torch.float32 for p in params)
    assert pipe.text_encoder.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16  # frozen: bf16
    _, pipe, *_ = _load_model(
        align_config(world, tmp_path / "lora", mixed_precision="bf16", finetune="lora", family="cogvideox"),
        torch.bfloat16,
    )
    assert next(p for n, p in pipe.transformer.named_parameters() if "lora" not in n).dtype == torch.bfloat16


@pytest.mark.parametrize("scope", ["blocks", "all"])
def test_a_full_fine_tune_trains_the_blocks_as_the_paper_or_every_weight(world, tmp_path, scope):
    from videolift.align.trainable import make_trainable

    transformer = build_tiny_cogvideox().transformer
    params = make_trainable(transformer, align_config(world, tmp_path, full_scope=scope))
    trained = {n for n, p in transformer.named_parameters() if p.requires_grad}
    blocks = {n for n, _ in transformer.named_parameters() if n.startswith("transformer_blocks.")}
    assert len(params) == len(trained)
    assert trained == (blocks if scope == "blocks" else {n for n, _ in transformer.named_parameters()})
    assert "patch_embed.proj.weight" in trained or scope == "blocks"


def test_lora_adapters_train_under_gradient_checkpointing(world, tmp_path):
    """The frozen base feeds the checkpointed blocks inputs that need no grad: a reentrant checkpoint would
    give the adapters no gradient at all. diffusers' non-reentrant one gives them the plain backward's."""
    from videolift.align.trainable import make_trainable

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        transformer = build_tiny_cogvideox().transformer.requires_grad_(False)
        torch.manual_seed(0)  # the same adapters' init
        cfg = align_config(
            world, tmp_path, finetune="lora", lora_rank=4, gradient_checkpointing=checkpointing
        )
        make_trainable(transformer, cfg)
        with torch.no_grad():  # B away from 0, so that A has a gradient too
            for n, p in transformer.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.1)
        transformer.train()
        assert transformer.gradient_checkpointing == checkpointing
        gen = torch.Generator().manual_seed(0)
        x, text = torch.randn(1, 3, 4, 8, 8, generator=gen), torch.randn(1, 16, 32, generator=gen)
        out = transformer(
            hidden_states=x, encoder_hidden_states=text, timestep=torch.tensor([500]), return_dict=False
        )
        out[0].square().mean().backward()
        return {n: p.grad for n, p in transformer.named_parameters() if p.requires_grad}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and all("lora_" in n for n in plain)
    assert all(g is not None and g.abs().max() > 0 for g in checkpointed.values())
    assert all(torch.allclose(plain[n], checkpointed[n], atol=1e-7) for n in plain)


class NoBlocks(torch.nn.Sequential):
    dtype = torch.float32

    def __init__(self):
        super().__init__(torch.nn.Linear(2, 2))


def test_a_transformer_without_blocks_is_refused_for_a_blocks_fine_tune(world, tmp_path):
    from videolift.align.trainable import make_trainable

    with pytest.raises(VideoliftError, match="no list of blocks to train: use --full-scope all"):
        make_trainable(NoBlocks(), align_config(world, tmp_path))


def test_a_family_the_model_was_not_saved_with_is_refused_before_any_work(world, tmp_path):
    with pytest.raises(VideoliftError, match="is a CogVideoXPipeline, not a WanPipeline"):
        train(align_config(world, tmp_path / "wan", family="wan"), progress=False)
    assert not (tmp_path / "wan").exists()


def test_out_of_gpu_memory_says_what_takes_less_and_resumes_with_gradient_checkpointing(
    world, tmp_path, monkeypatch
):
    """torch's OutOfMemoryError mid-run (here raised at the 9th micro-step, after the checkpoint of step 3):
    one line with what torch said and the options that take less memory; the checkpoint is kept and the run
    continues with --resume --gradient-checkpointing."""
    from typer.testing import CliRunner

    import videolift.align.trainer as trainer
    from videolift.cli import app

    real, calls = trainer.batch_loss, []
    said = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.65 GiB of which "
            "1.02 GiB is free. Including non-PyTorch memory, this process has 22.6 GiB memory in use. If reserved "
            "but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")  # fmt: skip

    def running_out(*args, **kwargs):
        calls.append(1)
        if len(calls) == 9:
            raise torch.OutOfMemoryError(said)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "batch_loss", running_out)
    args = _cli_args(world, tmp_path / "run", max_steps=6)
    result = CliRunner().invoke(app, ["align", *args])
    assert result.exit_code == 1 and result.exception is not None
    out = " ".join(result.output.split())
    assert "Error: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of " \
           "23.65 GiB of which 1.02 GiB is free)" in out  # fmt: skip
    assert "PYTORCH_CUDA_ALLOC_CONF" not in out and "--gradient-checkpointing" in out and "--resume" in out
    assert (tmp_path / "run/checkpoints/step-0000003").exists()
    monkeypatch.setattr(trainer, "batch_loss", real)
    resumed = CliRunner().invoke(app, ["align", *args, "--resume", "--gradient-checkpointing"])
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "run/pipeline/model_index.json").exists()


def test_validation_samples_watch_the_run_without_changing_what_it_trains(world, tmp_path):
    """The validation prompts are sampled before training, every --validation-every steps and at the end,
    with `videolift generate`'s seeds (the base's samples are generate's videos); the run trains exactly
    what it trains without them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from typer.testing import CliRunner

    from videolift.cli import app
    from videolift.core.video import read_video

    prompts = tmp_path / "val.txt"
    prompts.write_text("a red square moves right\na blue square moves right\na green square moves right\n")
    sampled = align_config(world, tmp_path / "sampled", validation_prompts=prompts, validation_every=2,
                           validation_steps=2)  # fmt: skip
    train(sampled, progress=False)
    plain = train(align_config(world, tmp_path / "plain"), progress=False)
    a, b = _transformer_state(tmp_path / "sampled" / "pipeline"), _transformer_state(plain.export_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    folder = tmp_path / "sampled" / "validation"
    assert sorted(p.name for p in folder.iterdir()) == ["step-0000000", "step-0000002", "step-0000004"]
    lines = [json.loads(x) for x in (folder / "step-0000000" / "samples.jsonl").read_text().splitlines()]
    assert [x["video"] for x in lines] == ["000.mp4", "001.mp4", "002.mp4"]
    generated = tmp_path / "generated"
    result = CliRunner().invoke(app, ["generate", "--model", str(world / "model"), "--prompts", str(prompts),
                                      "--out", str(generated), "--steps", "2", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    made = [json.loads(x) for x in (generated / "manifest.jsonl").read_text().splitlines()]
    assert [x["seed"] for x in lines] == [x["seed"] for x in made]
    for line, record in zip(lines, made, strict=True):
        np.testing.assert_array_equal(
            read_video(folder / "step-0000000" / line["video"]), read_video(generated / record["video"])
        )
    trained = read_video(folder / "step-0000004" / "000.mp4")
    assert not np.array_equal(trained, read_video(folder / "step-0000000" / "000.mp4"))  # it learned
    events = EventAccumulator(str(tmp_path / "sampled" / "logs" / "tensorboard")).Reload()
    assert {"validation/000", "validation/002"} <= set(events.Tags()["images"])
    lora = align_config(world, tmp_path / "lora", finetune="lora", max_steps=2, validation_prompts=prompts,
                        validation_every=2, validation_steps=1)  # fmt: skip
    train(lora, progress=False)  # the adapters sample in place
    assert sorted(p.name for p in (tmp_path / "lora" / "validation").iterdir()) == [
        "step-0000000",
        "step-0000002",
    ]
    # Killed while sampling a step it had checkpointed: the resumed run samples that step first.
    import videolift.align.trainer as trainer

    def killed(cfg, spec, pipe, model, accelerator, prompts, step, writer=None):
        (cfg.out / "validation" / f"step-{step:07d}.partial").mkdir(parents=True, exist_ok=True)
        if step == 2:
            raise KeyboardInterrupt
        return real(cfg, spec, pipe, model, accelerator, prompts, step, writer)

    real, kill = (
        trainer.write_samples,
        align_config(
            world, tmp_path / "kill", validation_prompts=prompts, validation_steps=1, checkpoint_every=2
        ),
    )
    trainer.write_samples = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            train(kill, progress=False)
    finally:
        trainer.write_samples = real
    train(kill.model_copy(update={"resume": True}), progress=False)
    names = sorted(p.name for p in (tmp_path / "kill" / "validation").iterdir())
    assert names == ["step-0000000", "step-0000002", "step-0000004"]  # and no .partial left
    bad = align_config(world, tmp_path / "bad", validation_prompts=tmp_path / "none.txt")
    with pytest.raises(VideoliftError, match="none.txt"):
        train(bad, progress=False)
    assert not (tmp_path / "bad").exists()  # refused before any work


def test_validation_samples_take_their_guidance_which_a_resume_may_change(world, tmp_path, monkeypatch):
    """--validation-guidance is the scale the validation samples' pipeline calls get (default: the model's),
    recorded with each step's samples; a resume may change it, as the other validation settings."""
    from diffusers import CogVideoXPipeline

    guided, call = [], CogVideoXPipeline.__call__  # the guidance scale of each sampling call
    monkeypatch.setattr(
        CogVideoXPipeline, "__call__", lambda *a, **kw: guided.append(kw["guidance_scale"]) or call(*a, **kw)
    )
    prompts = tmp_path / "val.txt"
    prompts.write_text("a red square moves right\n")
    out = tmp_path / "run"
    kw = dict(validation_prompts=prompts, validation_steps=1, checkpoint_every=1)
    train(align_config(world, out, max_steps=1, validation_guidance=2.5, **kw), progress=False)
    assert guided == [2.5, 2.5]  # before the first update and after the last
    train(align_config(world, out, max_steps=2, validation_guidance=1.5, resume=True, **kw), progress=False)
    train(align_config(world, out, max_steps=3, resume=True, **kw), progress=False)  # the model's again
    assert guided == [2.5, 2.5, 1.5, 6.0]  # CogVideoX's own 6

    def recorded(step: int) -> list[tuple]:
        lines = (out / "validation" / f"step-{step:07d}" / "samples.jsonl").read_text().splitlines()
        return [(x["guidance"], x["guidance_2"]) for x in map(json.loads, lines)]

    assert [recorded(step) for step in range(4)] == [
        [(2.5, None)],
        [(2.5, None)],
        [(1.5, None)],
        [(6.0, None)],
    ]
    assert (
        json.loads((out / "align_config.json").read_text())["validation_guidance"] is None
    )  # this attempt's


def test_the_held_out_loss_follows_the_weights_with_draws_fixed_for_the_run(world, tmp_path):
    """--validation-real: the diffusion loss of clips the run does not train on, before training, every
    --validation-every steps and at the end. Its draws come from --validation-seed (not the run's seed),
    it changes nothing the run trains, and a run killed before measuring a step measures it on resuming,
    as the uninterrupted run did."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import videolift.align.trainer as trainer

    held = tmp_path / "held"
    for i, rgb in enumerate(list(COLOURS.values())[:3]):
        write_video(held / f"h{i}.mp4", square_video(rgb, 3 - i), crf=0, pix_fmt="yuv444p")
    lines = [
        json.dumps({"video": f"h{i}.mp4", "prompt": f"a {n} square moves right"})
        for i, n in enumerate(COLOURS)
    ]
    (held / "held.jsonl").write_text("\n".join(lines[:3]) + "\n")

    def run(out: str, **kw) -> list[dict]:
        cfg = align_config(world, tmp_path / out, validation_real=held / "held.jsonl", validation_every=2,
                           real=world / "real.jsonl", real_batch_size=2, **kw)  # fmt: skip
        train(cfg, progress=False)
        return [
            json.loads(x) for x in (tmp_path / out / "logs" / "validation.jsonl").read_text().splitlines()
        ]

    measured = run("measured")
    assert [(x["step"], x["clips"]) for x in measured] == [(0, 3), (2, 3), (4, 3)]
    assert (
        all(np.isfinite(x["val_loss"]) for x in measured)
        and measured[0]["val_loss"] != measured[2]["val_loss"]
    )
    summary = json.loads((tmp_path / "measured" / "train_summary.json").read_text())
    assert summary["data"]["val_loss"] == measured[-1]["val_loss"]
    events = EventAccumulator(str(tmp_path / "measured" / "logs" / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("align/val_loss")] == [0, 2, 4]
    plain = train(align_config(world, tmp_path / "plain", real=world / "real.jsonl", real_batch_size=2),
                  progress=False)  # fmt: skip
    a, b = _transformer_state(tmp_path / "measured" / "pipeline"), _transformer_state(plain.export_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)  # measuring trains nothing, draws nothing of the run's

    # The same weights (step 0) under another run seed: the same value; another validation seed: another.
    assert run("seeded", seed=1, max_steps=1)[0]["val_loss"] == measured[0]["val_loss"]
    assert run("other", validation_seed=1, max_steps=1)[0]["val_loss"] != measured[0]["val_loss"]

    # Killed after measuring step 4, before its checkpoint: resumed from step 2, step 4 is measured once more
    # and logged once. A run that had no held-out clips gets them on resuming: measured from its step on.
    real = trainer.save_checkpoint

    def killed(accelerator, root, step, *a, **k):
        if step == 4:
            raise KeyboardInterrupt
        return real(accelerator, root, step, *a, **k)

    trainer.save_checkpoint = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            run("killed", checkpoint_every=2)
        with pytest.raises(KeyboardInterrupt):
            train(align_config(world, tmp_path / "added", real=world / "real.jsonl", real_batch_size=2,
                               checkpoint_every=2), progress=False)  # fmt: skip
    finally:
        trainer.save_checkpoint = real
    resumed = run("killed", checkpoint_every=2, resume=True)
    assert [x["step"] for x in resumed] == [0, 2, 4]
    added = run("added", checkpoint_every=2, resume=True)
    assert [x["step"] for x in added] == [2, 4]
    for got, want in [*zip(resumed, measured, strict=True), *zip(added, measured[1:], strict=True)]:
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)

    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"video": "nowhere.mp4", "prompt": "a red square moves right"}) + "\n")
    with pytest.raises(VideoliftError, match=r"missing.jsonl, line 1, field 'video': no video at"):
        train(align_config(world, tmp_path / "bad", validation_real=missing), progress=False)
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_the_held_out_log_holds_one_measurement_through_what_a_run_goes_through(world, tmp_path, monkeypatch):
    """Held-out clips of another size than the training videos are measured (they share batches with each
    other only); a finished run resumed keeps its val_loss; a fresh start in a killed attempt's OUT measures
    step 0 again, and a resume with other held-out settings keeps none of the other set's lines; a NaN loss
    is null in the log and the summary; --real-batch-size is no unused setting with held-out clips."""
    import videolift.align.trainer as trainer

    held = tmp_path / "held"
    for i, rgb in enumerate(list(COLOURS.values())[:2]):
        write_video(held / f"h{i}.mp4", square_video(rgb, i, size=48), crf=0, pix_fmt="yuv444p")
    (held / "held.jsonl").write_text(
        "".join(json.dumps({"video": f"h{i}.mp4", "prompt": "a square"}) + "\n" for i in (0, 1))
    )

    def config(out: str, **kw) -> AlignConfig:
        kw = {"validation_real": held / "held.jsonl", "validation_every": 2, "max_steps": 2} | kw
        return align_config(world, tmp_path / out, **kw)

    def lines(out: str) -> list[dict]:
        return [
            json.loads(x) for x in (tmp_path / out / "logs" / "validation.jsonl").read_text().splitlines()
        ]

    def summary(out: str) -> dict:
        return json.loads((tmp_path / out / "train_summary.json").read_text(), parse_constant=pytest.fail)

    train(config("small"), progress=False)  # 48x48 clips beside 64x64 training videos
    assert [(x["step"], x["clips"]) for x in lines("small")] == [(0, 2), (2, 2)]
    train(config("small", resume=True), progress=False)  # finished: re-exported, nothing measured
    assert summary("small")["data"]["val_loss"] == lines("small")[-1]["val_loss"]
    train(config("seeded", validation_seed=1), progress=False)

    real, kill_at = trainer.save_checkpoint, [2]

    def killed(accelerator, root, step, *a, **k):
        if step == kill_at[0]:
            raise KeyboardInterrupt
        return real(accelerator, root, step, *a, **k)

    monkeypatch.setattr(trainer, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):  # at its only checkpoint: the next run starts afresh
        train(config("killed"), progress=False)
    kill_at[0] = 4  # after checkpoint 2
    with pytest.raises(KeyboardInterrupt):
        train(config("changed", max_steps=4, checkpoint_every=2, validation_every=1), progress=False)
    monkeypatch.setattr(trainer, "save_checkpoint", real)
    train(config("killed", validation_seed=1), progress=False)
    assert lines("killed") == lines("seeded")  # step 0 measured again, with the new seed
    train(config("changed", max_steps=4, checkpoint_every=2, validation_every=1, validation_seed=1,
                 resume=True), progress=False)  # fmt: skip
    after = lines("changed")
    assert [x["step"] for x in after] == [2, 3, 4] and len({x["set"] for x in after}) == 1

    monkeypatch.setattr(trainer, "held_out_loss", lambda *a, **k: float("nan"))
    train(config("nan"), progress=False)
    assert all(x["val_loss"] is None and x["non_finite"] == {"val_loss": "nan"} for x in lines("nan"))
    assert summary("nan")["data"]["val_loss"] is None

    assert config("o", real_batch_size=2).real_options_without_real() == []
    assert align_config(world, tmp_path / "o", real_batch_size=2).real_options_without_real() == [
        "real_batch_size"
    ]
    with pytest.raises(
        VideoliftError, match=r"\(--validation-real-videos\) needs validation_real"
    ):  # CLI, pipeline
        AlignConfig.load(None, model="m", scores="s", videos="v", out="o", validation_real_videos=str(held))


@pytest.mark.slow  # 40-65 s; found no fault (critic train's FSDP test, run by default, found one)
def test_an_fsdp_full_fine_tune_trains_exports_and_equals_ddp(world, tmp_path):
    """fsdp.yaml on two CPU processes (tests/fsdp_cpu_site): each holds shards only, yet the run trains
    what DDP trains with the same seed and data (here bit for bit), its sharded checkpoint holds the
    weights it exports, and the export loads with plain diffusers."""
    from diffusers import CogVideoXPipeline
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from fsdp_cpu import fsdp_launch

    launch, env = fsdp_launch("fsdp.yaml", tmp_path)
    args = _cli_args(world, tmp_path / "fsdp", max_steps=3, checkpoint_every=3)
    proc = subprocess.run(
        [*launch, "align", *args, "--full"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "videolift"), "align",
           *_cli_args(world, tmp_path / "ddp", max_steps=3, checkpoint_every=3), "--full"]  # fmt: skip
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")  # without tests/fsdp_cpu_site: DDP
    proc = subprocess.run(ddp, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    sharded = tmp_path / "fsdp/checkpoints/step-0000003/pytorch_model_fsdp_0"  # FSDP's own layout
    dcp_to_torch_save(sharded, tmp_path / "gathered.pt")
    gathered = torch.load(tmp_path / "gathered.pt")["model"]
    exported = CogVideoXPipeline.from_pretrained(tmp_path / "fsdp/pipeline").transformer.state_dict()
    by_ddp, base = _transformer_state(tmp_path / "ddp/pipeline"), _transformer_state(world / "model")
    assert exported.keys() == gathered.keys() == by_ddp.keys()
    assert all(torch.equal(exported[k], gathered[k]) for k in exported)
    assert any(not torch.equal(exported[k], base[k]) for k in base)
    for key in exported:
        torch.testing.assert_close(exported[key], by_ddp[key], rtol=1e-5, atol=1e-7)
    logs = [(tmp_path / name / "logs/train.jsonl").read_text().splitlines() for name in ("fsdp", "ddp")]
    for a, b in zip(*logs, strict=True):
        assert json.loads(a)["loss"] == pytest.approx(json.loads(b)["loss"], rel=1e-5)
        assert json.loads(a)["grad_norm"] == pytest.approx(json.loads(b)["grad_norm"], rel=1e-5)


def _refused_before_the_hashes(monkeypatch) -> None:
    """Reaching the inputs' hashes (the step before the cache) fails the test: the refusal came too late."""

    def reached(*_: Any, **__: Any) -> None:
        raise AssertionError("reached the input hashes and the cache: not refused before them")

    monkeypatch.setattr(AlignConfig, "input_hashes", reached)


@pytest.mark.slow  # an FSDP launch (15-25 s); the layout check itself: tests/test_core_checkpoints.py -k layout
def test_an_fsdp_checkpoint_resumed_by_one_process_is_refused_before_the_cache(world, tmp_path, monkeypatch):
    """fsdp.yaml (tests/fsdp_cpu_site; ~20 s) writes FSDP's sharded checkpoint; one process resuming it
    failed after the preflight and the cache (33 s on the smallest model) with "step-0000001/
    pytorch_model.bin: No such file or directory", the file one process's accelerate looks for."""
    from typer.testing import CliRunner

    from fsdp_cpu import fsdp_launch
    from videolift.cli import app

    launch, env = fsdp_launch("fsdp.yaml", tmp_path)
    args = _cli_args(world, tmp_path / "fsdp", max_steps=1, checkpoint_every=1)
    proc = subprocess.run(
        [*launch, "align", *args, "--full"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "fsdp/checkpoints/step-0000001"
    log = (tmp_path / "fsdp/logs/train.jsonl").read_text()

    _refused_before_the_hashes(monkeypatch)
    said = CliRunner().invoke(
        app, ["align", *_cli_args(world, tmp_path / "fsdp", max_steps=2), "--full", "--resume"]
    )
    flat = " ".join(said.output.split())
    assert said.exit_code == 1, flat
    assert f"{ckpt}: written under FSDP with SHARDED_STATE_DICT" in flat and "by 2 process(es)" in flat
    assert "this run is under DDP or one process" in flat
    assert "Resume with the accelerate config" in flat and "--overwrite" in flat
    assert (tmp_path / "fsdp/logs/train.jsonl").read_text() == log
    assert json.loads((ckpt / "trainer_state.json").read_text())["layout"] == "fsdp-sharded"  # recorded


@pytest.mark.slow  # an FSDP launch (15-25 s); the layout check itself: tests/test_core_checkpoints.py -k layout
def test_a_one_process_checkpoint_resumed_under_fsdp_is_refused_before_the_cache(world, tmp_path):
    """The other way round: FSDP resuming a checkpoint of one process (or DDP) died after the cache in
    torch.distributed.checkpoint's traceback ("metadata is None", looking for pytorch_model_fsdp_0/.metadata);
    refused at once, nothing of the run changed."""
    from typer.testing import CliRunner

    from fsdp_cpu import fsdp_launch
    from videolift.cli import app

    out = tmp_path / "one"
    said = CliRunner().invoke(
        app, ["align", *_cli_args(world, out, max_steps=1, checkpoint_every=1), "--full"]
    )
    assert said.exit_code == 0, said.output
    ckpt = out / "checkpoints/step-0000001"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    recorded = state.pop("layout", None)  # as checkpoints from before it was recorded: told by its files
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    log = (out / "logs/train.jsonl").read_text()

    launch, env = fsdp_launch("fsdp.yaml", tmp_path)
    args = _cli_args(world, out, max_steps=2)
    proc = subprocess.run(
        [*launch, "align", *args, "--full", "--resume"], env=env, capture_output=True, text=True, timeout=300
    )
    flat = " ".join(proc.stderr.split())
    assert proc.returncode == 1, flat[-3000:]
    assert f"{ckpt}: written under DDP or one process" in flat, flat[-3000:]
    assert "this run is under FSDP with SHARDED_STATE_DICT" in flat
    assert "Traceback" not in flat.split("torch/distributed/elastic")[0], flat  # (the launcher's own follows)
    assert (out / "logs/train.jsonl").read_text() == log
    assert recorded == "ddp"
