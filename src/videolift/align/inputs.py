"""What an alignment run trains on: the scores file's synthetic videos with their weights, the real clips,
and every video and prompt encoded once into the cache (``align.cache``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videolift.align.cache import CacheStats, EncodingCache, common_shape, model_fingerprint
from videolift.align.config import HASH_MEMO, AlignConfig
from videolift.align.weights import Sample, read_real, rescore, reward_scale_warning, select_synthetic
from videolift.core.errors import DataError, VideoliftError
from videolift.core.files import HashMemo
from videolift.core.reward import RewardConfig
from videolift.core.schema import rated_dimensions, tidy_path
from videolift.core.scores import read_scores


def load_samples(cfg: AlignConfig) -> tuple[list[Sample], list[Sample], dict]:
    """Synthetic samples with weights, real samples, and counts for the log."""
    # RS keeps videos by their labels: a line without ratings would be dropped as not all Good, unseen.
    scored = read_scores(cfg.scores, from_labels=cfg.reward_config is not None or cfg.method == "rs")
    if not scored:
        raise DataError("the scores file has no records", file=cfg.scores)
    if cfg.reward_config is not None:
        scored = rescore(scored, RewardConfig.load(cfg.reward_config), cfg.scores)
    try:
        synthetic, counts = select_synthetic(scored, cfg.method, cfg.weight_transform, cfg.exp_temperature)
    except DataError as exc:  # a line of the scores file
        raise DataError(exc.detail, file=cfg.scores, line=exc.line, field=exc.field) from None
    except ValueError as exc:
        raise VideoliftError(f"{cfg.scores}: {exc}") from None
    if not synthetic:
        why = "none is rated Good on every dimension" if cfg.method == "rs" else "every reward is null"
        if cfg.method == "rwl" and cfg.reward_config is not None:  # the file's own rewards may be fine
            rated = ", ".join(rated_dimensions(i.labels for i in scored))
            why = (
                f"--reward-config {cfg.reward_config} gives every video a null reward: it counts no dimension "
                f"with a parsed label (the file rates {rated})"
            )
        raise VideoliftError(f"{cfg.scores}: no synthetic video to train on ({counts['rated']} rated, {why})")
    weights = np.array([s.weight for s in synthetic])
    if cfg.syn_sampling == "weighted" and not weights.sum() > 0:
        raise VideoliftError(f"{cfg.scores}: --syn-sampling weighted needs a video with a positive weight")
    real = read_real(cfg.real) if cfg.real is not None else []
    data = dict(counts)
    if cfg.method == "rwl" and (
        note := reward_scale_warning(
            scored, cfg.weight_transform, cfg.exp_temperature, bool(real) and cfg.lambda_real > 0
        )
    ):
        data["warning"] = f"{cfg.scores}: {note}"
    if repeated := _repeated_videos(synthetic):
        video, lines = repeated[0]
        note = (
            f"{cfg.scores}: {len(repeated)} video(s) on more than one line (e.g. {video}, lines "
            f"{', '.join(map(str, lines))}); each line is trained on, so they count that many times"
        )
        data["warning"] = "; ".join(filter(None, [data.get("warning"), note]))
    if unused := cfg.weight_options_unused():
        options = ", ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)}" for n in unused)
        why = (
            "--method rs weights every video it keeps 1 (rated Good on every dimension the scores file rates, "
            "whatever its reward)"
            if cfg.method == "rs"
            else "the temperature is --weight-transform exp's"
        )
        note = f"{options} set, but {why}: they change nothing"
        data["warning"] = "; ".join(filter(None, [data.get("warning"), note]))
    if unused := cfg.real_options_without_real():
        options = ", ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)}" for n in unused)
        note = f"{options} set without --real: there is no real-data term, so they change nothing"
        data["warning"] = "; ".join(filter(None, [data.get("warning"), note]))
    data.update(
        real=len(real),
        weight_mean=float(weights.mean()),
        weight_min=float(weights.min()),
        weight_max=float(weights.max()),
    )
    return synthetic, real, data


def _repeated_videos(samples: list[Sample]) -> list[tuple[str, list[int]]]:
    """Videos listed on several lines, with their lines (a scores file concatenated twice, say); one file
    written two ways ("./v/a.mp4", "v/a.mp4": two critics' scores merged) is one video."""
    lines: dict[str, list[int]] = {}
    for sample in samples:
        lines.setdefault(tidy_path(sample.video), []).append(sample.line)
    return [(video, at) for video, at in lines.items() if len(at) > 1]


def cache_all(
    cfg, spec, pipe, accelerator, synthetic, real, hashes: HashMemo, progress: bool = True, held_out=()
) -> tuple[list, list, Path | None, list, CacheStats]:
    """Cache every synthetic, real and held-out video and prompt, and the empty prompt when text dropout
    is on (all ranks together); afterwards only the trained transformer stays on the accelerator.
    ``hashes``: the main process's weight hashes of the run's start, saved here. Returns the (latent,
    text) paths of the synthetic, real and held-out samples, the empty prompt's, and the counts."""
    from accelerate.utils import gather_object

    memo = cfg.cache_root / HASH_MEMO

    def fingerprint_of(known: HashMemo | Path) -> str:
        # Not the experts' weights either: the two runs of a two-expert model (the second on the first's
        # export, or on the base) share one cache.
        return model_fingerprint(cfg.model, pipe, trained=denoisers(pipe), memo=known)

    # The main process hashed the weights at the start and saves them now; the other ranks read its memo.
    if accelerator.is_main_process:
        fingerprint = fingerprint_of(hashes)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        fingerprint = fingerprint_of(memo)
    cache = EncodingCache(
        cfg.cache_root, fingerprint, cfg.preprocessing(), hash_content=cfg.hash_content, memo=memo
    )
    items = [(cfg.videos / s.video, s.prompt) for s in synthetic]
    items += [(cfg.real_root / s.video, s.prompt) for s in real]
    items += [(cfg.validation_root / s.video, s.prompt) for s in held_out]
    paths, stats = cache.build(
        spec,
        pipe,
        items,
        extra_prompts=("",) if cfg.text_dropout else (),
        rank=accelerator.process_index,
        world=accelerator.num_processes,
        barrier=accelerator.wait_for_everyone,
        video_batch=cfg.encode_batch_size,
        before_encode=lambda: encoders_ready(pipe, accelerator.device, cfg.vae_tiling),
        progress=progress and accelerator.is_local_main_process,
        listed={cfg.videos / s.video: (cfg.scores, s.line) for s in synthetic}
        | {cfg.real_root / s.video: (cfg.real, s.line) for s in real}
        | {cfg.validation_root / s.video: (cfg.validation_real, s.line) for s in held_out},
    )
    encoders_to(pipe, "cpu")
    per_rank = gather_object([asdict(stats)])  # cached counts agree; encoded ones add up
    stats.videos_encoded = sum(r["videos_encoded"] for r in per_rank)
    stats.prompts_encoded = sum(r["prompts_encoded"] for r in per_rank)
    empty = cache.text_path("") if cfg.text_dropout else None
    n_syn, n_real = len(synthetic), len(real)
    return paths[:n_syn], paths[n_syn : n_syn + n_real], empty, paths[n_syn + n_real :], stats


def denoisers(pipe: Any) -> tuple[torch.nn.Module, ...]:
    """The pipeline's transformers: its one, or a two-expert Wan 2.2's both."""
    found = (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None))
    return tuple(m for m in found if m is not None)


