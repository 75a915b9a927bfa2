"""Pretrain the toy world's tiny text-to-video base model (CogVideoX classes, built from a config).

Two phases, as real latent video models are built: the VAE first (a random VAE's latents are
meaningless), then the transformer on frozen-VAE latents of a "web corpus" of toy videos *with*
defects, so the base model learns the domain and its flaws. The transformer phase is the alignment
trainer itself run with real-data weight 1 (``videolift align`` with only a real-data set).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from videolift.models.tiny_cogvideox import TinyCogVideoXConfig


def toy_words() -> list[str]:
    """Every word of the toy grammar (the tokenizer keeps them whole)."""
    from videolift.toy import grammar

    words: set[str] = set()
    for spec in grammar.all_specs():
        words.update(spec.text.split())
    return sorted(words)


@dataclass
class VAEPhase:
    steps: int = 2400
    batch: int = 4
    lr: float = 1e-3
    kl_weight: float = 1e-6
    defect_rate: float = 0.5


def toy_model_config() -> TinyCogVideoXConfig:
    from videolift.toy import render

    return TinyCogVideoXConfig(
        vae_channels=(16, 32, 32), latent_channels=4, vae_norm_groups=4, layers=4, heads=4, head_dim=32,
        time_embed_dim=64, text_dim=64, text_layers=2, text_heads=2, max_text_len=20,
        sample_frames=render.FRAMES, sample_height=render.SIZE, sample_width=render.SIZE,
        words=toy_words(),
    )


def web_clips(seed: int, defect_rate: float, chunk: int = 256) -> Callable[[int], tuple[np.ndarray, list[str]]]:
    """An endless sampler of (uint8 videos (B, T, H, W, 3), prompts): toy corpus items with defects."""
    from videolift.toy.corpus import plan

    state = {"items": [], "chunk": 0}

    def sample(batch: int) -> tuple[np.ndarray, list[str]]:
        while len(state["items"]) < batch:
            state["items"] += plan(chunk, defect_rate=defect_rate, seed=seed * 100_003 + state["chunk"], split="train")
            state["chunk"] += 1
        items, state["items"] = state["items"][:batch], state["items"][batch:]
        return np.stack([item.render() for item in items]), [item.spec.text for item in items]

    return sample


def train_vae(vae: Any, sample: Callable[[int], tuple[np.ndarray, list[str]]], phase: VAEPhase,
              deadline: float | None = None, log: Callable[[dict], None] | None = None) -> dict[str, float]:
    """Reconstruction + tiny KL; returns the final reconstruction MSE and the latent std."""
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=phase.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=phase.lr, total_steps=phase.steps + 1, pct_start=max(0.05, 2 / phase.steps)
    )
    ema = None
    bar = tqdm(range(phase.steps), desc="VAE", unit="step")
    for step in bar:
        videos, _ = sample(phase.batch)
        x = torch.from_numpy(videos).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        mse = torch.mean((recon - x) ** 2)
        loss = mse + phase.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = mse.item() if ema is None else 0.98 * ema + 0.02 * mse.item()
        bar.set_postfix(mse=f"{ema:.4f}")
        if log and step % 50 == 0:
            log({"phase": "vae", "step": step, "mse": mse.item(), "lr": sched.get_last_lr()[0]})
        if deadline is not None and time.time() > deadline:
            break
    vae.eval()
    with torch.no_grad():
        videos, _ = sample(32)
        x = torch.from_numpy(videos).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        mean = vae.encode(x).latent_dist.mean
        recon = vae.decode(mean).sample
    return {"recon_mse_01": float(torch.mean(((recon - x) / 2) ** 2)), "latent_std": float(mean.std())}


@dataclass
class T2VPretrainConfig:
    """Defaults are what the committed toy base model was built with (``videolift toy pretrain``)."""

    seed: int = 0
    vae: VAEPhase = field(default_factory=VAEPhase)
    corpus_size: int = 12000  # rendered web-corpus clips the transformer trains on
    corpus_defect_rate: float = 0.5  # share of clips with at least one defect
    empty_prompt_rate: float = 0.1  # extra (clip, "") pairs: classifier-free guidance needs them
    steps: int = 9000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 300
    sample_steps: int = 25  # default sampler of the saved pipeline's evaluation
    guidance: float = 5.0
    eval_prompts: int = 64


def render_corpus(out: Path, n: int, seed: int, defect_rate: float, empty_rate: float) -> Path:
    """``videolift toy corpus`` with defects, as a scores file of reward 1 (plain likelihood training),
    plus (clip, "") pairs so the model also learns the unconditional score for guidance."""
    from videolift.core.jsonl import read_jsonl_dicts, write_jsonl
    from videolift.toy.corpus import plan, write_corpus

    manifest = out / "manifest.jsonl"
    if not manifest.exists():
        write_corpus(plan(n, defect_rate=defect_rate, seed=seed, split="train"), out)
    rng = np.random.default_rng([seed, 7])
    records = []
    for rec in read_jsonl_dicts(manifest):
        records.append({"video": rec["video"], "prompt": rec["prompt"], "reward": 1.0})
        if rng.random() < empty_rate:
            records.append({"video": rec["video"], "prompt": "", "reward": 1.0})
    write_jsonl(out / "scores.jsonl", records)
    return out / "scores.jsonl"


def pretrain_t2v(out: str | Path, cfg: T2VPretrainConfig | None = None, minutes: float | None = None) -> dict:
    """Build, train and save the toy base T2V pipeline; returns the quality report."""
    from videolift.align.config import AlignConfig
    from videolift.align.trainer import train
    from videolift.models.tiny_cogvideox import build_tiny_cogvideox

    cfg = cfg or T2VPretrainConfig()
    out = Path(out)
    work = out.parent / f".{out.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    budget = None if minutes is None else minutes * 60
    log_path = work / "pretrain_log.jsonl"

    def log(row: dict) -> None:
        with open(log_path, "a") as handle:
            handle.write(json.dumps({**row, "elapsed": round(time.time() - start, 1)}) + "\n")

    base0 = work / "base_vae"
    if not (base0 / "model_index.json").exists():
        pipe = build_tiny_cogvideox(None, toy_model_config(), seed=cfg.seed)
        deadline = None if budget is None else start + 0.3 * budget
        vae_report = train_vae(pipe.vae, web_clips(cfg.seed, cfg.vae.defect_rate), cfg.vae, deadline, log)
        # Unit-variance latents, as diffusion expects (the real VAE ships its own scaling factor).
        pipe.vae.register_to_config(scaling_factor=1.0 / vae_report["latent_std"])
        pipe.save_pretrained(base0)
        (work / "vae_report.json").write_text(json.dumps(vae_report))
    vae_report = json.loads((work / "vae_report.json").read_text())

    corpus = work / "corpus"
    if not (corpus / "scores.jsonl").exists():
        render_corpus(corpus, cfg.corpus_size, cfg.seed + 1, cfg.corpus_defect_rate, cfg.empty_prompt_rate)
    steps = cfg.steps
    align_cfg = AlignConfig(
        model=str(base0), scores=corpus / "scores.jsonl", videos=corpus, out=work / "transformer",
        lambda_real=0.0, finetune="full", lr=cfg.lr, lr_scheduler="cosine", warmup_steps=cfg.warmup,
        max_steps=steps, batch_size=cfg.batch, seed=cfg.seed, checkpoint_every=500, log_every=50,
        num_workers=0, resume=(work / "transformer").exists(),
    )
    result = train(align_cfg, progress=True)
    from shutil import copytree, rmtree

    tmp = out.parent / f".{out.name}.partial"
    rmtree(tmp, ignore_errors=True)
    copytree(result.export_dir, tmp)
    report = {"config": asdict(cfg), "vae": vae_report, "minutes": round((time.time() - start) / 60, 1)}
    (tmp / "videolift_pretrain.json").write_text(json.dumps(report, indent=1))
    if out.exists():
        rmtree(out)
    tmp.rename(out)
    return report
