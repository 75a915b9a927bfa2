"""Video descriptions written by a VLM: the base model's, for training describe-then-rate critics.

A describe-then-rate critic (``CriticSpec.describe``) reads its own description of the video before
each question. Its training examples carry the *base* model's greedy descriptions (what the critic is
also taught to write), computed once per training video and cached next to the run, keyed by everything
that decides them (base, instruction, frames, pixel budget, token budget).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from videolift.core.jsonl import atomic_write
from videolift.core.video import sample_frames

CACHE_FILE = "descriptions.json"


def describe_files(
    model: Any,
    processor: Any,
    collator: Any,
    videos: list[Path],
    *,
    num_frames: int,
    instruction: str,
    max_new_tokens: int,
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "describing",
) -> list[str]:
    """Greedy answers of a loaded VLM to ``instruction`` for video files, batched."""
    from videolift.critic.collate import Item
    from videolift.critic.score import generate_answers

    out: list[str] = []
    for start in tqdm(range(0, len(videos), batch_size), desc=desc, unit="batch", disable=not progress):
        items = [Item(sample_frames(v, num_frames), instruction) for v in videos[start : start + batch_size]]
        out += [
            t.strip()
            for t in generate_answers(model, processor, collator, items, max_new_tokens=max_new_tokens)
        ]
    return out


def load_describer(model_dir: str | Path, max_pixels: int | None = None, min_pixels: int | None = None):
    """(model, processor, collator) of a VLM directory or Hub id, ready for greedy generation."""
    from videolift.critic.collate import ChatCollator
    from videolift.models.vlm import get_family, load_vlm

    model, processor = load_vlm(model_dir)
    family = get_family(model.config.model_type)
    family.configure_processor(processor, max_pixels, min_pixels)
    model.eval()
    eos = model.generation_config.eos_token_id
    collator = ChatCollator(
        processor, family, eos_token_ids=[eos] if isinstance(eos, int) else list(eos or [])
    )
    return model, processor, collator


def base_descriptions(
    base: str, videos: list[Path], spec: Any, cache_dir: Path, *, progress: bool = True, log: Any = print
) -> dict[Path, str]:
    """The base model's description of every video (cached in ``cache_dir/descriptions.json``)."""
    key = {
        "base": base,
        "instruction": spec.describe_instruction,
        "num_frames": spec.num_frames,
        "max_pixels": spec.max_pixels,
        "min_pixels": spec.min_pixels,
        "max_new_tokens": spec.describe_max_new_tokens,
    }
    path = cache_dir / CACHE_FILE
    known: dict[str, str] = {}
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            known = saved["descriptions"]
    videos = list(dict.fromkeys(videos))
    missing = [v for v in videos if str(v.resolve()) not in known]
    if missing:
        log(
            f"describing {len(missing)} training videos with the base model ({len(videos) - len(missing)} cached)"
        )
        model, processor, collator = load_describer(base, spec.max_pixels, spec.min_pixels)
        texts = describe_files(
            model,
            processor,
            collator,
            missing,
            num_frames=spec.num_frames,
            instruction=spec.describe_instruction,
            max_new_tokens=spec.describe_max_new_tokens,
            progress=progress,
        )
        known.update({str(v.resolve()): t for v, t in zip(missing, texts, strict=True)})
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            handle.write(json.dumps({"key": key, "descriptions": known}, indent=0) + "\n")
    return {v: known[str(v.resolve())] for v in videos}