def encoders_to(pipe: Any, device: Any, trained: Any = None) -> None:
    """The frozen components (VAE, text encoder) to ``device``; the transformers stay where they are (a
    14B one in fp32 would not fit on the GPU beside them while videos are encoded). Given the ``trained``
    module, to sample with the pipeline: everything else, a frozen expert too."""
    stay = denoisers(pipe) if trained is None else (trained,)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module) and not any(component is s for s in stay):
            component.to(device)


def encoders_ready(pipe: Any, device: Any, vae_tiling: bool, trained: Any = None) -> None:
    encoders_to(pipe, device, trained)
    if vae_tiling:
        pipe.vae.enable_tiling()


def check_shapes(syn_paths: list, real_paths: list, empty_text: Path | None, held_out: list = ()) -> None:
    lat = common_shape([p for p, _ in syn_paths], "synthetic latents")
    texts = [t for _, t in syn_paths + real_paths] + ([empty_text] if empty_text else [])
    common_shape(texts, "text embeddings")  # the empty prompt's too: dropout stacks it with the rest
    if real_paths:
        real_lat = common_shape([p for p, _ in real_paths], "real latents")
        if real_lat != lat:  # one forward pass over the concatenated batch needs one shape
            raise VideoliftError(
                f"real latents {real_lat} and synthetic latents {lat} differ in shape; "
                "set --frames / --height / --width so both are preprocessed to one size"
            )
    if held_out:  # a batch of them is one forward pass
        common_shape([p for p, _ in held_out], "held-out latents")
        common_shape([t for _, t in held_out], "held-out text embeddings")
