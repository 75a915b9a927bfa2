"""Video-VLM families behind one small interface, keyed by ``config.model_type``.

Every family loads with ``AutoModelForImageTextToText`` + ``AutoProcessor`` and is prompted through the
checkpoint's own chat template, so what differs between families is small: which modules are the
vision tower and the projector (frozen by default), which linear layers LoRA targets (the language
model's), and processor options for videos. A checkpoint of an unknown type falls back to
``GenericVLM``, which finds those modules by the names transformers' VLMs commonly use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from videolift.core.errors import VideoliftError
from videolift.core.video import FrameTiming


class VLMFamily:
    """How to prompt and fine-tune one family. Module paths are as in ``model.named_modules()``."""

    name: ClassVar[str] = "generic"
    model_types: ClassVar[tuple[str, ...]] = ()
    vision_tower: ClassVar[tuple[str, ...]] = ()
    projector: ClassVar[tuple[str, ...]] = ()
    language_model: ClassVar[str] = "model.language_model"
    # Whether the forward reads a video's features from ``get_video_features(...).pooler_output`` alone,
    # one tensor per video, so that features computed before can be given as ``mm_encoder_outputs``
    # (``critic.vision_cache``; tested against encoding with each batch).
    caches_video_features: ClassVar[bool] = False

    def messages(self, user_text: str, answer: str | None = None) -> list[dict[str, Any]]:
        """A user turn with the video before the text (LiFT's layout), optionally the assistant's answer."""
        turns: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": user_text}]}
        ]
        if answer is not None:
            turns.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return turns

    def video_kwargs(self, num_frames: int, timing: FrameTiming | None = None) -> dict[str, Any]:
        """Keyword arguments for the processor call with one video of ``num_frames`` frames sampled as
        ``timing`` says. Frames are sampled by videolift, so the processor's own sampling is off."""
        return {"do_sample_frames": False}

    def checkpoint_defaults(self, processor: Any, model: str | Path) -> None:
        """Settle what the checkpoint's processor leaves to chance, before any budget is applied (none here)."""

    def configure_processor(self, processor: Any, max_pixels: int | None, min_pixels: int | None) -> None:
        """Apply a per-frame pixel budget to the processor (saved with the critic)."""
        if max_pixels is not None or min_pixels is not None:
            raise VideoliftError(
                f"{self.name}: this family resizes frames to a fixed size; drop --max-pixels"
            )

    def _modules(self, model: Any, prefixes: tuple[str, ...]) -> list[str]:
        names = {n for n, _ in model.named_modules()}
        return [p for p in prefixes if p in names]

    def vision_modules(self, model: Any) -> list[str]:
        return self._modules(model, self.vision_tower)

    def projector_modules(self, model: Any) -> list[str]:
        """The projector's modules; a container (Qwen3-VL's DeepStack mergers) as its members, which is
        what peft's ``modules_to_save`` can copy."""
        import torch

        out = []
        for name in self._modules(model, self.projector):
            module = model.get_submodule(name)
            if isinstance(module, torch.nn.ModuleList | torch.nn.ModuleDict):
                out += [f"{name}.{child}" for child, _ in module.named_children()]
            else:
                out.append(name)
        return out

    def lora_targets(self, model: Any, *, vision: bool = False) -> list[str]:
        """Names of the language model's linear layers (and, with ``vision``, the vision tower's)."""
        import torch

        roots = [self.language_model] + (self.vision_modules(model) if vision else [])
        skip = tuple(p + "." for p in self.projector_modules(model))
        out = []
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or name.startswith(skip):
                continue
            if any(name.startswith(root + ".") for root in roots):
                out.append(name)
        if not out:
            raise VideoliftError(f"{self.name}: found no linear layers under {roots} to put LoRA on")
        return out

    def lora_target_regex(self, model: Any, *, vision: bool = False) -> str:
        """The LoRA targets as one regex over module names (what peft stores in adapter_config.json);
        layer names are generalised over the layer index so the pattern stays short."""
        escaped = {re.escape(n) for n in self.lora_targets(model, vision=vision)}
        general = sorted({re.sub(r"\\\.\d+\\\.", lambda _: r"\.\d+\.", n) for n in escaped})
        return "^(?:" + "|".join(general) + ")$"


def video_metadata(timing: FrameTiming) -> Any:
    """Where the frames were taken, as transformers' video processors read it: Qwen2.5-VL spaces its
    temporal positions by it (``second_per_grid_ts``), Qwen3-VL writes timestamps from it. Without it
    the processor assumes 24 fps, which puts a clip's frames much closer together in time than they are."""
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(total_num_frames=timing.total, fps=timing.fps, frames_indices=list(timing.indices))


class QwenVL(VLMFamily):
    """Qwen2-VL and Qwen2.5-VL: the projector (``merger``) lives inside the vision module; the frames'
    timing is passed along (Qwen2.5-VL's temporal positions follow it)."""

    name = "qwen_vl"
    model_types = ("qwen2_vl", "qwen2_5_vl")
    vision_tower = ("model.visual",)
    projector = ("model.visual.merger",)
    caches_video_features = True

    def checkpoint_defaults(self, processor: Any, model: str | Path) -> None:
        """A checkpoint without video processor settings of its own (Qwen's Qwen2-VL and Qwen2.5-VL repos ship
        only the image processor's ``preprocessor_config.json``) gets from transformers a video processor built
        from the image settings: an image's pixel range per frame (3,136 to 12,845,056) where Qwen feeds videos
        100,352 to 602,112 (qwen-vl-utils' VIDEO_MIN_PIXELS / VIDEO_MAX_PIXELS, the video processor's own
        defaults). A 1080p clip's frames would keep their full size (3.4x the tokens Qwen's video budget gives
        them) and a small clip would not be enlarged; the video defaults are restored."""
        if not ships_video_processor(model):
            video = processor.video_processor
            video.size = dict(type(video).size)

    def configure_processor(self, processor: Any, max_pixels: int | None, min_pixels: int | None) -> None:
        video = processor.video_processor
        video.do_sample_frames = False  # the frames given are the frames seen, also for the saved processor
        size = dict(video.size)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        elif max_pixels is not None:  # the processor's own minimum gives way to a smaller maximum
            size["shortest_edge"] = min(size.get("shortest_edge", 0), int(max_pixels))
        if size.get("shortest_edge", 0) > size.get("longest_edge", 1 << 62):
            raise VideoliftError(
                f"min pixels {size['shortest_edge']} exceed max pixels {size['longest_edge']}"
            )
        video.size = size

    def video_kwargs(self, num_frames: int, timing: FrameTiming | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"do_sample_frames": False}
        if timing is not None:  # else (an array without a frame rate) the processor assumes 24 fps and warns
            kwargs["video_metadata"] = [video_metadata(timing)]
        return kwargs


class Qwen3VL(QwenVL):
    """Qwen3-VL and Qwen3.5: the prompt carries a timestamp per temporal patch (``<1.3 seconds>``), computed from
    the sampled frames' indices and the video's frame rate, so videolift passes both; Qwen3-VL's
    DeepStack mergers are part of the projector. Its video processor's pixel budget counts all frames together,
    so the per-frame budget is scaled by the frame count of each call."""

    name = "qwen3_vl"
    model_types = ("qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")
    projector = ("model.visual.merger", "model.visual.deepstack_merger_list")
    caches_video_features = False  # its DeepStack features go into the language model's layers too

    def checkpoint_defaults(self, processor: Any, model: str | Path) -> None:
        """Qwen3-VL checkpoints ship their video processor's settings (a budget for the whole video, unlike
        its class defaults): nothing to restore."""

    def __init__(self) -> None:
        self.per_frame: dict[str, int] = {}  # the budget per frame; empty: the processor's own
        self.total: dict[str, int] = {}  # the processor's own budget for a whole video

    def configure_processor(self, processor: Any, max_pixels: int | None, min_pixels: int | None) -> None:
        if max_pixels is not None and min_pixels is not None and min_pixels > max_pixels:
            raise VideoliftError(f"min pixels {min_pixels} exceed max pixels {max_pixels}")
        # Saved with it, so plain transformers feeds a critic the frames it is given, as videolift does
        # (the processor's default samples its own at 2 fps and drops some of them).
        processor.video_processor.do_sample_frames = False
        budget = {"longest_edge": max_pixels, "shortest_edge": min_pixels}
        self.per_frame = {k: int(v) for k, v in budget.items() if v is not None}
        self.total = {k: int(v) for k, v in dict(processor.video_processor.size).items() if k in budget and v}

    def frame_budget(self, num_frames: int) -> dict[str, int]:
        """The processor's ``size`` for a video of ``num_frames`` frames under the per-frame budget."""
        size = self.total | {k: v * num_frames for k, v in self.per_frame.items()}
        size["shortest_edge"] = min(size.get("shortest_edge", 0), size.get("longest_edge", 1 << 62))
        return size

    def video_kwargs(self, num_frames: int, timing: FrameTiming | None = None) -> dict[str, Any]:
        kwargs = super().video_kwargs(num_frames, timing) | {"cap_pixels_per_frame": False}
        if self.per_frame:
            kwargs["size"] = self.frame_budget(num_frames)
        return kwargs


class LlavaVideo(VLMFamily):
    """LLaVA-OneVision and LLaVA-NeXT-Video: a CLIP/SigLIP tower, a projector, a separate LM."""

    name = "llava_video"
    model_types = ("llava_onevision", "llava_next_video")
    vision_tower = ("model.vision_tower",)
    projector = ("model.multi_modal_projector", "model.vision_resampler")


class GenericVLM(VLMFamily):
    """Any other ``AutoModelForImageTextToText`` checkpoint that takes videos: modules found by name."""

    name = "generic"
    vision_tower = ("model.visual", "model.vision_tower", "model.vision_model", "vision_tower", "visual")
    projector = (
        "model.multi_modal_projector",
        "model.visual.merger",
        "multi_modal_projector",
        "model.connector",
    )

    def lora_targets(self, model: Any, *, vision: bool = False) -> list[str]:
        names = {n for n, _ in model.named_modules()}
        for root in ("model.language_model", "language_model", "model.text_model"):
            if root in names:
                self.language_model = root
                break
        return super().lora_targets(model, vision=vision)


FAMILIES: list[type[VLMFamily]] = [QwenVL, Qwen3VL, LlavaVideo]


def get_family(model_type: str) -> VLMFamily:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family()
    return GenericVLM()


def ships_video_processor(model: str | Path) -> bool:
    """Whether a checkpoint (a local directory or a Hub id) holds video processor settings of its own:
    ``video_preprocessor_config.json``, or ``processor_config.json`` with a ``video_processor`` entry (what
    ``save_pretrained`` writes since transformers 5). Without either, transformers builds the video processor
    from the image processor's ``preprocessor_config.json``."""
    import json

    from transformers.utils import cached_file

    def found(name: str) -> str | None:
        return cached_file(
            str(model),
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )

    if found("video_preprocessor_config.json"):
        return True
    nested = found("processor_config.json")
    if nested is None:
        return False
    try:
        return "video_processor" in json.loads(Path(nested).read_text())
    except (OSError, ValueError):
        return False


def model_type_of(model: str | Path) -> str:
    """``config.model_type`` of a local directory or Hub id, without loading weights."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model)).model_type
    except (OSError, ValueError) as exc:
        from videolift.core.hub import hub_failure

        raise VideoliftError(
            f"cannot read the model config of {str(model)!r}: not a local model directory and not "
            f"reachable on the Hub ({hub_failure(str(model), exc)})"
        ) from None


def load_vlm(model: str | Path, *, dtype: Any = "float32", device: Any = "cpu"):
    """(model, processor) with ``AutoModelForImageTextToText`` + ``AutoProcessor``, clear errors."""
    from transformers import AutoModelForImageTextToText

    from videolift.models.base import resolve_dtype

    model_type = model_type_of(model)  # a readable error before the heavy load
    # the processor first: an image-only or text model is refused before its weights load
    processor = video_vlm_processor(model, model_type)
    try:
        get_family(model_type).checkpoint_defaults(processor, model)
        vlm = AutoModelForImageTextToText.from_pretrained(str(model), dtype=resolve_dtype(dtype))
    except (OSError, ValueError) as exc:
        raise _not_loaded(model, model_type, exc) from None
    return vlm.to(device), processor


def video_vlm_processor(model: str | Path, model_type: str | None = None) -> Any:
    """The processor of a video VLM (directory or Hub id), read without its weights; a text-only or
    image-only model (no video processor) is refused. For checks before a model is loaded for real."""
    from transformers import AutoProcessor

    model_type = model_type or model_type_of(model)
    try:
        processor = AutoProcessor.from_pretrained(str(model))
    except (OSError, ValueError) as exc:  # a text model's: "Unrecognized processing class"
        raise _not_loaded(model, model_type, exc) from None
    if getattr(processor, "video_processor", None) is None:
        raise VideoliftError(
            f"{model}: its processor ({model_type}) has no video processor: not a video VLM. "
            f"Video VLMs with their own support: {_known()}"
        )
    return processor


def _known() -> str:
    return ", ".join(sorted({t for f in FAMILIES for t in f.model_types}))


def _not_loaded(model: str | Path, model_type: str, exc: Exception) -> VideoliftError:
    return VideoliftError(
        f"cannot load VLM {str(model)!r} ({model_type}): {str(exc).splitlines()[0].rstrip('.')}. "
        f"Video VLMs with their own support: {_known()}; others load through AutoModelForImageTextToText"
    )
