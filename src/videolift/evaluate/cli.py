"""``videolift eval``: compare T2V models on held-out prompts with fixed seeds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from videolift.core.console import plain_console, styled
from videolift.core.schema import DIMENSIONS, Dimension
from videolift.data import sampler_options as opt
from videolift.evaluate.metrics import format_difference

if TYPE_CHECKING:
    from videolift.evaluate.vbench import Environment


def evaluate(
    model: list[str] = typer.Option(
        ...,
        "--model",
        help="Model to evaluate (pipeline dir or Hub id); repeat. "
        "Append '+LORA_DIR' to apply a LoRA. Prefix 'NAME=' to mark replicates of one recipe "
        "(e.g. --model rs=seed0/pipeline --model rs=seed1/pipeline): recipes are compared over their "
        "replicates too. A value naming an existing folder (e.g. lr=1e-4, base+ema) is that folder. The first "
        "model (and its recipe) is the reference.",
    ),
    prompts: Path = typer.Option(
        ...,
        "--prompts",
        help="Held-out prompts: .txt (one per line; lines starting with # are comments), .jsonl or .csv.",
    ),
    critic: Path | None = typer.Option(None, "--critic", help="Critic directory to rate with."),
    oracle: bool = typer.Option(
        False, "--oracle", help="Also rate with the toy-world oracle (toy prompts only)."
    ),
    clip: str | None = typer.Option(
        None,
        "--clip",
        help="Also score every video with this CLIP model (a transformers CLIPModel directory or Hub id, e.g. "
        "openai/clip-vit-base-patch32): CLIPSIM (text alignment) and temporal consistency, a rater "
        "independent of the critic.",
    ),
    out: Path = typer.Option(Path("eval-out"), "--out", help="Directory for videos, ratings and eval.json."),
    per_prompt: int = typer.Option(1, "--per-prompt", min=1, help="Videos per prompt (seeds are shared)."),
    seed: int = typer.Option(0, "--seed", help="Base seed, the same for every model."),
    steps: opt.Steps = 50,
    guidance: opt.Guidance = None,
    guidance_2: opt.Guidance2 = None,
    dynamic_cfg: opt.DynamicCfg = False,
    batch_size: int = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Videos per pipeline call (default: by clip size, 4 for toy clips, 1 for CogVideoX-2B's "
        "49x480x720: as many as hold 16x9x64x64 frame pixels).",
    ),
    frames: opt.Frames = None,
    height: opt.Height = None,
    width: opt.Width = None,
    fps: opt.Fps = None,
    negative_prompt: opt.NegativePrompt = None,
    lossless: opt.Lossless = False,
    vae_tiling: opt.VaeTiling = False,
    offload: opt.Offload = "none",
    dtype: opt.Dtype = "auto",
    device: opt.Device = "auto",
    family: opt.Family = None,
    prompt_field: opt.PromptField = "prompt",
    limit: opt.Limit = None,
    critic_dtype: str = typer.Option(
        "auto",
        "--critic-dtype",
        help="The critic's dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16. It rates on "
        "--device once every model has generated.",
    ),
    reward_config: Path | None = typer.Option(
        None,
        "--reward-config",
        help="Label->score mapping (YAML/JSON) of every rater's rewards (default: the --critic's own, "
        "from its critic_spec.json, else the paper's).",
    ),
    report: bool = typer.Option(
        True, "--report/--no-report", help="Also write OUT/report.html (tables, distributions, frames)."
    ),
    vbench: list[str] | None = typer.Option(
        None,
        "--vbench",
        help="Also lay videos out for VBench under OUT/vbench and score this VBench dimension when the "
        "vbench package is installed (a GPU; without it, the command to run is printed). Repeatable.",
    ),
    vbench_python: Path | None = typer.Option(
        None,
        "--vbench-python",
        help="The Python of the environment vbench is installed in (e.g. vbench-env/bin/python; its "
        "transformers and numpy pins cannot share videolift's): --vbench runs VBench with it, checked "
        "before the first video (default: this Python).",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Delete a model's videos in OUT made with other settings and generate them again (without it "
        "such a folder is refused before any video).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Generate on the same prompts and seeds with every model, rate, and report label rates, mean
    reward, all-Good rate and pairwise win/tie/loss against the first model."""
    from videolift.core.progress import library_bars
    from videolift.core.reward import RewardConfig
    from videolift.evaluate.compare import compare_models

    def note() -> None:  # after the input checks: an error is not preceded by advice
        if oracle and not lossless:
            plain_console(stderr=True).print(
                styled(
                    "note:",
                    "yellow",
                    "the oracle judges lossy H.264 here; tiny toy videos lose fidelity Good to the encode "
                    "(docs/evaluate.md). Pass --lossless to judge what the model made.",
                )
            )

    models, names, groups = parse_models(model)
    vbench_env = _vbench_checks(vbench, vbench_python)
    with library_bars(progress):
        result = compare_models(
            models,
            prompts,
            out,
            critic_dir=critic,
            oracle=oracle,
            per_prompt=per_prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            guidance_2=guidance_2,
            dynamic_cfg=dynamic_cfg,
            batch_size=batch_size,
            lossless=lossless,
            frames=frames,
            height=height,
            width=width,
            fps=fps,
            negative_prompt=negative_prompt,
            vae_tiling=vae_tiling,
            offload=offload,
            dtype=dtype,
            device=device,
            family=family,
            prompt_field=prompt_field,
            limit=limit,
            critic_dtype=critic_dtype,
            clip=clip,
            # None: the critic's own mapping (its spec's), else the paper's (compare.evaluation_reward)
            reward=RewardConfig.load(reward_config) if reward_config is not None else None,
            reward_source=f"--reward-config {reward_config}" if reward_config is not None else None,
            names=names,
            groups=groups,
            progress=progress,
            overwrite=overwrite,
            checked=note,
            log=plain_console(stderr=True).print,
        )
    from videolift.core.distributed import process_state

    # Under torchrun every process generated and scored its share; the main one reports (and runs VBench
    # once: N runs into one results folder take each other's files).
    if not process_state().is_main_process:
        return
    print_comparison(result)
    if report:
        from videolift.evaluate.eval_report import write_eval_report

        plain_console().print(f"report: {write_eval_report(out, result)}")
    # Said before VBench runs: a VBench failure stops eval with an error, eval.json and the report written.
    plain_console().print(f"written: {out / 'eval.json'}")
    if vbench:
        _vbench(result, out, vbench, vbench_env)


