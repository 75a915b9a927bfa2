"""Tiny video-VLMs built from configs (no download), for tests and as the toy world's VLM base.

Same transformers classes as the real checkpoints (``Qwen2VLForConditionalGeneration`` +
``Qwen2VLProcessor``, and the Qwen2.5-VL / Qwen3-VL / Qwen3.5 / LLaVA-OneVision / LLaVA-NeXT-Video
equivalents), saved with
``save_pretrained`` so that ``AutoModelForImageTextToText`` + ``AutoProcessor`` load them offline.
The tokenizer is a byte-level BPE trained on the spot with ``tokenizers`` (so any text encodes) and
wrapped in ``Qwen2Tokenizer`` with a small ChatML chat template.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from videolift.models.tiny_cogvideox import DEFAULT_WORDS

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "llava_onevision", "llava_next_video")

# Fixed ids: the first tokens of the vocabulary, so they always fit a tiny vocab.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<image>",
    "<video>",
)

# ChatML in the shape of Qwen2-VL's own template: a default system turn, media placeholders where
# the content list puts them. LLaVA checkpoints render ``<video>`` instead of the Qwen markers.
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}IMAGE"
    "{% elif content['type'] == 'video' %}VIDEO"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_MEDIA = {
    "qwen": ("<|vision_start|><|image_pad|><|vision_end|>", "<|vision_start|><|video_pad|><|vision_end|>"),
    "llava": ("<image>\n", "<video>\n"),
}

# Text the tokenizer is trained on: the critic's questions and answers and the toy world's words.
_CORPUS_EXTRA = """
Please identify the semantic consistency issues in this video, focusing on the alignment between the text
and the visual content. Specifically, point out any discrepancies regarding the subject (e.g., person or
animal), quantity, color, scene description, style, and other relevant aspects.
Please identify the motion issues in this video, focusing on the continuity and smoothness of actions, as
well as their coherence and adherence to the laws of physics.
Please identify the fidelity issues in this video, assessing the realism of the content, including people,
animals, and other objects. Highlight any problems such as missing limbs, deformed hands or faces, or other
unrealistic elements. Rate this video. Semantic consistency: Motion smoothness: Video fidelity:
Good. Normal. Bad. Describe the video. The video shows no clear problem. minor major wrong missing
blurry jumps stutters flickers distorted smooth matches does not match instead expected should be
"""


@dataclass
class TinyVLMConfig:
    """Sizes of a tiny VLM. Defaults: ~0.2 M parameters, 8 frames at 56x56 -> 16 video tokens (Qwen)."""

    family: str = "qwen2_vl"
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_dim: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    patch_size: int = 14
    temporal_patch_size: int = 2  # Qwen-VL: frames per vision slice (the tower attends within a slice)
    frame_size: int = 56  # frames are resized to frame_size x frame_size
    # Rotary bases. A tiny head has few frequencies; with the usual 10000 the (M-)RoPE sections for a
    # few rows/columns of video tokens rotate by almost nothing, so attention cannot tell where a token is.
    rope_theta: float = 10000.0
    vision_rope_theta: float = 10000.0  # Qwen-VL vision tower (axial 2D RoPE)
    vocab_size: int = 512  # BPE target size (the trained vocabulary may come out smaller)
    max_positions: int = 2048
    words: list[str] = field(default_factory=lambda: list(DEFAULT_WORDS))
    corpus: list[str] = field(default_factory=list)  # extra training text for the tokenizer
    # Scale of the random LM head. At 1 (std 0.02) every logit of a unit-RMS hidden state stays near 0, so an
    # adapter that leaves the head frozen (LoRA) cannot make any answer likely, only nudge which is likeliest;
    # a pretrained VLM's head can. 10 lets LoRA learn as on a real base.
    head_scale: float = 1.0


def build_tokenizer(cfg: TinyVLMConfig):
    """Byte-level BPE trained on the questions and toy words, wrapped in ``Qwen2Tokenizer``."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    # Train with Qwen2Tokenizer's own pre-tokenizer so the merges apply to the same pieces.
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [_CORPUS_EXTRA, " ".join(cfg.words), *cfg.corpus]
    bpe.train_from_iterator(corpus * 4, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    media = _MEDIA["qwen" if cfg.family.startswith("qwen") else "llava"]
    tokenizer.chat_template = _CHAT_TEMPLATE.replace("IMAGE", media[0]).replace("VIDEO", media[1])
    return tokenizer


def _text_config(cfg: TinyVLMConfig, tokenizer, **extra) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **extra,
    )


