"""Video descriptions written by a VLM: the base model's, for training describe-then-rate critics.

A describe-then-rate critic (``CriticSpec.describe``) reads its own description of the video before
each question. Its training examples carry the *base* model's greedy descriptions (what the critic is
also taught to write), computed once per training video and cached next to the run, keyed by everything
that decides them (base and its weights, instruction, frames, pixel budget, token budget;
``critic.text_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

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
    from videolift.critic.answers import generate_answers
    from videolift.critic.collate import Item

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


def load_describer(
    model_dir: str | Path,
    max_pixels: int | None = None,
    min_pixels: int | None = None,
    *,
    dtype: Any = "float32",
    device: Any = "cpu",
):
    """(model, processor, collator) of a VLM directory or Hub id, ready for greedy generation."""
    from videolift.critic.collate import ChatCollator
    from videolift.models.vlm import get_family, load_vlm

    model, processor = load_vlm(model_dir, dtype=dtype, device=device)
    family = get_family(model.config.model_type)
    family.configure_processor(processor, max_pixels, min_pixels)
    model.eval()
    eos = model.generation_config.eos_token_id
    collator = ChatCollator(
        processor, family, eos_token_ids=[eos] if isinstance(eos, int) else list(eos or [])
    )
    return model, processor, collator


def base_descriptions(
    videos: list[Path],
    spec: Any,
    cache_dir: Path,
    weights: str | None,
    *,
    shared: bool = False,
    device: Any = "cpu",
    dtype: Any = "float32",
    progress: bool = True,
    log: Any = print,
) -> dict[Path, str]:
    """The base model's description of every video (``weights``: its identity, ``weights_digest``), cached
    in ``cache_dir`` and split between the launch's processes (``text_cache.cached_texts``)."""
    from videolift.critic.spec import view_key
    from videolift.critic.text_cache import cache_file, cached_texts, split_note

    key = {
        "base": spec.base_model,
        **({"weights": weights} if weights else {}),
        "instruction": spec.describe_instruction,
        **view_key(spec.num_frames, spec.frame_sampling),
        "max_pixels": spec.max_pixels,
        "min_pixels": spec.min_pixels,
        "max_new_tokens": spec.describe_max_new_tokens,
        "dtype": str(dtype).removeprefix("torch."),  # greedy texts may differ between float32 and bf16
    }
    loaded: list[Any] = []  # the model, once a first chunk needs it

    def compute(missing: list[Path]) -> list[str]:
        if not loaded:
            loaded.extend(
                load_describer(spec.base_model, spec.max_pixels, spec.min_pixels, dtype=dtype, device=device)
            )
        return describe_files(
            *loaded,
            missing,
            num_frames=spec.num_frames,
            sampling=spec.frame_sampling,
            instruction=spec.describe_instruction,
            max_new_tokens=spec.describe_max_new_tokens,
        )

    return cached_texts(
        cache_file(cache_dir, CACHE_FILE, key, shared),
        key,
        "descriptions",
        {v: str(v.resolve()) for v in videos},
        compute,
        lambda n, cached, processes: log(
            f"describing {n} videos with the base model ({cached} cached){split_note(processes)}"
        ),
        progress=progress,
        desc="describing",
    )
