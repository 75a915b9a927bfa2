"""``report.html`` of ``videolift eval`` (and the comparison sections of the pipeline's report):
per-model tables with standard errors, pairwise and paired differences, recipes over replicates,
label and reward distributions, and a frame grid of the same prompts and seeds for every model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videolift.core.jsonl import read_jsonl_dicts
from videolift.core.report import Report, histogram_figure, label_rates_figure
from videolift.core.schema import DIMENSIONS
from videolift.evaluate.metrics import format_difference


def plus_minus(value: float | None, se: float | None, scale: float = 1.0, fmt: str = ".3f") -> str:
    """``0.312 ± 0.021`` (``n/a`` without a value; no ``±`` without an error)."""
    if value is None:
        return "n/a"
    return f"{value * scale:{fmt}}" + ("" if se is None else f" ± {se * scale:{fmt}}")


def reward_note(evaluation: dict[str, Any]) -> str | None:
    """Which mapping turned labels into the rewards shown, when it is not the paper's (``evaluation``:
    eval.json or summary.json, their ``reward_config`` and ``reward_source``); None for the paper's."""
    from videolift.core.reward import RewardConfig

    if (config := evaluation.get("reward_config")) is None:
        return None
    reward = RewardConfig.model_validate(config)
    if reward.is_paper():
        return None
    source = evaluation.get("reward_source") or "reward_config"
    return (
        f"Rewards (every rater's, and their differences) map labels by {source}: {reward.describe()}. "
        f"Not the paper's ({RewardConfig().describe()})."
    )


def comparison_tables(rep: Report, evaluation: dict[str, Any]) -> None:
    """Pairwise win/tie/loss and paired differences against the first model; recipes if any."""
    # ``--clip`` alone: no rater of labels, so no pair has a row (CLIP's own tables follow)
    for pair, by_rater in ((k, v) for k, v in evaluation.get("pairwise", {}).items() if v):
        # Raters may rate different dimensions (a critic trained on a subset beside the oracle).
        keys = list(dict.fromkeys(k for p in by_rater.values() for k in p))
        rep.table(
            ["rater", *[f"{k} win/tie/loss" for k in keys]],
            [
                [
                    rater,
                    *[
                        f"{v['win']:.0%}/{v['tie']:.0%}/{v['loss']:.0%}" if (v := p.get(k)) else ""
                        for k in keys
                    ],
                ]
                for rater, p in by_rater.items()
            ],
            caption=f"pairwise: {pair}",
        )
    for pair, by_rater in ((k, v) for k, v in evaluation.get("differences", {}).items() if v):
        rep.table(
            ["rater", "paired difference ± standard error"],
            [[rater, format_difference(d)] for rater, d in by_rater.items()],
            caption=f"{pair}, over videos of the same prompt and seed",
        )
    if not evaluation.get("groups"):
        return
    rows = [
        [group, ", ".join(g["members"]), rater, s["replicates"],
         plus_minus(s["all_good_rate"], s["all_good_rate_seed_se"], 100, ".1f"),
         plus_minus(s["mean_reward"], s["mean_reward_seed_se"])]
        for group, g in evaluation["groups"].items()
        for rater, s in g.items() if rater != "members"
    ]  # fmt: skip
    rep.table(
        ["recipe", "members", "rater", "replicates", "all-Good % ± seed SE", "mean reward ± seed SE"],
        rows,
        caption="recipes averaged over their replicates (training seeds); the SE is the replicates' spread",
    )
    rows = [
        [pair, rater, format_difference(d), plus_minus(d["all_good_rate"]["eval_se"], None, 100, ".1f"),
         plus_minus(d["all_good_rate"]["seed_se"], None, 100, ".1f")]
        for pair, by_rater in evaluation["group_differences"].items()
        for rater, d in by_rater.items()
    ]  # fmt: skip
    rep.table(
        [
            "recipes",
            "rater",
            "difference ± SE (evaluation and seeds)",
            "all-Good evaluation SE (points)",
            "all-Good seed SE (points)",
        ],
        rows,
        caption="recipe minus the first model's recipe, per video averaged over replicates",
    )


CLIP_COLUMNS = ("model", "videos", "CLIPSIM ± SE", "temporal consistency ± SE")
CLIP_NOTE = "CLIPSIM: text alignment only"


def clip_rows(clip: dict[str, Any]) -> list[list[Any]]:
    """eval.json's ``clip`` per model: videos scored, CLIPSIM and temporal consistency with their SEs."""
    return [
        [name, m["n"], plus_minus(m["clipsim"], m["clipsim_se"], fmt=".4f"),
         plus_minus(m["temporal_consistency"], m["temporal_consistency_se"], fmt=".4f")]
        for name, m in clip["per_model"].items()
    ]  # fmt: skip


