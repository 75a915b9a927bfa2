"""The toy T2V pretraining on a shortened schedule: both phases run and the result is a plain diffusers pipeline."""

import json

import torch


def test_pretrain_t2v_short_schedule_loads_with_plain_diffusers(tmp_path):
    from diffusers import CogVideoXPipeline

    from videolift.toy.pretrain_t2v import DecoderPhase, T2VPretrainConfig, VAEPhase, pretrain_t2v

    cfg = T2VPretrainConfig(
        vae=VAEPhase(steps=3),
        decoder=DecoderPhase(steps=2, batch=2),
        corpus_size=24,
        steps=3,
        batch=4,
        warmup=1,
        eval_prompts=2,
        sample_steps=2,
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
    assert "decoder" in {row["phase"] for row in log}
    # Phase 1b tunes the decoder only: the encoder (the latent space) is phase 1's.
    first = CogVideoXPipeline.from_pretrained(tmp_path / ".t2v.work" / "base_vae").vae
    enc, enc0 = pipe.vae.encoder.state_dict(), first.encoder.state_dict()
    assert all(torch.equal(enc[k], enc0[k]) for k in enc0)
    dec, dec0 = pipe.vae.decoder.state_dict(), first.decoder.state_dict()
    assert any(not torch.equal(dec[k], dec0[k]) for k in dec0)
