"""The sampling options `generate` and `eval` share, defined once so their names, checks and help agree.

Each is an ``Annotated`` type for a typer parameter: ``steps: Steps = 50``.
"""

from __future__ import annotations

from typing import Annotated

import typer

Steps = Annotated[int, typer.Option("--steps", min=1, help="Denoising steps.")]
Guidance = Annotated[
    float | None,
    typer.Option(
        "--guidance",
        help="Classifier-free guidance scale. Default: the family's (CogVideoX 6, Wan 5, Wan 2.2 A14B 4, LTX-Video 3).",
    ),
]
Guidance2 = Annotated[
    float | None,
    typer.Option(
        "--guidance-2",
        help="The low-noise expert's guidance scale, for two-expert Wan 2.2 (A14B). Default: Wan-AI's 3 "
        "(with --guidance 4).",
    ),
]
DynamicCfg = Annotated[
    bool, typer.Option("--dynamic-cfg/--no-dynamic-cfg", help="CogVideoX dynamic guidance (use_dynamic_cfg).")
]
Frames = Annotated[
    int | None,
    typer.Option(
        "--frames",
        min=1,
        help="Frames: 4k+1 for CogVideoX and Wan, 8k+1 for LTX-Video (its VAE's temporal compression). "
        "Default: the model's own.",
    ),
]
Height = Annotated[int | None, typer.Option("--height", min=1, help="Height. Default: the model's own.")]
Width = Annotated[int | None, typer.Option("--width", min=1, help="Width. Default: the model's own.")]
Fps = Annotated[
    int | None,
    typer.Option(
        "--fps",
        help="Frame rate written to the MP4s. Default: the family's (CogVideoX 8, CogVideoX 1.5 and Wan 16, Wan 2.2 TI2V-5B 24, LTX-Video 25).",
    ),
]
NegativePrompt = Annotated[
    str | None,
    typer.Option(
        "--negative-prompt",
        help="What guidance steers away from. Default: the empty prompt (the pipelines' own default), not the "
        "long one of Wan's or LTX-Video's examples (docs/generate.md).",
    ),
]
Lossless = Annotated[
    bool,
    typer.Option(
        "--lossless/--lossy",
        help="Lossless H.264 (yuv444p, crf 0: the model's pixels within 2 levels). Use it for tiny toy "
        "videos: lossy 4:2:0 blurs 48x48 outlines past the oracle's blur limit.",
    ),
]
VaeTiling = Annotated[
    bool, typer.Option("--vae-tiling", help="Tiled/sliced VAE decoding: less memory, slower.")
]
Offload = Annotated[
    str,
    typer.Option(
        "--offload",
        help="none; model: each component on the GPU only while it runs (diffusers' enable_model_cpu_offload: "
        "e.g. CogVideoX-5B on a 24 GB GPU, a little slower); sequential: layer by layer (least memory, "
        "much slower). The videos are the same.",
    ),
]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="auto (on a GPU the model's recommended one: fp16 for CogVideoX-2B, else bf16; fp32 on CPU), "
        "float32, bfloat16, float16.",
    ),
]
Device = Annotated[
    str, typer.Option("--device", help="auto (each rank's GPU, else CPU), cpu, cuda, cuda:1, ...")
]
Family = Annotated[
    str | None,
    typer.Option("--family", help="cogvideox | wan | ltx. Default: read from the model's model_index.json."),
]
PromptField = Annotated[str, typer.Option("--prompt-field", help="Prompt field of .jsonl/.csv files.")]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N prompts (N >= 1).")]