def parse_models(values: list[str]) -> tuple[list[tuple[str, str | None]], list[str], list[str | None]]:
    """``[NAME=]DIR[+LORA]`` options -> (model, lora) pairs, run names and recipe groups.

    A value naming an existing path is that path, whatever it contains (run folders such as
    ``lr=1e-4`` or ``base+ema``); otherwise ``NAME=`` and ``+LORA`` are split off, ``+`` where the part
    before it exists. Replicates are named NAME.1, NAME.2, ...; others after their directory
    (deduplicated)."""
    from videolift.evaluate.compare import model_name

    models, names, groups = [], [], []
    counts: dict[str, int] = {}
    for value in values:
        group, (path, lora) = None, _model_and_lora(value)
        name, sep, rest = value.partition("=")
        if not _exists(path) and sep and name and "/" not in name:  # not a folder that contains '='
            group, (path, lora) = name, _model_and_lora(rest)
        models.append((path, lora or None))
        groups.append(group)
        if group is not None:
            counts[group] = counts.get(group, 0) + 1
            names.append(f"{group}.{counts[group]}")
        else:
            names.append(model_name(path, lora or None, set(names)))
    if len(set(names)) != len(names) or set(counts) & set(names):
        raise typer.BadParameter(
            f"model names collide: {', '.join(names)}; pick other NAME= prefixes", param_hint="--model"
        )
    return models, names, groups


def _exists(path: str) -> bool:
    return Path(path).expanduser().exists()


def _model_and_lora(value: str) -> tuple[str, str | None]:
    """``DIR[+LORA]``: split at the last ``+`` whose left part exists (a Hub id: at the first ``+``)."""
    if "+" not in value or _exists(value):
        return value, None
    cuts = [i for i, c in enumerate(value) if c == "+"]
    for i in reversed(cuts):
        if _exists(value[:i]):
            return value[:i], value[i + 1 :] or None
    return value[: cuts[0]], value[cuts[0] + 1 :] or None


