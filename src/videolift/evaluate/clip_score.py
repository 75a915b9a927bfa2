"""``videolift eval --clip MODEL``: CLIPSIM and CLIP temporal consistency, a cheap rater independent of
the critic, as text-to-video papers report them (CogVideo, Make-A-Video).

Per video, from up to ``CLIP_FRAMES`` frames sampled uniformly (``core.video.sample_frames``; a shorter
clip gives each of its frames once):

- ``clipsim``: the mean over the frames of the cosine similarity between the frame's image embedding and
  the prompt's text embedding (prompts beyond CLIP's text length, 77 tokens, are cut there);
- ``temporal_consistency``: the mean cosine similarity of consecutive sampled frames' image embeddings
  (1.0 for a still video).

Each model's values go to ``OUT/<model>/clip_scores.jsonl`` (the manifest record's fields, the two
values and the CLIP model's identity under ``"clip"``), beside ``critic_scores.jsonl``; a rerun reuses
the line of every video whose record and CLIP model are unchanged, and loads CLIP only for the others.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videolift.core.errors import VideoError, VideoliftError
from videolift.core.jsonl import iter_json_lines, read_jsonl_dicts, write_jsonl

CLIP_FRAMES = 16  # frames sampled per video, uniformly over the clip (first and last included)
# What CLIP computes in, whatever its checkpoint was saved in: transformers 5 loads a checkpoint in its own
# dtype, and a float16 or bfloat16 CLIP moves CLIPSIM by up to ~1e-3, the size of a difference between models.
CLIP_DTYPE = "float32"
CLIP_FILE = "clip_scores.jsonl"
IMAGE_BATCH = 64  # frames per image-encoder call
KEYS = ("clipsim", "temporal_consistency")


def check_clip_model(model: str, option: str = "--clip") -> None:
    """``--clip MODEL``: a CLIP model (``model_type`` "clip", what ``CLIPModel`` loads) with a processor that
    tokenizes text and prepares images; refused before the first video (VideoliftError naming ``option``,
    the pipeline's ``evaluate.clip`` there)."""
    from transformers import AutoConfig, AutoProcessor

    from videolift.core.hub import hub_failure

    try:
        model_type = AutoConfig.from_pretrained(str(model)).model_type
    except (OSError, ValueError) as exc:
        raise VideoliftError(
            f"{option} {model}: cannot read its model config: not a local model directory and not reachable "
            f"on the Hub ({hub_failure(str(model), exc)})"
        ) from None
    if model_type != "clip":
        raise VideoliftError(
            f"{option} {model}: a {model_type!r} model, not a CLIP model (transformers' CLIPModel, e.g. "
            "openai/clip-vit-base-patch32)"
        )
    try:
        processor = AutoProcessor.from_pretrained(str(model))
    except (OSError, ValueError, TypeError) as exc:
        raise VideoliftError(
            f"{option} {model}: cannot load its processor ({hub_failure(str(model), exc)})"
        ) from None
    if getattr(processor, "tokenizer", None) is None or getattr(processor, "image_processor", None) is None:
        raise VideoliftError(
            f"{option} {model}: its processor ({type(processor).__name__}) lacks a tokenizer or an image "
            "processor; CLIPSIM needs both (a CLIPProcessor)"
        )


def clip_signature(model: str) -> dict[str, Any]:
    """What a CLIP value was computed with: the model as given, its files' fingerprint (a local directory's, or
    a Hub id's cached snapshot; None if not cached yet), the frames sampled and the dtype. Not the device:
    in float32 it changes CLIPSIM by float rounding only (~1e-7; a GPU's TF32 convolutions ~1e-5)."""
    from videolift.core.files import fingerprint
    from videolift.core.hub import base_directory

    files = base_directory(model)
    return {
        "model": str(model),
        "files": None if files is None else fingerprint(files),
        "frames": CLIP_FRAMES,
        "dtype": CLIP_DTYPE,  # lines of versions that ran a checkpoint in its own dtype lack it: computed again
    }


@dataclass
class ClipScorer:
    """A loaded CLIP model and its processor on ``device``, with the text embeddings it has computed."""

    model: Any
    processor: Any
    device: Any
    max_tokens: int  # the text encoder's positions (77 for OpenAI's CLIP)
    texts: dict[str, Any] = field(default_factory=dict)  # prompt -> its unit text embedding
    truncated: set[str] = field(default_factory=set)  # prompts cut at ``max_tokens``

    def text_embedding(self, prompt: str) -> Any:
        import torch

        if prompt not in self.texts:
            tokenizer = self.processor.tokenizer
            if len(tokenizer(prompt, truncation=False)["input_ids"]) > self.max_tokens:
                self.truncated.add(prompt)
            enc = tokenizer([prompt], truncation=True, max_length=self.max_tokens, return_tensors="pt")
            with torch.no_grad():
                out = self.model.get_text_features(**{k: v.to(self.device) for k, v in enc.items()})
            self.texts[prompt] = _unit(_features(out))[0]
        return self.texts[prompt]

    def image_embeddings(self, frames: Sequence[Any]) -> Any:
        """Unit image embeddings of ``frames`` (H x W x 3 uint8 arrays), ``IMAGE_BATCH`` at a time."""
        import torch

        chunks = []
        for i in range(0, len(frames), IMAGE_BATCH):
            pixels = self.processor.image_processor(
                images=list(frames[i : i + IMAGE_BATCH]), return_tensors="pt"
            )
            with torch.no_grad():
                out = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
            chunks.append(_unit(_features(out)))
        return torch.cat(chunks)

    def scores(self, frames: Sequence[Any], prompt: str) -> dict[str, float]:
        """A video's CLIPSIM and temporal consistency from its sampled ``frames``."""
        images = self.image_embeddings(frames)
        text = self.text_embedding(prompt)
        clipsim = (images @ text).mean()
        # one frame: nothing moves
        consistency = (images[1:] * images[:-1]).sum(-1).mean() if len(images) > 1 else 1.0
        return {
            "clipsim": float(clipsim),
            "temporal_consistency": float(consistency),
            "prompt_truncated": prompt in self.truncated,
        }


def _features(out: Any) -> Any:
    """The projected embeddings: transformers 5 returns a model output with them as ``pooler_output``,
    earlier versions the tensor itself."""
    return getattr(out, "pooler_output", out)


def _unit(x: Any) -> Any:
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1)