def _clip_cell(d: dict[str, Any]) -> str:
    """``+0.0012 ± 0.0008`` of a paired difference; a recipes' one adds its seed and evaluation SEs."""
    if d["diff"] is None:  # no pair with both videos read
        return "n/a"
    cell = f"{d['diff']:+.4f}" + ("" if d["se"] is None else f" ± {d['se']:.4f}")
    if d.get("seed_se") is not None and d.get("eval_se") is not None:
        cell += f" (seed SE {d['seed_se']:.4f}, evaluation SE {d['eval_se']:.4f})"
    return cell


def _clip_cells(d: dict[str, Any]) -> str:
    return f"CLIPSIM {_clip_cell(d['clipsim'])}, temporal consistency {_clip_cell(d['temporal_consistency'])}"


def clip_paired_cells(clip: dict[str, Any]) -> list[tuple[str, str]]:
    """Every model's paired CLIP differences from the first: (pair, ``CLIPSIM +0.0012 ± 0.0008, temporal
    consistency -0.0100 ± 0.0030``)."""
    return [(pair, _clip_cells(d)) for pair, d in clip["paired"].items()]


CLIP_RECIPE_COLUMNS = (
    "recipe",
    "members",
    "replicates",
    "CLIPSIM ± seed SE",
    "temporal consistency ± seed SE",
)


def clip_recipe_rows(clip: dict[str, Any]) -> list[list[Any]]:
    """eval.json's ``clip.groups``: each recipe's CLIP values averaged over its replicates (``--model NAME=``)."""
    return [
        [recipe, ", ".join(g["members"]), g["replicates"], plus_minus(g["clipsim"], g["clipsim_seed_se"], fmt=".4f"),
         plus_minus(g["temporal_consistency"], g["temporal_consistency_seed_se"], fmt=".4f")]
        for recipe, g in clip.get("groups", {}).items()
    ]  # fmt: skip


