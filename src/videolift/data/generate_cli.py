"""``videolift generate``: K candidate videos per prompt, resumable, sharded under accelerate/torchrun."""

from __future__ import annotations

from pathlib import Path

import typer

from videolift.data import sampler_options as opt


def generate(
    model: str = typer.Option(
        ...,
        "--model",
        help="T2V pipeline (CogVideoX, Wan 2.1 / 2.2 or LTX-Video): a save_pretrained directory or a Hub id.",
    ),
    prompts: Path = typer.Option(
        ...,
        "--prompts",
        help="Prompt file: .txt (one per line; lines starting with # are comments), .jsonl or .csv.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output directory (videos/, manifest.jsonl). Refused if it holds another tool's manifest or videos.",
    ),
    per_prompt: int = typer.Option(
        1, "--per-prompt", help="Candidate videos per prompt, each with its own seed."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Base seed; each video's seed is derived from it, the prompt and k."
    ),
    steps: opt.Steps = 50,
    guidance: opt.Guidance = None,
    guidance_2: opt.Guidance2 = None,
    dynamic_cfg: opt.DynamicCfg = False,
    frames: opt.Frames = None,
    height: opt.Height = None,
    width: opt.Width = None,
    fps: opt.Fps = None,
    dtype: opt.Dtype = "auto",
    device: opt.Device = "auto",
    lora: Path | None = typer.Option(None, "--lora", help="Alignment LoRA directory to load on top."),
    batch_size: int = typer.Option(1, "--batch-size", help="Videos per pipeline call."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="If OUT holds a run with other settings or prompts, delete it and start over.",
    ),
    prompt_field: opt.PromptField = "prompt",
    limit: opt.Limit = None,
    lossless: opt.Lossless = False,
    vae_tiling: opt.VaeTiling = False,
    offload: opt.Offload = "none",
    negative_prompt: opt.NegativePrompt = None,
    family: opt.Family = None,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Generate --per-prompt candidate videos for each prompt with a diffusers T2V pipeline.

    Writes OUT/videos/*.mp4 and OUT/manifest.jsonl. Rerunning the same command resumes; under
    `accelerate launch` or `torchrun` each rank generates a disjoint share.
    """
    from videolift.core.progress import library_bars
    from videolift.data.generate import generate_videos

    with library_bars(progress):
        summary = generate_videos(
            model,
            prompts,
            out,
            per_prompt=per_prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            guidance_2=guidance_2,
            dynamic_cfg=dynamic_cfg,
            frames=frames,
            height=height,
            width=width,
            fps=fps,
            dtype=dtype,
            device=device,
            lora=str(lora) if lora else None,
            batch_size=batch_size,
            overwrite=overwrite,
            prompt_field=prompt_field,
            limit=limit,
            lossless=lossless,
            vae_tiling=vae_tiling,
            offload=offload,
            family=family,
            negative_prompt=negative_prompt,
            progress=progress,
        )
    if summary.main_process:
        rate = summary.generated / summary.loop_seconds if summary.generated else 0.0
        typer.echo(
            f"{summary.total} videos in {summary.manifest} ({summary.generated} generated here, "
            f"{summary.skipped} already done; {summary.world_size} process(es), {summary.seconds:.1f} s, "
            f"{rate:.2f} videos/s on this rank)"
        )