def load_clip(model: str, device: str = "auto") -> ClipScorer:
    """``model`` (a directory or Hub id; offline with ``HF_HUB_OFFLINE``, as every model here) on ``device``
    ("auto": this process's), in ``CLIP_DTYPE``, evaluation mode."""
    import torch
    from transformers import AutoProcessor, CLIPModel

    from videolift.core.hub import hub_failure

    if device == "auto":
        from videolift.core.distributed import process_state

        device = process_state().device
    try:
        processor = AutoProcessor.from_pretrained(str(model))
        clip = CLIPModel.from_pretrained(str(model), dtype=getattr(torch, CLIP_DTYPE))
    except (OSError, ValueError) as exc:
        raise VideoliftError(f"--clip {model}: cannot load it ({hub_failure(str(model), exc)})") from None
    clip = clip.to(device).eval()
    return ClipScorer(clip, processor, device, int(clip.config.text_config.max_position_embeddings))


def sampled_frames(path: Path) -> Any:
    """Up to ``CLIP_FRAMES`` frames spread uniformly over a video, each frame once (a clip shorter than
    that gives all its frames: ``sample_frames`` would repeat some, which would count as no motion)."""
    from videolift.core.video import sample_frames

    clip = sample_frames(path, CLIP_FRAMES, fps=1.0)  # any fps: the clip then carries its indices
    indices = clip.timing.indices
    keep = [i for i, index in enumerate(indices) if i == 0 or index != indices[i - 1]]
    return clip[keep]


def clip_values(
    load: Any, manifest: Path, videos: Path, out: Path, signature: dict[str, Any], progress: bool = True
) -> list[dict[str, Any]]:
    """Each manifest video's line (its record, ``KEYS``' values and ``signature`` as ``"clip"``), in manifest
    order, written to ``out``: an earlier line of ``out`` for the same record and ``signature`` is reused,
    the others computed by the scorer ``load()`` returns (called only if any is left). A video that cannot be
    read gets ``"error"`` and null values."""
    from tqdm import tqdm

    from videolift.core.manifest import video_key
    from videolift.critic.score import read_manifest, scored_for

    records = read_manifest(manifest)
    earlier: dict[str, dict[str, Any]] = {}
    if out.exists():
        earlier = {video_key(line): line for _, line in iter_json_lines(out, skip_partial_last=True)}
    lines: list[dict[str, Any]] = []
    scorer = None
    for record in tqdm(records, desc=f"CLIP {out.parent.name}", unit="video", disable=not progress):
        old = earlier.get(video_key(record))
        if (
            old is not None
            and old.get("clip") == signature
            and "error" not in old
            and scored_for(old, record)
        ):
            lines.append(old)
            continue
        scorer = scorer or load()
        try:
            values: dict[str, Any] = scorer.scores(sampled_frames(videos / record["video"]), record["prompt"])
        except VideoError as exc:  # the user may fix the file: retried on a rerun
            values = {**dict.fromkeys(KEYS), "error": str(exc)}
        lines.append({**record, **values, "clip": signature})
    write_jsonl(out, lines)
    return lines