def clip_recipe_cells(clip: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Every recipe's CLIP difference from the first model's recipe: (``rwl vs base``, ``3 vs 1``
    replicates, cells as ``clip_paired_cells``' with the seed and evaluation SEs)."""
    return [
        (pair, "{} vs {}".format(*d["clipsim"]["replicates"]), _clip_cells(d))
        for pair, d in clip.get("group_differences", {}).items()
    ]


def clip_tables(rep: Report, evaluation: dict[str, Any]) -> None:
    """CLIPSIM and CLIP temporal consistency per model and paired against the first (``--clip``)."""
    if not (clip := evaluation.get("clip")):
        return
    truncated = clip.get("truncated_prompts") or 0
    rep.table(
        list(CLIP_COLUMNS),
        clip_rows(clip),
        caption=f"CLIP ({clip['model']}), a rater independent of the critic, on up to {clip['frames']} frames "
        "of each video: CLIPSIM is the mean cosine similarity of each frame with the prompt (text alignment "
        "only: not motion, nor fidelity), temporal consistency that of consecutive frames (1 for a still video)"
        + (f"; {truncated} prompt(s) cut at CLIP's text length" if truncated else ""),
    )
    if pairs := clip_paired_cells(clip):
        rep.table(
            ["models", "paired difference ± standard error"],
            [list(p) for p in pairs],
            caption="CLIP, over videos of the same prompt and seed",
        )
    if rows := clip_recipe_rows(clip):
        rep.table(
            list(CLIP_RECIPE_COLUMNS),
            rows,
            caption="CLIP, recipes averaged over their replicates (training seeds); the SE is the replicates' spread",
        )
        rep.table(
            ["recipes", "difference ± SE (evaluation and seeds)"],
            [[f"{pair} ({n} replicates)", cells] for pair, n, cells in clip_recipe_cells(clip)],
            caption="CLIP, recipe minus the first model's recipe, per video averaged over replicates",
        )


def findings_text(kinds: dict[str, int]) -> str:
    """``{"shape": 65, "colour": 20}`` -> ``"shape 65, colour 20"``."""
    return ", ".join(f"{kind} {n}" for kind, n in kinds.items()) or "none"


def findings_table(rep: Report, evaluation: dict[str, Any]) -> None:
    """Toy world: per model and dimension, how many videos show each kind of fault the oracle found."""
    rows = [
        [name, dim, findings_text(kinds)]
        for name, by_rater in evaluation["summary"].items()
        for dim, kinds in by_rater.get("oracle", {}).get("findings", {}).items()
    ]
    if rows:
        rep.table(["model", "dimension", "videos with each fault (oracle)"], rows)


def distributions(rep: Report, evaluation: dict[str, Any], root: Path) -> None:
    """Label rates per rater and the reward per video (the oracle's, in the toy world, and the
    critic's), for every model in ``root``."""
    from videolift.core.reward import RewardConfig

    for rater in ("oracle", "critic"):
        models = {n: s[rater] for n, s in evaluation["summary"].items() if rater in s}
        if models:
            rep.figure(label_rates_figure(models, f"{rater} labels per dimension"))
    reward = RewardConfig.model_validate(evaluation.get("reward_config") or {})
    oracle = {
        name: _rewards(path, reward)
        for name in evaluation["summary"]
        if (path := root / name / "oracle_ratings.jsonl").exists()
    }
    if oracle:
        rep.figure(histogram_figure(oracle, "oracle reward per video"))
    rewards, unparsed = {}, []
    for name in evaluation["summary"]:
        path = root / name / "critic_scores.jsonl"
        if path.exists():
            # From the labels by the evaluation's mapping, as the tables' mean reward: the scores file's own
            # `reward` is the critic's mapping (`critic train --reward-config`), not `eval --reward-config`'s.
            values = _rewards(path, reward)
            if values:
                rewards[name] = values
            else:
                unparsed.append(name)
    if rewards:
        rep.figure(histogram_figure(rewards, "critic reward per video"))
    if unparsed:
        rep.paragraph(
            f"No critic reward for {', '.join(unparsed)}: the critic parsed no answer on its videos."
        )


def _rewards(ratings_file: Path, reward: Any) -> list[float]:
    """The reward of each rated video of a ratings or scores file (``{video, ratings: {dim: {label, ...}}}``
    lines; a null label, an unparsed answer, is left out as the tables leave it)."""
    lines = read_jsonl_dicts(ratings_file)
    labels = ({d: v.get("label") for d, v in (r.get("ratings") or {}).items()} for r in lines)
    return [x for one in labels if (x := reward.reward(one)) is not None]


def frame_grid(rep: Report, root: Path, names: list[str], n: int = 6) -> None:
    """The first ``n`` prompts as frame strips, one row per model (with the oracle's labels, if any)."""
    from videolift.core.video import read_video

    # Each model's video of the same prompt and seed (not of the same line: nothing else ties them).
    manifests = {
        name: {(r["prompt"], r["seed"]): r for r in read_jsonl_dicts(root / name / "manifest.jsonl")}
        for name in names
    }
    oracle = {
        name: {r["video"]: r for r in read_jsonl_dicts(p)}
        for name in names
        if (p := root / name / "oracle_ratings.jsonl").exists()
    }
    shared = [key for key in manifests[names[0]] if all(key in m for m in manifests.values())]
    shown = shared[:n]
    # Say what the grid leaves out: it shows a few prompts, the tables all of them.
    if not shared:
        rep.paragraph("No frames to show: no prompt and seed has a video of every model.", "warn")
    else:
        rep.paragraph(
            f"The first {len(shown)} of the {len(shared)} prompt-and-seed pairs every model has a video of "
            "(the tables above count every video)."
        )
    for prompt, seed in shown:
        rows = []
        for name in names:
            rec = manifests[name][(prompt, seed)]
            verdict = oracle.get(name, {}).get(rec["video"])
            tag = (
                " oracle "
                + " ".join(f"{d[:1].upper()}:{v['label'][0]}" for d, v in verdict["ratings"].items())
                if verdict
                else ""
            )
            rows.append((f"{name}{tag}", read_video(root / name / rec["video"])))
        legend = (
            " — oracle labels: S semantic, M motion, V fidelity; G / N / B Good, Normal, Bad"
            if oracle
            else ""
        )
        rep.frames(rows, caption=f'"{prompt}" (seed {seed}){legend}')


def _percent(rate: float | None) -> str | None:
    """A rate as the all-Good column beside it shows one (``25.0``, in percent); None (not rated) stays."""
    return None if rate is None else f"{100 * rate:.1f}"


def write_eval_report(out: str | Path, evaluation: dict[str, Any], title: str = "videolift eval") -> Path:
    """``OUT/report.html`` for a ``videolift eval`` run (``evaluation`` is its eval.json)."""
    out = Path(out)
    names = list(evaluation["summary"])
    rep = Report(title)
    rep.heading(f"Models on {evaluation['prompts']} (the same prompts and seeds for every model)")
    rows = [
        [name, rater, s["videos"], plus_minus(s["all_good_rate"], s["all_good_rate_se"], 100, ".1f"),
         plus_minus(s["mean_reward"], s["mean_reward_se"]),
         *[_percent(s["dimensions"].get(d.value, {}).get("Good")) for d in DIMENSIONS]]
        for name, by_rater in evaluation["summary"].items()
        for rater, s in by_rater.items()
    ]  # fmt: skip
    if rows:  # none with --clip alone: no rater of labels (as the printed table)
        rep.table(
            [
                "model",
                "rater",
                "videos",
                "all-Good % ± SE",
                "mean reward ± SE",
                *[f"{d.value} Good %" for d in DIMENSIONS],
            ],
            rows,
        )
    if note := reward_note(evaluation):
        rep.paragraph(note)
    comparison_tables(rep, evaluation)
    clip_tables(rep, evaluation)
    findings_table(rep, evaluation)
    if rows:
        rep.heading("Label and reward distributions")
        distributions(rep, evaluation, out)
    rep.heading("Same prompts and seeds, every model")
    frame_grid(rep, out, names)
    return rep.write(out / "report.html")