def _vbench_checks(dimensions: list[str] | None, python: Path | None) -> Environment | None:
    """--vbench's dimensions and --vbench-python's interpreter, checked before the first video, not
    after the last; the environment VBench runs in (None: this Python's)."""
    from videolift.core.errors import UsageError
    from videolift.evaluate.vbench import check_dimensions, probe

    if python is not None and not dimensions:
        raise UsageError("--vbench-python needs --vbench DIMENSION: it names where VBench runs")
    if not dimensions:
        return None
    check_dimensions(dimensions)
    return probe(python) if python is not None else None


def _vbench(result: dict, out: Path, dimensions: list[str], env: Environment | None = None) -> None:
    """Lay every model's videos out for VBench; score them when the vbench package is installed (in
    ``env``, --vbench-python's: there it must be; each model's scores also go to OUT/vbench/scores.json)."""
    import json
    import shlex

    from videolift.core.errors import VideoliftError
    from videolift.core.jsonl import atomic_write
    from videolift.evaluate.vbench import (
        LONG_CLIP_SECONDS,
        VBENCH_DIR,
        export_for_vbench,
        is_long,
        run_vbench,
        unavailable,
        vbench_command,
    )

    err = plain_console(stderr=True, highlight=False, soft_wrap=True)  # model names, paths
    longs: dict[str, bool] = {}
    for name in result["models"]:
        manifest = out / name / "manifest.jsonl"
        longs[name] = is_long(manifest)
        if longs[name]:
            err.print(
                f"{name}: clips of {LONG_CLIP_SECONDS:.0f} s or more: scored with VBench-Long (vbench2_beta_long)"
            )
        export_for_vbench(manifest, out / name, out / "vbench" / name / "videos")
    # Clip lengths are known only now: a named environment that cannot score them all (VBench-Long's
    # configs) is refused before VBench runs on any model. A rerun generates no video again.
    for long in sorted(set(longs.values())) if env is not None else ():
        if why := unavailable(long, env):
            raise VideoliftError(f"{why}; the videos are laid out in {out / 'vbench'}, a rerun keeps them")
    # OUT/vbench/scores.json holds this run's scores only: an earlier run's described the videos laid out then.
    scores_file = out / "vbench" / "scores.json"
    scores_file.unlink(missing_ok=True)
    scores: dict[str, dict[str, float]] = {}
    for name, long in longs.items():
        folder = out / "vbench" / name
        if not (why := unavailable(long, env)):
            try:
                scores[name] = run_vbench(
                    folder / "videos", folder / "results", dimensions, long=long, env=env
                )
            except VideoliftError as exc:  # the models scored before it keep their scores (written below)
                kept = f"; the scores of {', '.join(scores)} are in {scores_file}" if scores else ""
                left = list(longs)[list(longs).index(name) + 1 :]
                later = f"; not run on {', '.join(left)}" if left else ""
                raise VideoliftError(f"VBench, model {name}: {exc}{kept}{later}") from None
            err.print(f"VBench, {name}: " + ", ".join(f"{d} {v:.4f}" for d, v in scores[name].items()))
            # Written after every model: a failure (or a kill) on a later one keeps the earlier ones' scores.
            with atomic_write(scores_file) as handle:
                json.dump(scores, handle, indent=1)
        else:
            # Run by VBench's own Python: vbench 0.1.5 pins transformers==4.33.2 and numpy<2, which
            # videolift's environment cannot hold, so it lives in an environment of its own.
            _, *args = vbench_command(folder / "videos", folder / "results", dimensions, long=long)
            command = shlex.join(["python", *args])
            where = f" ({VBENCH_DIR}: the vbench package's folder)" if VBENCH_DIR in command else ""
            err.print(f"{why}: {name}'s videos are laid out; score them with\n  {command}{where}")