def clip_summary(
    model: str,
    lines: dict[str, list[dict[str, Any]]],
    clusters: Sequence[Hashable] | None,
    truncated: int,
    groups: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """eval.json's ``"clip"``: per model (``lines``: each run's per-video lines, in manifest order) the mean
    and standard error of each value, and every other model's paired difference from the first, over the
    same prompts and seeds and clustered by prompt (``clusters``) as the critic's and the oracle's; with
    replicates (``groups``, each model's recipe) the recipes too, as the raters' ``groups`` and
    ``group_differences``."""
    from videolift.core.stats import mean_and_cluster_se
    from videolift.evaluate.metrics import (
        paired_values,
        recipes,
        replicate_value_difference,
        replicate_value_summary,
    )

    def values(name: str, key: str) -> list[float | None]:
        return [line.get(key) for line in lines[name]]

    per_model: dict[str, dict[str, Any]] = {}
    for name in lines:
        row: dict[str, Any] = {}
        for key in KEYS:
            kept = [(i, v) for i, v in enumerate(values(name, key)) if v is not None]  # not unreadable ones
            kept_clusters = None if clusters is None else [clusters[i] for i, _ in kept]
            row[key], row[f"{key}_se"] = mean_and_cluster_se([v for _, v in kept], kept_clusters)
        row["n"] = sum(line.get("clipsim") is not None for line in lines[name])
        row["unreadable"] = sum("error" in line for line in lines[name])
        per_model[name] = row
    ref, *others = lines
    paired = {
        f"{name} vs {ref}": {
            key: paired_values(values(name, key), values(ref, key), clusters) for key in KEYS
        }
        for name in others
    }
    summary = {
        "model": model,
        "frames": CLIP_FRAMES,
        "truncated_prompts": truncated,
        "per_model": per_model,
        "paired": paired,
    }
    names = list(lines)
    if not (members := recipes(names, groups)):
        return summary

    def runs(recipe: str, key: str) -> list[list[float | None]]:
        return [values(names[i], key) for i in members[recipe]]

    def recipe_row(recipe: str) -> dict[str, Any]:
        row: dict[str, Any] = {
            "members": [names[i] for i in members[recipe]],
            "replicates": len(members[recipe]),
        }
        for key in KEYS:
            row[key], row[f"{key}_seed_se"] = replicate_value_summary(runs(recipe, key))
        return row

    first, *rest = members
    summary["groups"] = {recipe: recipe_row(recipe) for recipe in members}
    summary["group_differences"] = {
        f"{recipe} vs {first}": {
            key: replicate_value_difference(runs(recipe, key), runs(first, key), clusters) for key in KEYS
        }
        for recipe in rest
    }
    return summary


def rate_by_clip(
    names: list[str],
    model: str,
    out: Path,
    device: str,
    clusters: Sequence[Hashable] | None,
    progress: bool,
    groups: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Every model's videos (``OUT/<name>``) scored by CLIP ``model`` on ``device`` (loaded once, only if some
    video has no value yet), and eval.json's ``"clip"`` (``clip_summary``; ``groups``: each model's recipe).
    Under several processes the main one scores (CLIP is cheap next to generation) while the others wait,
    then every one reads the files."""
    from rich.console import Console

    from videolift.core.distributed import process_state

    state = process_state()
    signature = clip_signature(model)
    scorers: list[ClipScorer] = []  # loaded at the first video that needs it, then kept

    def load() -> ClipScorer:
        if not scorers:
            scorers.append(load_clip(model, device))
        return scorers[0]

    def score_all(signature: dict[str, Any]) -> None:
        for name in names:
            folder = out / name
            clip_values(load, folder / "manifest.jsonl", folder, folder / CLIP_FILE, signature, progress)

    if state.is_main_process:
        if signature["files"] is None:  # a Hub id not cached yet: its files are known once downloaded
            load()
            signature = clip_signature(model)
        score_all(signature)
        # Online, the load may have fetched a newer commit of a Hub id than the snapshot the reused lines were
        # made with: every value again with the commit loaded (no earlier line matches its fingerprint).
        if scorers and (loaded := clip_signature(model)) != signature:
            score_all(loaded)
    scorers.clear()  # let the model go before the report
    state.wait_for_everyone()
    lines = {name: read_jsonl_dicts(out / name / CLIP_FILE) for name in names}
    # Said once a run, reused lines included: a long prompt's CLIPSIM judges its first 77 tokens only.
    truncated = len(
        {line["prompt"] for name in names for line in lines[name] if line.get("prompt_truncated")}
    )
    if truncated and state.is_main_process:
        Console(stderr=True, highlight=False).print(
            f"[yellow]note:[/yellow] {truncated} prompt(s) longer than CLIP's text length (77 tokens for "
            "OpenAI's CLIP): CLIPSIM compares the video with their first tokens only"
        )
    return clip_summary(model, lines, clusters, truncated, groups)