def _mrope(cfg: TinyVLMConfig, **extra: Any) -> dict[str, Any]:
    """Multimodal RoPE parameters: mrope_section splits the rotary half-dimension into (time, height,
    width) and must sum to head_dim / 2."""
    half = cfg.hidden // cfg.heads // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    return {"rope_type": "default", "mrope_section": section, "rope_theta": cfg.rope_theta, **extra}


def _qwen(cfg: TinyVLMConfig, tokenizer, qwen25: bool):
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    rope = _mrope(cfg)
    vision = dict(
        depth=cfg.vision_layers,
        hidden_size=cfg.vision_dim if qwen25 else cfg.hidden,
        num_heads=cfg.vision_heads,
        patch_size=cfg.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=cfg.temporal_patch_size,
        in_channels=3,
        rope_parameters={"rope_type": "axial", "rope_theta": cfg.vision_rope_theta},
    )
    if qwen25:
        vision |= dict(
            intermediate_size=cfg.vision_dim * 2, out_hidden_size=cfg.hidden, fullatt_block_indexes=[0]
        )
    else:
        vision |= dict(embed_dim=cfg.vision_dim, mlp_ratio=2)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config_cls = Qwen2_5_VLConfig if qwen25 else Qwen2VLConfig
    config = config_cls(
        text_config=_text_config(cfg, tokenizer, rope_parameters=rope),
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model_cls = Qwen2_5_VLForConditionalGeneration if qwen25 else Qwen2VLForConditionalGeneration
    pixels = cfg.frame_size * cfg.frame_size
    sizes = dict(
        min_pixels=pixels,
        max_pixels=pixels,
        patch_size=cfg.patch_size,
        temporal_patch_size=cfg.temporal_patch_size,
        merge_size=2,
    )
    processor_cls = Qwen2_5_VLProcessor if qwen25 else Qwen2VLProcessor
    processor = processor_cls(
        image_processor=Qwen2VLImageProcessor(**sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes, cap_pixels_per_frame=False),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    return model_cls(config), processor


def _qwen3(cfg: TinyVLMConfig, tokenizer, qwen35: bool):
    """Qwen3-VL (interleaved M-RoPE, DeepStack mergers) and Qwen3.5 (its language model mixes gated
    linear-attention and full-attention layers, no DeepStack); both put timestamps in the prompt."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
    )
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    head_dim = cfg.hidden // cfg.heads
    rope = _mrope(cfg, mrope_interleaved=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    grid = cfg.frame_size // cfg.patch_size
    text = _text_config(cfg, tokenizer, rope_parameters=rope, head_dim=head_dim)
    vision = dict(
        depth=cfg.vision_layers, hidden_size=cfg.vision_dim, intermediate_size=cfg.vision_dim * 2,
        num_heads=cfg.vision_heads, patch_size=cfg.patch_size, spatial_merge_size=2,
        temporal_patch_size=cfg.temporal_patch_size, out_hidden_size=cfg.hidden,
        num_position_embeddings=grid * grid,
    )  # fmt: skip
    if qwen35:  # every other layer linear attention (the real ones: 3 of 4)
        text |= dict(linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
                     linear_num_value_heads=4, full_attention_interval=2)  # fmt: skip
    else:
        vision["deepstack_visual_indexes"] = [0]
    config_cls, model_cls = (
        (Qwen3_5Config, Qwen3_5ForConditionalGeneration)
        if qwen35
        else (Qwen3VLConfig, Qwen3VLForConditionalGeneration)
    )
    config = config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    pixels = cfg.frame_size * cfg.frame_size
    sizes = dict(patch_size=cfg.patch_size, temporal_patch_size=cfg.temporal_patch_size, merge_size=2)
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels, **sizes),
        # The budget counts every frame of a video: per frame it is pixels, at any frame count up to 64.
        video_processor=Qwen3VLVideoProcessor(
            size={"shortest_edge": pixels, "longest_edge": pixels * 64}, **sizes
        ),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    return model_cls(config), processor


def _llava(cfg: TinyVLMConfig, tokenizer, next_video: bool):
    from transformers import (
        CLIPVisionConfig,
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        SiglipVisionConfig,
    )

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    size = {"height": cfg.frame_size, "width": cfg.frame_size}
    patches = (cfg.frame_size // cfg.patch_size) ** 2
    vision = dict(
        hidden_size=cfg.vision_dim,
        intermediate_size=cfg.vision_dim * 2,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.frame_size,
        patch_size=cfg.patch_size,
    )
    text = _text_config(cfg, tokenizer, model_type="qwen2")
    pinpoints = [[cfg.frame_size, cfg.frame_size]]
    if next_video:
        # A CLIP tower has a CLS token: "default" drops it (the processor counts it as an extra token).
        config = LlavaNextVideoConfig(
            vision_config=CLIPVisionConfig(**vision, projection_dim=cfg.vision_dim).to_dict(),
            text_config=text,
            image_token_index=ids["<image>"],
            video_token_index=ids["<video>"],
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,
            image_grid_pinpoints=pinpoints,
            spatial_pool_stride=2,
            image_seq_length=patches,
            video_seq_length=patches // 4,
        )
        model = LlavaNextVideoForConditionalGeneration(config)
        processor = LlavaNextVideoProcessor(
            video_processor=LlavaNextVideoVideoProcessor(
                size={"shortest_edge": cfg.frame_size}, crop_size=size
            ),
            image_processor=LlavaNextImageProcessor(
                size={"shortest_edge": cfg.frame_size}, crop_size=size, image_grid_pinpoints=pinpoints
            ),
            tokenizer=tokenizer,
            patch_size=cfg.patch_size,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=tokenizer.chat_template,
        )
        return model, processor
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**vision).to_dict(),
        text_config=text,
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
    )
    model = LlavaOnevisionForConditionalGeneration(config)
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=pinpoints),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=patches,
        vision_feature_select_strategy="full",
        chat_template=tokenizer.chat_template,
    )
    return model, processor


def build_tiny_vlm(out_dir: str | Path | None = None, config: TinyVLMConfig | None = None, seed: int = 0):
    """Build (and, with ``out_dir``, save) a randomly initialised tiny VLM; returns (model, processor)."""
    cfg = config or TinyVLMConfig()
    if cfg.family not in FAMILIES:
        raise ValueError(f"unknown tiny VLM family {cfg.family!r}; known: {', '.join(FAMILIES)}")
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(cfg)
    if cfg.family in ("qwen3_vl", "qwen3_5"):
        model, processor = _qwen3(cfg, tokenizer, qwen35=cfg.family == "qwen3_5")
    elif cfg.family.startswith("qwen"):
        model, processor = _qwen(cfg, tokenizer, qwen25=cfg.family == "qwen2_5_vl")
    else:
        model, processor = _llava(cfg, tokenizer, next_video=cfg.family == "llava_next_video")
    if cfg.head_scale != 1.0:
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(cfg.head_scale)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    if out_dir is not None:
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        (out_dir / "videolift_tiny.json").write_text(json.dumps(asdict(cfg), indent=1))
    return model, processor