def print_comparison(result: dict) -> None:
    from videolift.evaluate.eval_report import (
        CLIP_COLUMNS,
        CLIP_NOTE,
        CLIP_RECIPE_COLUMNS,
        clip_paired_cells,
        clip_recipe_cells,
        clip_recipe_rows,
        clip_rows,
        findings_text,
        plus_minus,
        reward_note,
    )

    def pct(rate: float | None) -> str:
        return "n/a" if rate is None else f"{rate:.1%}"

    console = plain_console()  # model names as they are (a folder "t2v[b]", a NAME= "[a]")
    table = Table("model", "rater", "mean reward", "all Good", *[d.short + " Good" for d in DIMENSIONS])
    for name, by_rater in result["summary"].items():
        for rater, s in by_rater.items():
            table.add_row(
                name,
                rater,
                plus_minus(s["mean_reward"], None),  # None: the critic parsed no answer
                pct(s["all_good_rate"]),
                *[pct(s["dimensions"].get(d.value, {}).get("Good")) for d in DIMENSIONS],
            )
    if any(result["summary"].values()):  # not with --clip alone: no rater's labels
        console.print(table)
    if note := reward_note(result):  # the paper's mapping goes without saying
        console.print(styled("note:", "yellow", note))

    for name, by_rater in result["summary"].items():
        if found := by_rater.get("oracle", {}).get("findings"):
            cells = "; ".join(f"{Dimension(dim).short}: {findings_text(k)}" for dim, k in found.items() if k)
            console.print(f"{name} (oracle, videos with each fault): {cells or 'none'}")
    for pair, by_rater in result["pairwise"].items():
        for rater, p in by_rater.items():
            cells = ", ".join(f"{k}: {v['win']:.0%}/{v['tie']:.0%}/{v['loss']:.0%}" for k, v in p.items())
            console.print(f"{pair} ({rater}, win/tie/loss): {cells}")
            if diff := result.get("differences", {}).get(pair, {}).get(rater):
                console.print(f"{pair} ({rater}, paired difference ± SE): {format_difference(diff)}")
    if clip := result.get("clip"):
        table = Table(*CLIP_COLUMNS, title=f"CLIP ({clip['model']}, {CLIP_NOTE})")
        for row in clip_rows(clip):
            table.add_row(*map(str, row))
        console.print(table)
        for pair, cells in clip_paired_cells(clip):
            console.print(f"{pair} (CLIP, paired difference ± SE): {cells}")
    if result.get("groups"):
        print_recipes(result)
    if clip and (rows := clip_recipe_rows(clip)):  # recipes over replicates, as the raters' above
        table = Table(*CLIP_RECIPE_COLUMNS, title=f"CLIP recipes ({clip['model']})")
        for row in rows:
            table.add_row(*map(str, row))
        console.print(table)
        for pair, n, cells in clip_recipe_cells(clip):
            console.print(f"{pair} (CLIP, recipes, {n} replicates): {cells}")


def print_recipes(result: dict) -> None:
    """Recipes over their replicates, and their differences with evaluation and seed errors."""
    from videolift.evaluate.eval_report import plus_minus as pm

    console = plain_console()  # recipes named by NAME= as they are
    table = Table("recipe", "replicates", "rater", "mean reward ± seed SE", "all Good ± seed SE")

    for group, g in result["groups"].items():
        for rater, s in ((k, v) for k, v in g.items() if k != "members"):
            table.add_row(group, str(s["replicates"]), rater, pm(s["mean_reward"], s["mean_reward_seed_se"]),
                          pm(s["all_good_rate"], s["all_good_rate_seed_se"], 100, ".1f") + " %")  # fmt: skip
    console.print(table)
    for pair, by_rater in result["group_differences"].items():
        for rater, d in by_rater.items():
            a = d["all_good_rate"]
            seed = ""
            if a["seed_se"] is not None and a["eval_se"] is not None:  # one video: no evaluation SE
                seed = f"; all-Good seed SE {a['seed_se'] * 100:.1f}, evaluation SE {a['eval_se'] * 100:.1f} points"
            console.print(f"{pair} ({rater}, recipes, {a['replicates'][0]} vs {a['replicates'][1]} replicates): "
                          f"{format_difference(d)}{seed}")  # fmt: skip
