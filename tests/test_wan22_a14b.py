"""Wan 2.2 A14B (two experts split at ``boundary_ratio``): generation, ``--expert high|low`` required and
refused where it does not fit, each expert trained only at its own timesteps (after Wan's shift) with the
other expert untouched, exports that plain diffusers loads (the LoRA into the right transformer), the cache
shared by the two runs, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from align_world import PROMPTS, WEIGHTS, align_config, make_world
from videolift.align.loss import batch_loss, step_generator
from videolift.align.trainer import train
from videolift.cli import app
from videolift.core.errors import OptionError, VideoliftError
from videolift.core.video import read_video
from videolift.models.families import get_spec
from videolift.models.tiny_wan import build_tiny_wan
from videolift.models.wan import WanSpec

SIZE = 32  # the 2.1 VAE's 8x: 4x4 latents, 2x2 tokens a frame
BOUNDARY = 875.0  # the tiny pipeline's boundary_ratio 0.875 x 1000
EXPERT = {"high": "transformer", "low": "transformer_2"}
OTHER = {"high": "transformer_2", "low": "transformer"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny two-expert Wan 2.2 pipeline (flow_shift 3), four 9x32x32 videos scored 2 Good / 2 Bad, a real set,
    and a one-transformer Wan 2.1 beside it."""
    root = tmp_path_factory.mktemp("a14b")
    build_tiny_wan(root / "model", experts=True)
    build_tiny_wan(root / "wan21")
    return make_world(root, size=SIZE)


@pytest.fixture(scope="module")
def pipe(world):
    return get_spec("wan").load(str(world / "model"))


def _fed(t: torch.Tensor, shift: float = 3.0) -> torch.Tensor:
    """The timestep the transformer is fed for integer t, by the formula (float64): shift((t + 1) / 1000) * 1000."""
    sigma = (t.double() + 1) / 1000
    return shift * sigma / (1 + (shift - 1) * sigma) * 1000


