"""Video descriptions written by a VLM: the base model's, for training describe-then-rate critics.

A describe-then-rate critic (``CriticSpec.describe``) reads its own description of the video before
each question. Its training examples carry the *base* model's greedy descriptions (what the critic is
also taught to write), computed once per training video and cached next to the run, keyed by everything
that decides them (base, instruction, frames, pixel budget, token budget).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from videolift.core.jsonl import atomic_write, read_json
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
    sampling: str = "uniform",
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "describing",
) -> list[str]:
    """Greedy answers of a loaded VLM to ``instruction`` for video files, batched."""
    from videolift.critic.collate import Item
    from videolift.critic.score import generate_answers

    out: list[str] = []
    for start in tqdm(range(0, len(videos), batch_size), desc=desc, unit="batch", disable=not progress):
        items = [
            Item(sample_frames(v, num_frames, sampling), instruction)
            for v in videos[start : start + batch_size]
        ]
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


def cache_file(cache_dir: Path, name: str, key: dict[str, Any], shared: bool) -> Path:
    """``cache_dir/name`` (a run's own cache), or in a cache ``shared`` by runs one file per settings
    (``checks-<hash of key>.json``) so that runs with other settings do not overwrite each other's."""
    if not shared:
        return cache_dir / name
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    stem, dot, ext = name.partition(".")
    return cache_dir / f"{stem}-{digest}{dot}{ext}"


def cached_texts(
    path: Path,
    key: dict[str, Any],
    field: str,
    names: dict[Any, str],
    compute: Callable[[list[Any]], list[str]],
    announce: Callable[[int, int], None],
) -> dict[Any, str]:
    """A text per item (``names``: item -> its name in the cache), computing only the items missing from
    the JSON cache at ``path`` (``{"key": key, field: {name: text}}``, reused only for the same ``key``).
    ``announce(missing, cached)`` is called before computing."""
    known: dict[str, str] = {}
    if path.exists():
        saved = read_json(path)
        if saved.get("key") == key:
            known = saved[field]
    missing = [item for item, name in names.items() if name not in known]
    if missing:
        announce(len(missing), len(names) - len(missing))
        known.update({names[item]: text for item, text in zip(missing, compute(missing), strict=True)})
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            handle.write(json.dumps({"key": key, field: known}, indent=0) + "\n")
    return {item: known[name] for item, name in names.items()}


def base_descriptions(
    base: str,
    videos: list[Path],
    spec: Any,
    cache_dir: Path,
    *,
    shared: bool = False,
    progress: bool = True,
    log: Any = print,
) -> dict[Path, str]:
    """The base model's description of every video (cached in ``cache_dir``, see ``cache_file``)."""
    from videolift.critic.spec import view_key

    key = {
        "base": base,
        "instruction": spec.describe_instruction,
        **view_key(spec.num_frames, spec.frame_sampling),
        "max_pixels": spec.max_pixels,
        "min_pixels": spec.min_pixels,
        "max_new_tokens": spec.describe_max_new_tokens,
    }

    def compute(missing: list[Path]) -> list[str]:
        model, processor, collator = load_describer(base, spec.max_pixels, spec.min_pixels)
        return describe_files(
            model,
            processor,
            collator,
            missing,
            num_frames=spec.num_frames,
            sampling=spec.frame_sampling,
            instruction=spec.describe_instruction,
            max_new_tokens=spec.describe_max_new_tokens,
            progress=progress,
        )

    return cached_texts(
        cache_file(cache_dir, CACHE_FILE, key, shared),
        key,
        "descriptions",
        {v: str(v.resolve()) for v in videos},
        compute,
        lambda n, cached: log(f"describing {n} training videos with the base model ({cached} cached)"),
    )
