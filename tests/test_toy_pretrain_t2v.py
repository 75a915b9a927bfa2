"""The toy T2V pretraining on a shortened schedule: both phases run and the result is a plain diffusers pipeline."""

import json


def test_pretrain_t2v_short_schedule_loads_with_plain_diffusers(tmp_path):
    from diffusers import CogVideoXPipeline

    from videolift.toy.pretrain_t2v import T2VPretrainConfig, VAEPhase, pretrain_t2v

    cfg = T2VPretrainConfig(
        vae=VAEPhase(steps=3), corpus_size=24, steps=3, batch=4, warmup=1, eval_prompts=2, sample_steps=2
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
