"""Encode once, train many steps: VAE latent-distribution parameters and text embeddings on disk.

One safetensors file per video (``latents/<key>``) and per distinct prompt (``text/<key>``). Keys
hash the model's frozen components (configs + weight-file contents, a Hub id's in its cached snapshot),
the video (path + size + mtime, or its content) and the preprocessing, so a changed video, model or
resize invalidates exactly its entries. Content hashes are memoised by (path, size, mtime) in one JSON
file beside the cache, so each file is read for hashing once, not on every run. Each file is written
atomically: an interrupted build resumes where it stopped; ranks split the missing entries between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from videolift.core.errors import DataError, VideoError, VideoliftError
from videolift.core.files import HashMemo
from videolift.core.hub import base_directory
from videolift.core.jsonl import atomic_write
from videolift.core.memory import clips_per_call
from videolift.core.video import read_video
from videolift.models.base import SamplerSettings

READ_BATCH = 16  # videos read and preprocessed at a time while caching
READ_BYTES = 256 << 20  # ... or fewer, once they hold this much (six clips of 49 x 480 x 720)
STALE_TEMPORARY_SECONDS = 3600  # a half-written entry this old belongs to no live run


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _config_of(component: Any) -> Any:
    config = getattr(component, "config", None)
    if config is not None:
        config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        config.pop("_name_or_path", None)  # where it was loaded from is not what it is
        return config
    if hasattr(component, "model_max_length"):  # tokenizers
        return {"vocab": len(component), "max_length": component.model_max_length}
    return type(component).__name__


def model_fingerprint(model: str, pipe: Any, trained: Any = None, memo: Path | HashMemo | None = None) -> str:
    """Identity of what encodes videos and prompts: class, config and dtype of every pipeline
    component (the scheduler aside) and the content of their weight files — except those of the
    ``trained`` module (or modules: a tuple), whose weights the cache does not depend on.

    A model is known by what it holds, not where it lies or what it is called: an exported copy of the
    same encoders (an aligned model aligned again, a pretraining phase continued) reuses the cache, and a
    changed encoder misses it. A Hub id is read in its snapshot in the local Hub cache (where the
    pipeline was loaded from), so it has the key of a local copy of the same files, and a repository
    updated upstream gets a new one; only a Hub id with no snapshot there is known by its name. Content
    hashes are memoised in ``memo`` by (path, size, mtime; a snapshot's symlinks followed to their
    blobs), so multi-GB weights are read once, not on every run.
    """
    root = Path(model)
    if not root.exists():
        root = base_directory(model) or root
    parts: dict[str, Any] = {} if root.exists() else {"model": model}
    hashes = memo if isinstance(memo, HashMemo) else HashMemo(memo)
    skipped = trained if isinstance(trained, tuple) else (trained,)
    for name, component in sorted(pipe.components.items()):
        if component is None or name == "scheduler":
            continue
        entry = {"type": type(component).__name__, "config": _config_of(component)}
        if isinstance(component, torch.nn.Module) and not any(component is m for m in skipped):
            entry["dtype"] = str(next(component.parameters()).dtype)
            if (root / name).is_dir():
                # Weights only: a saved config.json also records where it was loaded from
                # (_name_or_path), and the config itself is already in the entry.
                entry["files"] = sorted(
                    (f.name, hashes.hash(f))
                    for f in (root / name).iterdir()
                    if f.is_file() and f.suffix != ".json"
                )
            elif root.exists():  # weights we cannot see: fall back to where the model lies
                parts["model"] = str(root.resolve())
        parts[name] = entry
    hashes.save()
    return _digest(parts)[:32]


def file_identity(path: Path, hash_content: bool, memo: HashMemo | None = None) -> Any:
    """What a cached video is known by: its SHA-256 (memoised in ``memo``), or where it lies."""
    if hash_content:
        return (memo or HashMemo(None)).hash(path)
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def preprocess_video(
    frames: np.ndarray,
    *,
    num_frames: int | None = None,
    stride: int = 1,
    height: int | None = None,
    width: int | None = None,
) -> np.ndarray:
    """Every ``stride``-th frame, cut to the first ``num_frames``, resized to cover (height, width)
    and centre-cropped. uint8 (T, H, W, 3) in and out."""
    setting = {"frames": num_frames, "stride": stride, "height": height, "width": width}
    t, out_h, out_w = preprocessed_shape(*frames.shape[:3], setting)
    frames = frames[::stride][:t]
    h, w = frames.shape[1:3]
    if (h, w) == (out_h, out_w):
        return np.ascontiguousarray(frames)
    scale = max(out_h / h, out_w / w)
    size = (max(out_h, round(h * scale)), max(out_w, round(w * scale)))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - out_h) // 2, (size[1] - out_w) // 2
    x = x[:, :, top : top + out_h, left : left + out_w]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def preprocessed_shape(
    num_frames: int, height: int, width: int, preprocessing: dict[str, Any]
) -> tuple[int, int, int]:
    """(frames, height, width) that ``preprocess_video`` makes of a clip of this size: its rule, usable
    on a file's metadata without decoding it. ValueError for a clip too short."""
    p = preprocessing
    t = -(-num_frames // p["stride"])  # frames[::stride]
    if p["frames"] is not None:
        if t < p["frames"]:
            raise ValueError(f"has {t} frames (stride {p['stride']}), fewer than {p['frames']}")
        t = p["frames"]
    resized = p["height"] is not None and p["width"] is not None
    return (t, p["height"], p["width"]) if resized else (t, height, width)


@dataclass
class CacheStats:
    videos_encoded: int = 0
    videos_cached: int = 0
    prompts_encoded: int = 0
    prompts_cached: int = 0


class EncodingCache:
    """Paths of cached tensors for one model fingerprint and one preprocessing."""

    def __init__(
        self,
        root: str | Path,
        fingerprint: str,
        preprocessing: dict,
        *,
        hash_content: bool = False,
        memo: Path | None = None,
    ):
        """``hash_content``: key videos by their bytes, so copied or moved videos hit the cache;
        ``memo``: where those hashes are remembered by (path, size, mtime) between runs."""
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.preprocessing = dict(preprocessing)
        self.hash_content = hash_content
        self.memo = memo
        self._hashes = HashMemo(memo if hash_content else None)

    def latent_path(self, video: Path) -> Path:
        identity = file_identity(video, self.hash_content, self._hashes)
        key = _digest([self.fingerprint, identity, self.preprocessing])
        return self.root / "latents" / f"{key[:40]}.safetensors"

    def text_path(self, prompt: str) -> Path:
        return self.root / "text" / f"{_digest([self.fingerprint, prompt])[:40]}.safetensors"

    def build(
        self,
        spec: Any,
        pipe: Any,
        items: list[tuple[Path, str]],
        *,
        extra_prompts: tuple[str, ...] = (),
        rank: int = 0,
        world: int = 1,
        prompt_batch: int = 8,
        video_batch: int | None = None,
        barrier: Callable[[], None] | None = None,
        before_encode: Callable[[], None] | None = None,
        progress: bool = True,
        listed: dict[Path, tuple[Path, int | None]] | None = None,
    ) -> tuple[list[tuple[Path, Path]], CacheStats]:
        """Encode what is missing for (video path, prompt) items; this rank does every world-th entry.

        Returns the (latent file, text file) of every item, and counts of this rank's work.
        ``extra_prompts`` are encoded too (e.g. the empty prompt); find them with ``text_path``.
        ``barrier`` (multi-process) runs after every rank has listed what is missing and before any
        rank writes, so all ranks split the same list.
        ``before_encode`` runs once, only if there is something to encode (e.g. move encoders to GPU).
        ``video_batch`` clips go through the VAE at once (default: by their size, ``clips_per_call``).
        ``listed``: the file and line naming each video, for errors (a video that opened when checked and
        fails to decode now).
        """
        from tqdm import tqdm

        if rank == 0:  # one directory listing, not one per rank
            self._remove_stale_temporaries()
        paths = [(self.latent_path(v), self.text_path(p)) for v, p in items]
        self._hashes.save()
        stats = CacheStats()
        todo_videos = sorted({(lat, v) for (lat, _), (v, _) in zip(paths, items, strict=True)})
        all_prompts = {(txt, p) for (_, txt), (_, p) in zip(paths, items, strict=True)}
        all_prompts |= {(self.text_path(p), p) for p in extra_prompts}
        todo_videos = [t for t in todo_videos if not t[0].exists()]
        todo_prompts = sorted(t for t in all_prompts if not t[0].exists())
        stats.videos_cached = len({lat for lat, _ in paths}) - len(todo_videos)
        stats.prompts_cached = len(all_prompts) - len(todo_prompts)
        if barrier is not None:
            barrier()
        todo_videos, todo_prompts = todo_videos[rank::world], todo_prompts[rank::world]
        if (todo_videos or todo_prompts) and before_encode is not None:
            before_encode()

        for i in range(0, len(todo_prompts), prompt_batch):
            chunk = todo_prompts[i : i + prompt_batch]
            embeds = spec.encode_prompts(pipe, [p for _, p in chunk]).cpu()
            for (path, prompt), embed in zip(chunk, embeds, strict=True):
                embed, rows = trim_zero_rows(embed)
                _save(path, "text", embed, {"prompt": prompt, **rows})
            stats.prompts_encoded += len(chunk)

        bar = tqdm(
            total=len(todo_videos),
            desc=f"encode videos (rank {rank})",
            disable=not progress or not todo_videos,
        )
        for chunk, clips in self._read_chunks(spec, pipe, todo_videos, listed or {}):
            # Batch the VAE over clips of one shape (one call per clip otherwise), as many as fit.
            groups: dict[tuple[int, ...], list[int]] = {}
            for j, clip in enumerate(clips):
                groups.setdefault(clip.shape, []).append(j)
            for shape, members in groups.items():
                size = video_batch or clips_per_call(*shape[:3], cap=READ_BATCH)
                for k in range(0, len(members), size):
                    batch = members[k : k + size]
                    params = _encode(spec, pipe, [clips[j] for j in batch], alone=size == 1)
                    for j, p in zip(batch, params, strict=True):
                        path, video = chunk[j]
                        _save(path, "params", p.clone(), {"video": str(video)})
            stats.videos_encoded += len(chunk)
            bar.update(len(chunk))
        bar.close()
        return paths, stats

    def _read_chunks(
        self, spec: Any, pipe: Any, todo: list[tuple[Path, Path]], listed: dict[Path, tuple[Path, int | None]]
    ) -> Iterator[tuple[list[tuple[Path, Path]], list[np.ndarray]]]:
        """(entries, their preprocessed clips), READ_BATCH at a time, or fewer once they hold READ_BYTES (16
        real-size clips of 49 x 480 x 720 were 800 MB a rank)."""
        chunk: list[tuple[Path, Path]] = []
        clips: list[np.ndarray] = []
        for entry in todo:
            chunk.append(entry)
            clips.append(self._load_video(spec, pipe, entry[1], listed.get(entry[1])))
            if len(chunk) == READ_BATCH or sum(c.nbytes for c in clips) >= READ_BYTES:
                yield chunk, clips
                chunk, clips = [], []
        if chunk:
            yield chunk, clips

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writes a kill interrupted (never read: entries open by exact name), once
        they are old enough not to be another live run's writes in progress."""
        cutoff = time.time() - STALE_TEMPORARY_SECONDS
        for tmp in [*self.root.glob("latents/.*.tmp"), *self.root.glob("text/.*.tmp")]:
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()

    def _load_video(
        self, spec: Any, pipe: Any, video: Path, listed: tuple[Path, int | None] | None = None
    ) -> np.ndarray:
        p = self.preprocessing
        needed = p["frames"] * p["stride"] if p["frames"] is not None else None  # the rest is never used
        try:
            frames = preprocess_video(
                read_video(video, needed),
                num_frames=p["frames"],
                stride=p["stride"],
                height=p["height"],
                width=p["width"],
            )
        except (ValueError, VideoError) as exc:
            message = str(exc) if isinstance(exc, VideoError) else f"{video}: {exc}"
            if listed is None:
                raise VideoliftError(message) from None
            raise DataError(message, file=listed[0], line=listed[1], field="video") from None
        t, h, w = frames.shape[:3]
        try:
            spec.check_sampling(pipe, SamplerSettings(frames=t, height=h, width=w))  # sizes; steps unused
        except VideoliftError as exc:
            raise VideoliftError(
                f"{video}: {t}x{h}x{w} cannot be encoded for training ({exc}); "
                "set --frames / --height / --width"
            ) from None
        return frames


def _encode(spec: Any, pipe: Any, clips: list[np.ndarray], *, alone: bool) -> torch.Tensor:
    """VAE parameters of ``clips``. Where clips of their size share calls (``alone`` False), a lone clip
    goes with a copy of itself: the CPU's kernels for a batch of one round differently (~1e-5) from
    those for two or more, which agree with one another, so a clip's latents would otherwise depend on
    how many clips were left to encode with it (after a kill mid-build, on another rank)."""
    if len(clips) == 1 and not alone:
        return spec.encode_videos(pipe, clips * 2).cpu()[:1]
    return spec.encode_videos(pipe, clips).cpu()


def _save(path: Path, name: str, tensor: torch.Tensor, metadata: dict[str, str]) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(save({name: tensor.contiguous()}, metadata=metadata))


def trim_zero_rows(embed: torch.Tensor) -> tuple[torch.Tensor, dict[str, str]]:
    """Drop the all-zero rows that end an embedding, and say how many rows it had.

    Wan zero-pads every prompt's embedding to 512 tokens (4 MB in bf16 for the 1.3B's UMT5) where a
    prompt is a few dozen: storing the rows up to the last non-zero one and padding back with zeros
    on load is lossless and makes the text cache about ten times smaller. Encoders whose padding
    positions carry values (CogVideoX's T5) are stored whole.
    """
    if embed.dim() < 2:
        return embed, {}
    nonzero = embed.reshape(embed.shape[0], -1).any(dim=1).nonzero()
    keep = int(nonzero[-1]) + 1 if len(nonzero) else 1
    if keep == embed.shape[0]:
        return embed, {}
    return embed[:keep].clone(), {"rows": str(embed.shape[0])}


def load_tensor(path: Path) -> torch.Tensor:
    with safe_open(str(path), framework="pt") as handle:
        tensor = handle.get_tensor(next(iter(handle.keys())))
        rows = (handle.metadata() or {}).get("rows")
    if rows is not None:  # trimmed by trim_zero_rows: pad back with the zeros it dropped
        pad = tensor.new_zeros(int(rows) - tensor.shape[0], *tensor.shape[1:])
        tensor = torch.cat([tensor, pad])
    return tensor


def tensor_shape(path: Path) -> tuple[int, ...]:
    """Shape of a cached tensor (as ``load_tensor`` returns it) from the file header (no data read)."""
    with safe_open(str(path), framework="pt") as handle:
        shape = tuple(handle.get_slice(next(iter(handle.keys()))).get_shape())
        rows = (handle.metadata() or {}).get("rows")
    return (int(rows), *shape[1:]) if rows is not None else shape


def common_shape(paths: list[Path], what: str) -> tuple[int, ...]:
    """The one shape all cached tensors share; VideoliftError naming two files if they differ."""
    shapes: dict[tuple[int, ...], Path] = {}
    for path in dict.fromkeys(paths):
        shapes.setdefault(tensor_shape(path), path)
        if len(shapes) > 1:
            (s1, p1), (s2, p2) = list(shapes.items())[:2]
            raise VideoliftError(
                f"{what} of different shapes cannot share a batch: {s1} ({_source(p1)}) vs {s2} ({_source(p2)}); "
                "set --frames / --height / --width so all videos are preprocessed to one size"
            )
    return next(iter(shapes))


def _source(path: Path) -> str:
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    return meta.get("video") or meta.get("prompt") or str(path)
