"""The toy T2V pretraining on a shortened schedule: both phases run and the result is a plain diffusers pipeline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videolift.core.jsonl import read_jsonl_dicts
from videolift.toy.grammar import LINEAR_ACTIONS


def test_pretrain_t2v_short_schedule_loads_with_plain_diffusers(tmp_path):
    from diffusers import CogVideoXPipeline

    from videolift.toy.pretrain_t2v import DecoderPhase, T2VPretrainConfig, VAEPhase, pretrain_t2v

    cfg = T2VPretrainConfig(
        vae=VAEPhase(steps=3),
        corpus_size=24,
        steps=3,
        batch=4,
        warmup=1,
        eval_prompts=2,
        sample_steps=2,
        first_steps=2,
        first_corpus_size=6,
        polish_steps=2,
        decoder=DecoderPhase(steps=3, batch=2),
    )
    report = pretrain_t2v(tmp_path / "t2v", cfg)
    pipe = CogVideoXPipeline.from_pretrained(tmp_path / "t2v")
    assert pipe.vae.config.scaling_factor == 1.0 / report["vae"]["latent_std"]
    saved = json.loads((tmp_path / "t2v" / "videolift_pretrain.json").read_text())
    q = saved["quality"]
    assert q["videos"] == 4 and 0.0 <= q["all_good_rate"] <= 1.0
    assert set(q["accuracy"]) == {"colour", "shape", "direction"}
    assert not (tmp_path / ".t2v.partial").exists()
    log = [json.loads(x) for x in (tmp_path / ".t2v.work" / "pretrain_log.jsonl").read_text().splitlines()]
    assert log and log[0]["phase"] == "vae"
    # The curriculum's first lesson: clean single-subject linear moves, then the web corpus from there.
    lesson = list(read_jsonl_dicts(tmp_path / ".t2v.work" / "corpus_first" / "manifest.jsonl"))
    assert len(lesson) == 6
    assert all(r["count"] == 1 and r["action"] in LINEAR_ACTIONS and not r["defects"] for r in lesson)
    assert all(r["split"] == "train" for r in lesson)
    web = json.loads((tmp_path / ".t2v.work" / "transformer" / "align_config.json").read_text())
    assert Path(web["model"]) == tmp_path / ".t2v.work" / "transformer_first" / "pipeline"
    # The polish: continues the web phase at its own rate with an EMA, on the web phase's cache.
    polish = json.loads((tmp_path / ".t2v.work" / "transformer_polish" / "align_config.json").read_text())
    assert Path(polish["model"]) == tmp_path / ".t2v.work" / "transformer" / "pipeline"
    assert (polish["lr"], polish["ema_decay"], polish["max_steps"]) == (cfg.polish_lr, cfg.polish_ema, 2)
    assert Path(polish["cache_dir"]) == tmp_path / ".t2v.work" / "transformer" / "cache"
    summary = json.loads((tmp_path / ".t2v.work" / "transformer_polish" / "train_summary.json").read_text())
    assert summary["data"]["cache"]["videos_encoded"] == 0 and summary["data"]["cache"]["videos_cached"] > 0
    # The decoder phase: only the decoder changed; the encoder (so every latent) is the polish export's.
    assert set(saved["decoder"]) == {"recon_loss", "edge_loss", "steps_run"}
    assert (saved["vae"]["steps_run"], saved["decoder"]["steps_run"]) == (3, 3)
    polished = CogVideoXPipeline.from_pretrained(tmp_path / ".t2v.work" / "transformer_polish" / "pipeline")
    before, after = polished.vae.state_dict(), pipe.vae.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("decoder."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert q["conditioning"]["clips"] == 2 and set(q["conditioning"]["gap"]) == {
        "colour",
        "shape",
        "direction",
    }


def test_the_vae_and_decoder_phases_report_the_updates_made_when_the_time_budget_stops_them():
    """--minutes stopped a phase early, but the report said only the configured steps (config.vae.steps)."""
    from videolift.models.tiny_cogvideox import build_tiny_cogvideox
    from videolift.toy.pretrain_t2v import DecoderPhase, VAEPhase, toy_model_config, train_vae
    from videolift.toy.sharpen_decoder import sharpen_decoder

    rng = np.random.default_rng(0)

    def clips(batch: int) -> tuple[np.ndarray, list[str]]:
        return rng.integers(0, 256, (batch, 9, 48, 48, 3), dtype=np.uint8), [""] * batch

    vae = build_tiny_cogvideox(None, toy_model_config(), seed=0).vae
    assert (
        train_vae(vae, clips, VAEPhase(steps=50, batch=1), deadline=0.0)["steps_run"] == 1
    )  # past: one update
    assert train_vae(vae, clips, VAEPhase(steps=2, batch=1))["steps_run"] == 2
    assert sharpen_decoder(vae, clips, DecoderPhase(steps=50, batch=1), deadline=0.0)["steps_run"] == 1
    assert sharpen_decoder(vae, clips, DecoderPhase(steps=2, batch=1))["steps_run"] == 2


def test_committed_base_is_what_the_defaults_build():
    """`videolift toy pretrain` with its defaults must rebuild the committed model: same recorded recipe."""
    from dataclasses import asdict

    from videolift.toy.pretrain_t2v import T2VPretrainConfig

    asset = Path(__file__).parents[1] / "src" / "videolift" / "toy" / "assets" / "t2v"
    recorded = json.loads((asset / "videolift_pretrain.json").read_text())["config"]
    assert recorded == json.loads(json.dumps(asdict(T2VPretrainConfig())))


def test_blur_clips_blurs_each_clip_by_its_own_sigma():
    from videolift.toy.sharpen_decoder import blur_clips, edge_loss

    x = -torch.ones(2, 3, 2, 32, 32)
    x[..., 12:20, 12:20] = 1.0  # a sharp square, far from the border
    y = blur_clips(x, np.array([0.0, 1.5]))
    assert torch.equal(y[0], x[0])
    assert y.shape == x.shape and not torch.equal(y[1], x[1])
    assert edge_loss(y[1:], x[1:]) > 0 and edge_loss(y[:1], x[:1]) == 0
    # blurring keeps the mean (mass) and lowers the edges' contrast
    assert torch.allclose(y[1].mean(), x[1].mean(), atol=1e-3)
    assert (y[1, ..., 1:, :] - y[1, ..., :-1, :]).abs().max() < 1.0


def test_pretrain_t2v_refuses_an_out_it_would_delete_before_training(tmp_path):
    import pytest

    from videolift.core.errors import VideoliftError
    from videolift.toy.pretrain_t2v import pretrain_t2v

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("someone's files")  # the export would rmtree OUT
    (tmp_path / "file").write_text("a file")
    for out in (tmp_path / "data", tmp_path / "file"):
        with pytest.raises(VideoliftError, match="not a toy base written by `videolift toy pretrain`"):
            pretrain_t2v(out)
        assert not (tmp_path / f".{out.name}.work").exists()  # nothing started
    assert (tmp_path / "data" / "keep.txt").read_text() == "someone's files"


def test_an_interrupted_save_of_the_vae_phase_is_not_taken_for_a_finished_phase(tmp_path, monkeypatch):
    # The base's model_index.json marks the phase done: a save interrupted after writing it (or before the
    # report beside it) made every rerun fail on the missing report until the work directory was deleted.
    from diffusers import DiffusionPipeline

    from videolift.toy.pretrain_t2v import T2VPretrainConfig, VAEPhase, pretrain_t2v

    def interrupted(self, directory, **kwargs):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "model_index.json").write_text("{}")  # the marker first, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(DiffusionPipeline, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain_t2v(tmp_path / "t2v", T2VPretrainConfig(vae=VAEPhase(steps=2)))
    work = tmp_path / ".t2v.work"
    assert not (work / "base_vae" / "model_index.json").exists()  # a rerun trains the phase again


def _tiny(steps: int, **kw):
    from videolift.toy.pretrain_t2v import DecoderPhase, T2VPretrainConfig, VAEPhase

    return T2VPretrainConfig(
        vae=VAEPhase(steps=2),
        corpus_size=8,
        steps=steps,
        batch=4,
        warmup=1,
        eval_prompts=1,
        sample_steps=1,
        first_steps=0,
        polish_steps=0,
        decoder=DecoderPhase(steps=2, batch=2),
        **kw,
    )


def test_a_rerun_with_more_steps_exports_the_longer_run_not_the_old_decoder_phase(tmp_path):
    # The decoder phase's finished pipeline was reused whatever transformer it had sharpened: a rerun that
    # trained the transformer further exported the old, shorter-trained one (its report said the new steps).
    from diffusers import CogVideoXPipeline

    from videolift.toy.pretrain_t2v import pretrain_t2v

    out, work = tmp_path / "t2v", tmp_path / ".t2v.work"
    pretrain_t2v(out, _tiny(2))
    pretrain_t2v(out, _tiny(4))
    exported = CogVideoXPipeline.from_pretrained(out).transformer.state_dict()
    trained = CogVideoXPipeline.from_pretrained(work / "transformer" / "pipeline").transformer.state_dict()
    assert all(torch.equal(exported[k], trained[k]) for k in trained)


def test_a_rerun_with_other_settings_is_refused_before_it_reuses_the_work_directory(tmp_path):
    # A rerun took the corpus (captioned by the other --corpus-text) and the VAE of the first run's settings,
    # unsaid, and reported the new ones.
    from videolift.core.errors import VideoliftError
    from videolift.toy.pretrain_t2v import VAEPhase, pretrain_t2v

    out = tmp_path / "t2v"
    pretrain_t2v(out, _tiny(2))
    before = (out / "videolift_pretrain.json").read_text()
    for changed in (_tiny(2, corpus_text="prompt"), _tiny(2, seed=1)):
        with pytest.raises(VideoliftError, match=r"\.t2v\.work was started with other settings"):
            pretrain_t2v(out, changed)
    changed = _tiny(2)
    changed.vae = VAEPhase(steps=3)
    with pytest.raises(VideoliftError, match="vae.steps: 2 then, 3 now"):
        pretrain_t2v(out, changed)
    assert (out / "videolift_pretrain.json").read_text() == before