def test_the_tiny_pipeline_generates_through_the_cli_with_both_experts(world, pipe, tmp_path, monkeypatch):
    from diffusers import WanTransformer3DModel

    assert pipe.config.boundary_ratio == 0.875 and pipe.transformer_2 is not None
    high_q = pipe.transformer.blocks[0].attn1.to_q.weight
    assert not torch.equal(high_q, pipe.transformer_2.blocks[0].attn1.to_q.weight)
    routed = []  # (timestep, called on the high-noise expert?)
    forward = WanTransformer3DModel.forward

    def recording(self, *args, **kw):
        routed.append((float(kw["timestep"][0]), torch.equal(self.blocks[0].attn1.to_q.weight, high_q)))
        return forward(self, *args, **kw)

    monkeypatch.setattr(WanTransformer3DModel, "forward", recording)
    (tmp_path / "p.txt").write_text("a red square moves right\n")
    out = tmp_path / "out"
    size = ["--frames", "9", "--height", str(SIZE), "--width", str(SIZE)]
    args = [
        "--model",
        str(world / "model"),
        "--prompts",
        str(tmp_path / "p.txt"),
        "--steps",
        "6",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, ["generate", *args, *size, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert {high for _, high in routed} == {True, False}
    assert all(high == (t >= BOUNDARY) for t, high in routed)  # as WanPipeline routes its steps
    [record] = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert (record["guidance"], record["guidance_2"], record["fps"]) == (
        4.0,
        3.0,
        16,
    )  # Wan-AI's A14B; 2.1's fps
    assert read_video(out / record["video"]).shape == (9, SIZE, SIZE, 3)


def test_each_experts_timesteps_are_those_the_pipeline_routes_to_it(pipe):
    spec = get_spec("wan")
    assert spec.timestep_range(pipe, None) == (0, 1000)
    (low, first_high), (high_from, n) = spec.timestep_range(pipe, "low"), spec.timestep_range(pipe, "high")
    assert low == 0 and n == 1000 and first_high == high_from
    # shift 3, boundary 0.875: sigma' >= 0.875 from sigma = (t + 1) / 1000 = 0.875 / (3 - 2 * 0.875) = 0.7 on
    # (in float32 that grid point lands just below 875: t = 700)
    assert abs(first_high - 700) <= 1
    # What the transformer is fed (as training computes it) is on the expert's side of the boundary...
    fed = spec.sigmas(pipe, torch.arange(1000), torch.float32) * 1000
    assert (fed[first_high:] >= BOUNDARY).all() and (fed[:first_high] < BOUNDARY).all()
    # ... and by the formula too, away from the float rounding at the boundary itself.
    assert (_fed(torch.arange(first_high + 1, 1000)) > BOUNDARY).all()
    assert (_fed(torch.arange(0, first_high - 1)) < BOUNDARY).all()
    # Each expert trains exactly the scheduler grid's timesteps on its side (sigma' = 1 for the high one).
    from diffusers import FlowMatchEulerDiscreteScheduler

    grid = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0).timesteps
    assert set(fed[first_high:].tolist()) == set(grid[grid >= BOUNDARY].tolist()) and fed[-1] == 1000.0
    assert set(fed[:first_high].tolist()) == set(grid[grid < BOUNDARY].tolist()) and fed[0] > 0
    # The sampler's own timesteps: WanPipeline calls `transformer` at t >= 875 and `transformer_2` below.
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(50)
    sampled = scheduler.timesteps
    assert (sampled >= BOUNDARY).any() and (sampled < BOUNDARY).any()  # both experts sample


def test_expert_is_required_for_two_experts_and_refused_for_one_transformer(world, tmp_path):
    base = ["align", "--scores", str(world / "scores.jsonl"), "--videos", str(world), "--max-steps", "1",
            "--no-progress"]  # fmt: skip
    missing = CliRunner().invoke(app, [*base, "--model", str(world / "model"), "--out", str(tmp_path / "a")])
    assert missing.exit_code == 2 and "--expert is required" in missing.output, missing.output
    extra = CliRunner().invoke(
        app, [*base, "--model", str(world / "wan21"), "--out", str(tmp_path / "b"), "--expert", "high"]
    )
    assert extra.exit_code == 2 and "--expert high: only for pipelines with two experts" in extra.output
    assert "WanPipeline has one transformer" in extra.output
    bad = CliRunner().invoke(
        app, [*base, "--model", str(world / "model"), "--out", str(tmp_path / "c"), "--expert", "mid"]
    )
    assert bad.exit_code == 2 and "--expert" in bad.output
    # In --config, the file's mistake: exit status 1, naming the file.
    config = tmp_path / "align.yaml"
    config.write_text("expert: low\n")
    in_file = CliRunner().invoke(
        app, [*base, "--model", str(world / "wan21"), "--out", str(tmp_path / "d"), "--config", str(config)]
    )
    assert in_file.exit_code == 1 and f"{config}, field 'expert'" in in_file.output, in_file.output
    assert not any((tmp_path / x).exists() for x in "abcd")  # refused before anything is written
    with pytest.raises(OptionError, match="--expert is required"):
        train(align_config(world, tmp_path / "e"), progress=False)


def _record_timesteps(monkeypatch) -> list[torch.Tensor]:
    drawn: list[torch.Tensor] = []
    loss = WanSpec.training_loss

    def recording(self, pipe, transformer, latents, text, *, timesteps, noise):
        drawn.append(timesteps.clone())
        return loss(self, pipe, transformer, latents, text, timesteps=timesteps, noise=noise)

    monkeypatch.setattr(WanSpec, "training_loss", recording)
    return drawn


def _objective(pipe, transformer, world: Path, t_range: tuple[int, int]) -> float:
    """The reward-weighted loss of the four videos at the expert's timesteps, fixed latents and noise."""
    spec = get_spec("wan")
    params = spec.encode_videos(pipe, [read_video(world / f"videos/v{i}.mp4") for i in range(4)])
    text = spec.encode_prompts(pipe, PROMPTS)
    coef = torch.tensor(WEIGHTS) / len(WEIGHTS)
    with torch.no_grad():
        return float(
            np.mean(
                [
                    float(
                        batch_loss(
                            spec,
                            pipe,
                            transformer,
                            params,
                            text,
                            coef,
                            step_generator(7, 0, k, "cpu"),
                            t_range=t_range,
                        )[0]
                    )  # fmt: skip
                    for k in range(16)
                ]
            )
        )


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("expert", ["high", "low"])
def test_a_full_run_trains_only_its_expert_at_its_timesteps(world, pipe, tmp_path, monkeypatch, expert):
    from diffusers import WanPipeline

    drawn = _record_timesteps(monkeypatch)
    t_range = get_spec("wan").timestep_range(pipe, expert)
    kw = dict(real=world / "real.jsonl", max_steps=30, batch_size=4, weight_decay=0.0, expert=expert)
    result = train(align_config(world, tmp_path / "run", **kw, synthetic_min_timestep=100), progress=False)
    drawn_t = torch.stack(drawn)  # (steps, 4 synthetic + 4 real rows)
    assert drawn_t.shape == (30, 8) and int(drawn_t.min()) >= t_range[0] and int(drawn_t.max()) < t_range[1]
    # --synthetic-min-timestep 100 within the expert's range: the synthetic rows' floor, where it is higher
    assert (
        int(drawn_t[:, :4].min()) >= max(t_range[0], 100)
        and int(drawn_t[:, 4:].min()) < 100
        or expert == "high"
    )
    summary = json.loads((tmp_path / "run/train_summary.json").read_text())
    trained = {"component": EXPERT[expert], "timesteps": list(t_range), "other_loaded": False}  # no samples
    assert summary["data"]["expert"] == trained

    base, aligned = (
        WanPipeline.from_pretrained(world / "model"),
        WanPipeline.from_pretrained(result.export_dir),
    )
    assert aligned.config.boundary_ratio == 0.875
    for name in (OTHER[expert], "vae", "text_encoder"):  # bit for bit
        assert _same(_state(getattr(base, name)), _state(getattr(aligned, name))), name
    assert not _same(_state(getattr(base, EXPERT[expert])), _state(getattr(aligned, EXPERT[expert])))
    before, after = (_objective(base, getattr(p, EXPERT[expert]), world, t_range) for p in (base, aligned))
    assert after < 0.9 * before, (before, after)


@pytest.mark.parametrize("expert", ["high", "low"])
def test_a_lora_run_lands_in_its_expert_and_samples_with_both(world, pipe, tmp_path, monkeypatch, expert):
    from diffusers import WanPipeline, WanTransformer3DModel

    calls = []  # (t, the calling module trains?) of the validation samples (no grad)
    forward = WanTransformer3DModel.forward

    def recording(self, *args, **kw):
        if not torch.is_grad_enabled():
            calls.append(
                (float(kw["timestep"].flatten()[0]), any(p.requires_grad for p in self.parameters()))
            )
        return forward(self, *args, **kw)

    monkeypatch.setattr(WanTransformer3DModel, "forward", recording)
    guided, call = [], WanPipeline.__call__  # the guidance scales of each sampling call
    monkeypatch.setattr(WanPipeline, "__call__", lambda *a, **kw: guided.append(kw) or call(*a, **kw))
    drawn = _record_timesteps(monkeypatch)
    (tmp_path / "val.txt").write_text(PROMPTS[0] + "\n")
    lora = dict(method="rs", finetune="lora", lora_rank=4, lora_alpha=8, lr=1e-2, max_steps=3, expert=expert)
    samples = dict(validation_prompts=tmp_path / "val.txt", validation_steps=8, validation_every=3, frames=9)
    samples |= dict(height=SIZE, width=SIZE, validation_real=world / "real.jsonl")  # held-out loss too
    result = train(align_config(world, tmp_path / "run", **lora, **samples), progress=False)
    monkeypatch.undo()
    assert (tmp_path / "run/validation/step-0000003/000.mp4").exists()
    # 3 training steps and the held-out loss before and after, all at the expert's timesteps
    low, high = get_spec("wan").timestep_range(pipe, expert)
    assert len(drawn) == 3 + 2 and all(low <= int(t.min()) and int(t.max()) < high for t in drawn)
    # Sampling went through both experts, each at its side of the boundary; the trained one at its own.
    assert {t >= BOUNDARY for t, _ in calls} == {True, False}
    assert {(kw["guidance_scale"], kw["guidance_scale_2"]) for kw in guided} == {(4.0, 3.0)}  # Wan-AI's A14B
    assert all(trains == ((t >= BOUNDARY) == (expert == "high")) for t, trains in calls)

    assert result.data["expert"]["other_loaded"]  # it samples with both
    assert (result.export_dir / "videolift_expert.json").exists() == (expert == "low")
    pipe2 = WanPipeline.from_pretrained(world / "model")
    pipe2.load_lora_weights(
        result.export_dir, **({"load_into_transformer_2": True} if expert == "low" else {})
    )
    base = WanPipeline.from_pretrained(world / "model")
    gen = torch.Generator().manual_seed(0)
    x, text = torch.randn(1, 4, 3, 4, 4, generator=gen), torch.randn(1, 8, 32, generator=gen)
    t = torch.tensor([500.0])

    def out(m):
        return m(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]

    assert not torch.allclose(
        out(getattr(pipe2, EXPERT[expert])), out(getattr(base, EXPERT[expert])), atol=1e-4
    )
    assert torch.equal(out(getattr(pipe2, OTHER[expert])), out(getattr(base, OTHER[expert])))
    assert getattr(getattr(pipe2, OTHER[expert]), "peft_config", None) is None
    # videolift's own loading (generate --lora, eval BASE+LORA) puts it where it was trained.
    ours = get_spec("wan").load(str(world / "model"), lora=str(result.export_dir))
    assert torch.equal(out(getattr(ours, EXPERT[expert])), out(getattr(pipe2, EXPERT[expert])))
    assert getattr(getattr(ours, OTHER[expert]), "peft_config", None) is None
    if expert == "low":
        with pytest.raises(VideoliftError, match="a LoRA of the transformer_2 of a two-expert pipeline"):
            get_spec("wan").load(str(world / "wan21"), lora=str(result.export_dir))


def test_high_then_low_on_its_export_shares_the_cache_and_trains_both(world, tmp_path):
    from diffusers import WanPipeline

    kw = dict(max_steps=2, cache_dir=tmp_path / "cache")
    first = train(align_config(world, tmp_path / "high", **kw, expert="high"), progress=False)
    assert first.data["cache"]["videos_encoded"] == 4
    model = str(first.export_dir)
    second = train(align_config(world, tmp_path / "low", **kw, expert="low", model=model), progress=False)
    assert second.data["cache"]["videos_encoded"] == 0 and second.data["cache"]["prompts_encoded"] == 0
    # Another round on the model both runs made (its low-noise expert changed too): the same cache.
    again = align_config(world, tmp_path / "again", **kw, expert="high", model=str(second.export_dir))
    third = train(again, progress=False)
    assert third.data["cache"]["videos_encoded"] == 0 and third.data["cache"]["prompts_encoded"] == 0
    base, high, both = (
        WanPipeline.from_pretrained(p) for p in (world / "model", first.export_dir, second.export_dir)
    )
    assert _same(
        _state(high.transformer), _state(both.transformer)
    )  # the high expert as the first run left it
    assert not _same(_state(base.transformer), _state(both.transformer))
    assert _same(_state(base.transformer_2), _state(high.transformer_2))
    assert not _same(_state(base.transformer_2), _state(both.transformer_2))


def test_a_resumed_expert_run_ends_with_the_uninterrupted_weights_and_keeps_its_expert(world, tmp_path):
    kw = dict(real=world / "real.jsonl", max_steps=4, checkpoint_every=2, expert="low")
    straight = train(align_config(world, tmp_path / "a", **kw), progress=False)
    train(align_config(world, tmp_path / "b", **(kw | {"max_steps": 2})), progress=False)
    state = json.loads(next((tmp_path / "b/checkpoints").glob("step-*/trainer_state.json")).read_text())
    assert state["config"]["expert"] == "low"
    with pytest.raises(VideoliftError, match="expert: 'low' in the checkpoint, 'high' now"):
        train(align_config(world, tmp_path / "b", **(kw | {"expert": "high"}), resume=True), progress=False)
    resumed = train(align_config(world, tmp_path / "b", **kw, resume=True), progress=False)
    a, b = (
        load_file(str(r.export_dir / "transformer_2/diffusion_pytorch_model.safetensors"))
        for r in (straight, resumed)
    )
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    base = load_file(str(world / "model/transformer/diffusion_pytorch_model.safetensors"))
    high = load_file(str(resumed.export_dir / "transformer/diffusion_pytorch_model.safetensors"))
    assert _same(base, high)


def test_encoding_moves_neither_expert_and_sampling_moves_the_frozen_one(world):
    from videolift.align.inputs import encoders_to

    pipe = get_spec("wan").load(str(world / "model"))
    encoders_to(pipe, "meta")  # as the cache is built: the encoders only
    assert pipe.vae.device.type == "meta" and pipe.text_encoder.device.type == "meta"
    assert pipe.transformer.device.type == "cpu" and pipe.transformer_2.device.type == "cpu"
    encoders_to(pipe, "meta", pipe.transformer_2)  # to sample while transformer_2 trains: its partner too
    assert pipe.transformer.device.type == "meta" and pipe.transformer_2.device.type == "cpu"


def test_a_bf16_low_expert_run_through_the_cli_keeps_the_high_expert_as_the_base_has_it(world, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "bf16"
    (tmp_path / "val.txt").write_text(PROMPTS[0] + "\n")  # both experts sample, the frozen one in bf16
    cmd = [str(Path(sys.executable).parent / "videolift"), "align", "--model", str(world / "model"),
           "--scores", str(world / "scores.jsonl"), "--videos", str(world), "--out", str(out), "--max-steps", "1",
           "--expert", "low", "--mixed-precision", "bf16", "--num-workers", "0", "--validation-prompts",
           str(tmp_path / "val.txt"), "--validation-steps", "4", "--frames", "9", "--height", str(SIZE),
           "--width", str(SIZE), "--no-progress"]  # fmt: skip
    # its own process: accelerate fixes one precision per process
    done = subprocess.run(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "low-noise expert (transformer_2, trained at t in [0, 700)" in done.stdout
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-0000000", "step-0000001"]
    for part in ("transformer", "vae", "text_encoder"):  # copied from the base, not saved from bf16 copies
        for file in (world / "model" / part).iterdir():
            assert (out / "pipeline" / part / file.name).read_bytes() == file.read_bytes(), file
    low = load_file(str(out / "pipeline/transformer_2/diffusion_pytorch_model.safetensors"))
    assert low["blocks.0.attn1.to_q.weight"].dtype == torch.bfloat16  # the trained expert, exported in bf16


@pytest.mark.parametrize("samples", [False, True])
def test_a_bf16_full_run_of_the_low_expert_starts_from_its_own_fp32_weights(world, tmp_path, samples):
    from videolift.align.trainer import _load_model
    from videolift.models.base import is_empty
    from videolift.models.wan import has_experts

    saved = load_file(str(world / "model/transformer_2/diffusion_pytorch_model.safetensors"))
    (tmp_path / "val.txt").write_text(PROMPTS[0] + "\n")
    validation = {"validation_prompts": tmp_path / "val.txt"} if samples else {}
    cfg = align_config(
        world, tmp_path / "run", mixed_precision="bf16", family="wan", expert="low", **validation
    )
    _, pipe, trained, t_range, params = _load_model(cfg, torch.bfloat16, "transformer_2")
    assert (trained, t_range) == ("transformer_2", (0, 700))
    state = pipe.transformer_2.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())  # not a bf16 rounding of them
    assert {id(p) for p in params} <= {id(p) for p in pipe.transformer_2.parameters()}
    assert all(p.dtype == torch.float32 for p in params)
    assert not any(p.requires_grad for p in pipe.transformer.parameters())
    if samples:  # it samples the validation videos: loaded, in the run's dtype
        assert pipe.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    else:  # nothing needs its weights: its config alone, the pipeline's config as the model's
        assert is_empty(pipe.transformer) and not is_empty(pipe.transformer_2)
        assert dict(pipe.config) == dict(get_spec("wan").load(str(world / "model")).config)
        assert has_experts(pipe.config) and pipe.transformer.config.num_layers == 2
    # Were the expert not known before the load (a Hub index that could not be read), the low expert would
    # load in bf16 and its fp32 master weights be a rounding of it: refused instead.
    with pytest.raises(VideoliftError, match="transformer_2 was not loaded in float32"):
        _load_model(cfg, torch.bfloat16, None)


def test_a_hub_index_not_in_the_cache_is_fetched_unless_offline(monkeypatch):
    from diffusers import DiffusionPipeline
    from huggingface_hub import constants

    from videolift.models.families import model_index

    calls = []

    def load_config(model, local_files_only=False):
        calls.append(local_files_only)
        if local_files_only:
            raise OSError("not in the cache")
        return {"_class_name": "WanPipeline", "boundary_ratio": 0.875}

    monkeypatch.setattr(DiffusionPipeline, "load_config", load_config)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert model_index("owner/a14b")["boundary_ratio"] == 0.875 and calls == [True, False]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert model_index("owner/a14b") is None and calls == [True, False, True]


def test_a_run_without_samples_never_loads_the_frozen_expert_and_exports_it_as_the_base_has_it(
    world, tmp_path, monkeypatch
):
    from diffusers import WanPipeline, WanTransformer3DModel

    import videolift.align.export

    loaded = []  # the transformers' folders read
    load = WanTransformer3DModel.from_pretrained.__func__

    def recording(cls, path, **kw):
        loaded.append(Path(path, kw.get("subfolder") or "").name)
        return load(cls, path, **kw)

    monkeypatch.setattr(WanTransformer3DModel, "from_pretrained", classmethod(recording))
    base = WanPipeline.from_pretrained(world / "model")
    loaded.clear()
    first = train(align_config(world, tmp_path / "high", max_steps=2, expert="high"), progress=False)
    assert loaded == ["transformer"]  # the high expert only: the frozen one's files copied at the end
    for file in (world / "model/transformer_2").iterdir():
        assert (first.export_dir / "transformer_2" / file.name).read_bytes() == file.read_bytes()
    # No base directory at the end (a Hub model no longer in the cache): the frozen expert loaded then.
    monkeypatch.setattr(videolift.align.export, "base_directory", lambda model: None)
    loaded.clear()
    second = train(align_config(world, tmp_path / "low", max_steps=2, expert="low"), progress=False)
    assert loaded == ["transformer_2", "transformer"]  # the second one for the export
    for result, frozen in ((first, "transformer_2"), (second, "transformer")):
        aligned = WanPipeline.from_pretrained(result.export_dir)  # plain diffusers: both experts
        assert aligned.config.boundary_ratio == 0.875 and aligned.transformer_2 is not None
        assert _same(_state(getattr(base, frozen)), _state(getattr(aligned, frozen))), frozen
    # The LoRA export, as ever; and a resume that now samples (both experts loaded) ends as one that never did.
    lora = dict(finetune="lora", lora_rank=4, lora_alpha=8, lr=1e-2, expert="low", max_steps=2)
    lora_run = train(align_config(world, tmp_path / "lora", **lora), progress=False)
    pipe = WanPipeline.from_pretrained(world / "model")
    pipe.load_lora_weights(lora_run.export_dir, load_into_transformer_2=True)
    assert pipe.transformer_2.peft_config and getattr(pipe.transformer, "peft_config", None) is None
    (tmp_path / "val.txt").write_text(PROMPTS[0] + "\n")
    samples = dict(validation_prompts=tmp_path / "val.txt", validation_steps=4)
    kw = dict(max_steps=4, checkpoint_every=2, expert="high", frames=9, height=SIZE, width=SIZE)
    straight = train(align_config(world, tmp_path / "a", **kw), progress=False)
    train(align_config(world, tmp_path / "b", **(kw | {"max_steps": 2})), progress=False)
    resumed = train(align_config(world, tmp_path / "b", **kw, **samples, resume=True), progress=False)
    assert (tmp_path / "b/validation/step-0000004/000.mp4").exists()
    a, b = (WanPipeline.from_pretrained(r.export_dir) for r in (straight, resumed))
    assert _same(_state(a.transformer), _state(b.transformer))
    assert _same(_state(base.transformer_2), _state(b.transformer_2))


def test_validation_guidances_reach_both_experts_and_the_second_is_refused_for_one_transformer(
    world, pipe, tmp_path, monkeypatch
):
    """--validation-guidance and --validation-guidance-2 are the scales of the validation samples' pipeline
    calls (each unset one: the model's); the second is refused for a one-transformer model before it loads,
    and by the settings where its index could not be read then."""
    from diffusers import WanPipeline

    from videolift.align.validation import sampler_settings

    guided, call = [], WanPipeline.__call__  # the guidance scales of each sampling call
    monkeypatch.setattr(WanPipeline, "__call__", lambda *a, **kw: guided.append(kw) or call(*a, **kw))
    (tmp_path / "val.txt").write_text(PROMPTS[0] + "\n")
    samples = dict(
        validation_prompts=tmp_path / "val.txt", validation_steps=2, frames=9, height=SIZE, width=SIZE
    )
    run = align_config(world, tmp_path / "run", max_steps=1, expert="high", validation_guidance=2.5,
                       validation_guidance_2=1.5, **samples)  # fmt: skip
    train(run, progress=False)
    monkeypatch.undo()
    assert [(kw["guidance_scale"], kw["guidance_scale_2"]) for kw in guided] == [(2.5, 1.5)] * 2
    lines = (tmp_path / "run/validation/step-0000001/samples.jsonl").read_text().splitlines()
    assert [(x["guidance"], x["guidance_2"]) for x in map(json.loads, lines)] == [(2.5, 1.5)]
    spec = get_spec("wan")
    one = run.model_copy(update={"validation_guidance_2": None})
    assert (sampler_settings(one, spec, pipe).guidance, sampler_settings(one, spec, pipe).guidance_2) == (
        2.5,
        3.0,
    )
    two = run.model_copy(update={"validation_guidance": None})
    assert (sampler_settings(two, spec, pipe).guidance, sampler_settings(two, spec, pipe).guidance_2) == (
        4.0,
        1.5,
    )

    refused = "--validation-guidance-2 1.5: the low-noise expert's guidance, only for two-expert Wan 2.2"
    wan21 = align_config(world, tmp_path / "wan21", model=str(world / "wan21"), family="wan",
                         validation_guidance_2=1.5, **samples)  # fmt: skip
    with pytest.raises(VideoliftError, match=refused) as caught:
        train(wan21, progress=False)
    assert "(--validation-guidance guides it)" in str(caught.value)
    assert not (tmp_path / "wan21").exists()  # refused before any work
    with pytest.raises(VideoliftError, match=refused):
        sampler_settings(wan21, spec, spec.load(str(world / "wan21")))


def test_the_cache_key_is_the_same_with_either_expert_or_both_loaded(world):
    from videolift.align.cache import model_fingerprint
    from videolift.align.inputs import denoisers

    spec, model = get_spec("wan"), str(world / "model")
    keys = {
        model_fingerprint(model, pipe, trained=denoisers(pipe))
        for pipe in (
            spec.load(model, without=without) for without in ((), ("transformer",), ("transformer_2",))
        )
    }
    assert len(keys) == 1


def test_guidance_2_reaches_the_low_noise_experts_steps_is_recorded_and_refused_without_two(
    world, tmp_path, monkeypatch
):
    from diffusers import WanPipeline

    from videolift.data.generate import known_settings

    calls = []  # the guidance scales each pipeline call got
    call = WanPipeline.__call__

    def recording(self, *args, **kw):
        calls.append((kw.get("guidance_scale"), kw.get("guidance_scale_2", "unset")))
        return call(self, *args, **kw)

    monkeypatch.setattr(WanPipeline, "__call__", recording)
    (tmp_path / "p.txt").write_text("a red square moves right\n")
    args = ["generate", "--prompts", str(tmp_path / "p.txt"), "--steps", "2", "--frames", "9", "--height",
            str(SIZE), "--width", str(SIZE), "--no-progress"]  # fmt: skip
    two = [*args, "--model", str(world / "model"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*two, "--guidance", "4", "--guidance-2", "3"])
    assert result.exit_code == 0, result.output
    assert calls == [(4.0, 3.0)]
    [record] = [json.loads(x) for x in (tmp_path / "out/manifest.jsonl").read_text().splitlines()]
    assert (record["guidance"], record["guidance_2"]) == (4.0, 3.0)
    assert json.loads((tmp_path / "out/generation.json").read_text())["guidance_2"] == 3.0
    # Another value is another run, as another --guidance is: refused without --overwrite.
    other = CliRunner().invoke(app, [*two, "--guidance", "4", "--guidance-2", "2"])
    assert other.exit_code == 1 and "guidance_2 was 3.0, now 2.0" in other.output, other.output
    assert known_settings(str(world / "model"), None, 0, {"guidance_2": 3.0})["guidance_2"] == 3.0
    # Unset: Wan-AI's for A14B, 4 and 3 (each on its own: --guidance 6 alone keeps the low-noise 3).
    calls.clear()
    result = CliRunner().invoke(app, [*args, "--model", str(world / "model"), "--out", str(tmp_path / "own")])
    assert result.exit_code == 0 and calls == [(4.0, 3.0)], result.output
    own = json.loads((tmp_path / "own/generation.json").read_text())
    assert (own["guidance"], own["guidance_2"]) == (4.0, 3.0)
    calls.clear()
    result = CliRunner().invoke(app, [*two[:-1], str(tmp_path / "g6"), "--guidance", "6"])
    assert result.exit_code == 0 and calls == [(6.0, 3.0)], result.output
    bad = CliRunner().invoke(app, [*two, "--guidance-2", "nan"])
    assert bad.exit_code == 2 and "--guidance-2 nan: must be a finite number" in bad.output, bad.output

    # One transformer (Wan 2.1, CogVideoX): refused as --dynamic-cfg is for Wan, from its index, before
    # the model loads (minutes for a 14B one).
    import videolift.data.generate

    cogvideox = Path(__file__).resolve().parents[1] / "src/videolift/toy/assets/t2v"
    monkeypatch.setattr(videolift.data.generate, "load_pipeline", lambda *a, **k: 1 / 0)
    for model, name in ((world / "wan21", "WanPipeline"), (cogvideox, "CogVideoXPipeline")):
        out = tmp_path / f"refused-{name}"
        refused = CliRunner().invoke(
            app, [*args, "--model", str(model), "--out", str(out), "--guidance-2", "3"]
        )
        assert refused.exit_code == 1, refused.output
        assert (
            f"--guidance-2 3.0: the low-noise expert's guidance, only for two-expert Wan 2.2 (A14B); this {name} has one transformer"
            in " ".join(refused.output.split())
        )
        assert not out.exists()
    # eval refuses it for such a model before the first model generates.
    evaluated = CliRunner().invoke(
        app,
        ["eval", "--model", str(world / "model"), "--model", str(world / "wan21"), "--prompts", str(tmp_path / "p.txt"),
         "--critic", str(tmp_path / "no-critic"), "--out", str(tmp_path / "eval"), "--guidance-2", "3", "--no-progress"],
    )  # fmt: skip
    assert evaluated.exit_code == 1, evaluated.output
    assert f"--model {world / 'wan21'}: --guidance-2 3.0" in " ".join(evaluated.output.split())
    assert not (tmp_path / "eval").exists()


def test_messages_name_wan_not_wan_2_1_for_a_wan_2_2(pipe):
    from videolift.models.base import SamplerSettings

    ti2v = build_tiny_wan(wan22=True)
    for wan22 in (pipe, ti2v):  # A14B, TI2V-5B
        with pytest.raises(VideoliftError, match=r"^--frames 10: Wan needs frames = 4k\+1 "):
            get_spec("wan").check_sampling(wan22, SamplerSettings(frames=10, height=SIZE, width=SIZE))


def test_an_expert_the_bases_files_do_not_hold_whole_is_loaded_and_the_export_never_copies_a_bare_folder(
    world, tmp_path, monkeypatch
):
    """A Hub snapshot can hold an expert's config without its weights (diffusers downloads nothing of a
    component passed as None; a download cut short): such an expert is loaded at the start, and an export
    whose base folder lost the weights loads them rather than copying a folder of config.json alone."""
    import shutil

    import videolift.align.export
    import videolift.align.trainer as trainer
    from videolift.core.files import holds_weights
    from videolift.models.base import is_empty

    bare = tmp_path / "bare"  # the base, its low expert's folder holding config.json alone
    shutil.copytree(world / "model", bare)
    for file in (bare / "transformer_2").iterdir():
        if file.name != "config.json":
            file.unlink()
    assert holds_weights(world / "model/transformer_2") and not holds_weights(bare / "transformer_2")
    index = world / "model/transformer_2/diffusion_pytorch_model.safetensors.index.json"
    shard = {"weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.safetensors"}}
    (sharded := tmp_path / "sharded").mkdir()  # an index naming a shard that is not there
    (sharded / index.name).write_text(json.dumps(shard))
    (sharded / "diffusion_pytorch_model-00002-of-00002.safetensors").write_bytes(b"")
    assert not holds_weights(sharded)

    cfg = align_config(world, tmp_path / "run", family="wan", expert="high", max_steps=2)
    monkeypatch.setattr(trainer, "base_directory", lambda model: bare)
    pipe = trainer._load_model(cfg, torch.float32, "transformer")[1]
    assert not is_empty(pipe.transformer_2)  # loaded: nothing to copy it from
    # Left out at the start (the base held it), its folder emptied before the export: loaded then.
    monkeypatch.setattr(trainer, "base_directory", lambda model: world / "model")
    monkeypatch.setattr(videolift.align.export, "base_directory", lambda model: bare)
    result = train(cfg, progress=False)
    files = sorted(p.name for p in (result.export_dir / "transformer_2").iterdir())
    assert files != ["config.json"] and holds_weights(result.export_dir / "transformer_2"), files
    from diffusers import WanPipeline

    aligned, base = (
        WanPipeline.from_pretrained(result.export_dir),
        WanPipeline.from_pretrained(world / "model"),
    )
    assert _same(_state(aligned.transformer_2), _state(base.transformer_2))
