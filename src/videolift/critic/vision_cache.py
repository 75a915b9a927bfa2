"""A frozen vision tower's features of each training video, computed once and reused (``vision_cache_mb``).

With the vision tower and projector frozen (the default), a video's features are the same every time it is
seen, and training sees each video many times: LiFT's per-dimension layout asks three questions of it, and
training makes several passes (the demo's critic: 9 encodings of every video, ~24 % of its update time).
Here each video is encoded once: its features are kept, keyed by a digest of its processed pixels (its
``pixel_values_videos`` rows and grid, computed on the CPU by the batch-preparing thread, so a video
sampled or processed otherwise is another entry), and given to the model through transformers'
``mm_encoder_outputs`` input in place of the pixels. LRU, bounded in bytes, per process, kept on the CPU.

Only where it is exact: families whose forward reads the video features' ``pooler_output`` alone, one
tensor per video (``VLMFamily.caches_video_features``: Qwen2-VL, Qwen2.5-VL; Qwen3-VL's DeepStack features
are more), every vision-tower and projector weight frozen, and the weights whole in each process (not
sharded by FSDP or DeepSpeed). Elsewhere videos are encoded with each batch, as before.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: `critic.sft` loads this module with the CLI
    import torch

DIGESTS = "video_digests"  # the batch's key for its videos' digests (a list, popped before the model)
_VIDEO_INPUTS = ("pixel_values_videos", "video_grid_thw")


def video_digests(batch: dict[str, Any]) -> list[bytes] | None:
    """Each video's digest in a batch made by the collator (CPU tensors), or None for a batch without videos."""
    import torch

    pixels, grid = (batch.get(k) for k in _VIDEO_INPUTS)
    if pixels is None or grid is None:
        return None
    out = []
    for rows, thw in zip(torch.split(pixels, grid.prod(-1).tolist()), grid.tolist(), strict=True):
        h = hashlib.blake2b(f"{thw} {tuple(rows.shape)} {rows.dtype}".encode(), digest_size=16)
        h.update(rows.contiguous().view(torch.uint8).numpy())
        out.append(h.digest())
    return out


def cache_reason(accelerator: Any, model: Any, family: Any, max_bytes: int) -> str | None:
    """Why the video features of this run cannot be cached (``model``: the unwrapped one), or None."""
    from accelerate.utils import DistributedType

    if max_bytes <= 0:
        return "off (vision_cache_mb 0)"
    if not family.caches_video_features:
        return f"not for the {family.name} family"
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        return "not with sharded weights (FSDP, DeepSpeed)"
    frozen = [*family.vision_modules(model), *family.projector_modules(model)]
    if not frozen or any(p.requires_grad for n in frozen for p in model.get_submodule(n).parameters()):
        return "the vision tower or projector is trained"
    return None


class VideoFeatureCache:
    """The videos' features by digest; ``inputs`` turns a batch's pixels into its features."""

    def __init__(self, accelerator: Any, model: Any, max_bytes: int) -> None:
        self.accelerator, self.model, self.max_bytes = accelerator, model, max_bytes
        self.bytes = self.encoded = self.reused = 0
        self._items: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    def inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` (on the device, with its ``DIGESTS``) with ``mm_encoder_outputs`` in place of its
        pixels: the cached videos' features, the others' encoded now (once each, in one call)."""
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        batch = dict(batch)
        digests = batch.pop(DIGESTS, None)
        if digests is None:
            return batch
        pixels, grid = batch.pop("pixel_values_videos"), batch["video_grid_thw"]
        kept = {d: self._items[d] for d in digests if d in self._items}
        for d in kept:
            self._items.move_to_end(d)
        new: dict[bytes, int] = {}  # each video to encode, by its first row in the batch
        for i, d in enumerate(digests):
            if d not in kept:
                new.setdefault(d, i)
        found = {d: f.to(pixels.device, non_blocking=True) for d, f in kept.items()}
        if new:
            chunks, rows = torch.split(pixels, grid.prod(-1).tolist()), list(new.values())
            # Under the run's autocast, as the model's own forward encodes (mixed precision).
            with torch.no_grad(), self.accelerator.autocast():
                out = self.model.get_video_features(
                    torch.cat([chunks[i] for i in rows]), grid[rows], return_dict=True
                )
            for d, f in zip(new, out.pooler_output, strict=True):
                found[d] = f.detach()
                self._keep(d, found[d])
        self.encoded += len(new)
        self.reused += len(digests) - len(new)
        features = tuple(found[d] for d in digests)
        return batch | {"mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=features)}}

    def _keep(self, digest: bytes, features: torch.Tensor) -> None:
        if (size := _nbytes(features)) > self.max_bytes:
            return
        self._items[digest] = features.to("cpu")
        self.bytes += size
        while self.bytes > self.max_bytes:
            self.bytes -= _nbytes(self._items.popitem(last=False)[1])


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
