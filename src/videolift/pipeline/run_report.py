"""``report.html`` of a pipeline run: summary, label and reward distributions, training curves,
critic confusion matrices and a base-vs-aligned frame grid on the same held-out prompts and seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videolift.core.jsonl import read_json, read_jsonl_dicts
from videolift.core.report import Report, confusion_figure, curves_figure
from videolift.core.schema import DIMENSIONS, LABELS
from videolift.evaluate.eval_report import (
    clip_tables,
    comparison_tables,
    distributions,
    frame_grid,
    reward_note,
)

GAIN_GUARD = 0.7  # oracle gain must be at least this share of the critic-measured gain
# The toy-world demo's targets (issue #9), shown met or not in its report.
CRITIC_ACCURACY_TARGET = 0.85  # mean label accuracy of the critic trained with reasons
ALL_GOOD_GAIN_TARGET = 0.15  # aligned_rwl's oracle all-Good rate over the base's


def _curve(path: Path, key: str = "loss") -> list[tuple[float, float]]:
    if not path.exists():
        return []
    return [(r["step"], r[key]) for r in read_jsonl_dicts(path) if r.get(key) is not None]


def reward_hacking_check(summary: dict[str, Any], key: str = "aligned_rwl") -> dict[str, Any] | None:
    """Oracle gain against the critic-measured gain of the aligned model ``key``: ``ok`` when the
    oracle's is at least ``GAIN_GUARD`` times the critic's (for a critic gain of zero or less too: an
    oracle loss beyond it fails). None without an oracle or that model; ``ok`` None when the critic
    parsed no answer on either model's videos. With the summary's paired differences the gains are theirs
    (the critic's over videos it rated in full on both models, which the table's means are not) and
    ``critic_gain_se`` their standard error."""
    base, aligned = summary.get("base"), summary.get(key)
    if not base or not aligned or "skipped" in aligned or base.get("oracle_mean_reward") is None:
        return None
    if base.get("critic_mean_reward") is None or aligned.get("critic_mean_reward") is None:
        return {"oracle_gain": None, "critic_gain": None, "ratio": None, "ok": None}
    differences = summary.get("differences", {}).get(f"{key} vs base", {})
    oracle, critic = (differences.get(rater, {}).get("mean_reward", {}) for rater in ("oracle", "critic"))
    oracle_gain = _or(oracle.get("diff"), aligned["oracle_mean_reward"] - base["oracle_mean_reward"])
    critic_gain = _or(critic.get("diff"), aligned["critic_mean_reward"] - base["critic_mean_reward"])
    return {
        "oracle_gain": oracle_gain,
        "critic_gain": critic_gain,
        "critic_gain_se": critic.get("se"),
        "ratio": oracle_gain / critic_gain if critic_gain > 0 else None,
        "ok": oracle_gain >= GAIN_GUARD * critic_gain,
    }


def _or(value: float | None, otherwise: float) -> float:
    return otherwise if value is None else value


def _guard_text(key: str, check: dict[str, Any]) -> tuple[str, str]:
    """The guard's paragraph for one aligned model, and its style ("warn" when it fails)."""
    if check["ok"] is None:
        why = "the critic parsed no answer on the base's or the aligned model's videos"
        return f"Reward-hacking guard ({key}): not computable, {why}.", "warn"
    text = (
        f"Reward-hacking guard ({key}): oracle gain {check['oracle_gain']:+.3f} vs critic gain "
        f"{check['critic_gain']:+.3f}"
        + (f" (ratio {check['ratio']:.2f})" if check["ratio"] is not None else "")
    )
    if check["ok"]:
        text += f": passes (the oracle's gain is at least {GAIN_GUARD} of the critic's)."
    elif check["critic_gain"] > 0:
        text += (
            f" — BELOW {GAIN_GUARD} of the critic's gain: the critic's gain is not matched by the oracle; "
            "the aligned model may exploit the critic."
        )
    else:  # no reward to hack: the critic saw no gain, the oracle a loss larger than the critic's
        text += (
            f" — BELOW {GAIN_GUARD} of the critic's gain: the critic sees no gain and the oracle a larger "
            "loss; the aligned model got worse, and the critic misses how much."
        )
    se = check.get("critic_gain_se")
    # <=: a critic that rated both models' videos alike (gain 0, SE 0) tells them apart least of all
    if se is not None and abs(check["critic_gain"]) <= 2 * se:
        text += (
            f" The critic's gain is within two standard errors of zero (SE {se:.3f}): the critic hardly "
            "tells the two models apart, so this check says little."
        )
    return text, "" if check["ok"] else "warn"


def clip_guard_text(key: str, summary: dict[str, Any]) -> tuple[str, str]:
    """Without an oracle, CLIPSIM's paired change beside the critic's for the aligned model ``key``
    (summary.json's ``clip`` and ``differences``), and its style: "warn" when the critic's reward rises while
    CLIPSIM falls."""
    pair = f"{key} vs base"
    critic = summary.get("differences", {}).get(pair, {}).get("critic", {}).get("mean_reward", {})
    clip = summary["clip"].get("paired", {}).get(pair, {}).get("clipsim", {})

    def cell(d: dict[str, Any], fmt: str) -> str:
        if d.get("diff") is None:
            return "n/a"
        return f"{d['diff']:{fmt}}" + ("" if d.get("se") is None else f" ± {d['se']:{fmt[1:]}}")

    text = (
        f"No oracle here; CLIP check ({key}, {summary['clip']['model']}): critic reward change "
        f"{cell(critic, '+.3f')}, CLIPSIM change {cell(clip, '+.4f')} (paired, same prompts and seeds). "
        "CLIPSIM measures text alignment only (how well the frames match the prompt), not motion or "
        "fidelity, so it checks part of what the critic rates; a CLIPSIM drop while the critic's reward "
        "rises is a warning sign that the aligned model exploits the critic."
    )
    rises, drops = (critic.get("diff") or 0.0) > 0, (clip.get("diff") or 0.0) < 0
    if rises and drops:
        se = clip.get("se")
        beyond = se is not None and -clip["diff"] > 2 * se
        text += " Here CLIPSIM " + (
            "drops by more than two standard errors: WARNING."
            if beyond
            else "drops, within two standard errors."
        )
        return text, "warn"
    return text, ""


def target_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The demo's targets against this run, each met or not; none outside the toy world (no oracle)."""
    base, rwl = summary.get("base", {}), summary.get("aligned_rwl", {})
    if base.get("oracle_all_good_rate") is None:
        return []
    rows = []
    mean = (summary.get("critic", {}).get("accuracy") or {}).get("mean")
    if mean is not None:
        verdict = "met" if mean >= CRITIC_ACCURACY_TARGET else "NOT MET"
        rows.append([f"critic mean accuracy >= {CRITIC_ACCURACY_TARGET}", f"{mean:.3f}", verdict])
    if rwl.get("oracle_all_good_rate") is not None:
        gain = rwl["oracle_all_good_rate"] - base["oracle_all_good_rate"]
        verdict = "met" if gain >= ALL_GOOD_GAIN_TARGET - 1e-9 else "NOT MET"
        rows.append(
            [f"aligned_rwl oracle all-Good >= base + {ALL_GOOD_GAIN_TARGET}", f"{gain:+.3f}", verdict]
        )
    if summary.get("align_rewards") != "oracle":
        for key in [k for k in summary if k.startswith("aligned_")]:
            check = reward_hacking_check(summary, key)
            if check is not None and check["ok"] is not None:
                rows.append([f"{key}: oracle gain >= {GAIN_GUARD} x critic gain",
                             f"{check['oracle_gain']:+.3f} vs {check['critic_gain']:+.3f}",
                             "met" if check["ok"] else "NOT MET"])  # fmt: skip
    return rows


def write_report(
    workdir: str | Path, summary: dict[str, Any], title: str = "videolift: the LiFT loop"
) -> Path:
    """``WORKDIR/report.html`` of the run whose ``summary`` (summary.json) this is: its summary tables,
    the label and reward distributions, the training curves, the critics' confusion matrices and the
    base-vs-aligned frame grid, in that order; returns its path."""
    w = Path(workdir)
    evaluation = read_json(w / "eval" / "eval.json")
    names = list(evaluation["summary"])
    rep = Report(title)

    rep.heading("Summary (held-out prompts)")
    _models_table(rep, summary)
    if note := reward_note(summary):  # the rewards above and the guard's gains: not the paper's mapping
        rep.paragraph(note)
    _critic_accuracy_table(rep, summary["critic"])
    _guard_paragraphs(rep, summary)
    _targets_table(rep, summary)
    comparison_tables(rep, evaluation)
    clip_tables(rep, evaluation)
    _stages_table(rep, summary)

    rep.heading("Label and reward distributions, before and after")
    distributions(rep, evaluation, w / "eval")

    rep.heading("Training curves")
    _training_curves(rep, w, summary)

    rep.heading("Critic confusion matrices (held-out)")
    _confusion_matrices(rep, w, summary)

    rep.heading("Same held-out prompts and seeds: base vs aligned")
    frame_grid(rep, w / "eval", names)
    return rep.write(w / "report.html")


def _models_table(rep: Report, summary: dict[str, Any]) -> None:
    """The base and every aligned model (``aligned_*``) on the held-out prompts: its directory and the
    oracle's and the critic's all-Good rate and mean reward, or why it was skipped."""
    rows = []
    for key in ["base", *[k for k in summary if k.startswith("aligned_")]]:
        s = summary[key]
        if "skipped" in s:
            rows.append([key, f"skipped: {s['skipped']}", None, None, None, None])
            continue
        rows.append(
            [
                key,
                s["model"],
                s.get("oracle_all_good_rate"),
                s.get("oracle_mean_reward"),
                s.get("critic_all_good_rate"),
                s.get("critic_mean_reward"),
            ]
        )
    rep.table(
        ["model", "directory", "oracle all-Good", "oracle reward", "critic all-Good", "critic reward"],
        rows,
        caption="each model on the held-out prompts: the share of its videos rated Good on every dimension "
        "(all-Good) and its mean reward per video, both in [0, 1]",
    )


def _critic_accuracy_table(rep: Report, acc: dict[str, Any]) -> None:
    """The critic's label accuracy per dimension (``acc``: summary.json's ``critic``), with reasons and
    without, next to the majority-label baseline and the accuracy's standard error (each row only when
    the run has it)."""
    rep.table(
        ["critic", *[d.value for d in DIMENSIONS], "mean"],
        [
            [name, *[(acc[k] or {}).get(d.value) for d in DIMENSIONS], (acc[k] or {}).get("mean")]
            for name, k in (
                ("with reasons", "accuracy"),
                ("label only", "accuracy_no_reasons"),
                ("always the majority label", "majority_baseline"),
                ("standard error (with reasons)", "accuracy_se"),
            )
            if acc.get(k)
        ],
        caption="critic label accuracy on held-out videos (majority label of the raters), "
        "what always answering each dimension's most frequent label scores, and the accuracy's "
        "standard error over the test videos (clustered by prompt)",
    )


def _guard_paragraphs(rep: Report, summary: dict[str, Any]) -> None:
    """The reward-hacking guard's paragraph for each aligned model, or, when the models were aligned on
    the oracle's ratings, why there is none."""
    if summary.get("align_rewards") == "oracle":  # no critic in the loop to exploit
        rep.paragraph(
            "The aligned models were trained on the oracle's ratings (align.rewards: oracle), a perfect "
            "critic: this measures alignment apart from the critic's errors, and the reward-hacking "
            "guard does not apply."
        )
    elif summary.get("base", {}).get("oracle_mean_reward") is None and _aligned(summary):
        # Outside the toy world nothing rates the videos but the critic (and CLIP, with evaluate.clip):
        # say the guard is missing, or how far CLIP stands in for it.
        if summary.get("clip"):
            for key in _aligned(summary):
                rep.paragraph(*clip_guard_text(key, summary))
            return
        rep.paragraph(
            "No reward-hacking guard: it needs a rater independent of the critic (the toy world's oracle), "
            "and this run has none, so the critic's gains above are not checked against another rater "
            "(evaluate.clip: MODEL adds CLIPSIM, a partial one).",
            "warn",
        )
    else:
        for key in [k for k in summary if k.startswith("aligned_")]:
            if (check := reward_hacking_check(summary, key)) is not None:
                rep.paragraph(*_guard_text(key, check))


def _targets_table(rep: Report, summary: dict[str, Any]) -> None:
    """The toy-world demo's targets, each met or not (``target_rows``); no table outside the toy world."""
    if targets := target_rows(summary):
        rep.table(
            ["target", "this run", "verdict"],
            targets,
            caption="the toy-world demo's targets (critic accuracy on held-out videos; the oracle's rates "
            "on held-out prompts)",
        )


def _stages_table(rep: Report, summary: dict[str, Any]) -> None:
    """Each stage's time when it last ran and whether this run ran it, with the run's wall time and the
    stages' sum in the caption; no table for a summary without stages."""
    if stages := summary.get("stages"):
        rep.table(
            ["stage", "seconds", "in this run"],
            [[n, _seconds(s["seconds"]), "ran" if s["ran"] else "up to date"] for n, s in stages.items()],
            caption=f"each stage's time when it last ran; this run took {summary['wall_seconds']:.0f} s "
            f"wall, the stages {sum(s['seconds'] or 0 for s in stages.values()):.0f} s together (side by side ones overlap)",
        )


def _critics(summary: dict[str, Any]) -> list[str]:
    """The critics this run trained: the critic, and its label-only baseline (``critic.label_only_baseline``)
    when the summary has its accuracy or its stage."""
    label_only = summary["critic"].get("accuracy_no_reasons") or "critic:critic_label_only" in summary.get(
        "stages", {}
    )
    return ["critic", *(["critic_label_only"] if label_only else [])]


def _aligned(summary: dict[str, Any]) -> list[str]:
    """The aligned models this run trained (not a skipped one, nor a folder left by earlier settings)."""
    return [k for k in summary if k.startswith("aligned_") and "skipped" not in summary[k]]


def _missing(rep: Report, what: str, paths: list[Path]) -> None:
    """Say which expected files a section lacks: a missing piece is said, not silently left out."""
    if paths:
        rep.paragraph(f"No {what} for: " + ", ".join(str(p) for p in paths) + " (missing or empty).", "warn")


def _training_curves(rep: Report, w: Path, summary: dict[str, Any]) -> None:
    """The training curves of the run in ``w``: its critics' loss, every aligned model's loss and its
    held-out clips' diffusion loss (if it logged any); an expected log that is missing is named."""
    logs = {n: w / n / "train_log.jsonl" for n in _critics(summary)}
    critic_curves = {n: _curve(path) for n, path in logs.items()}
    if any(critic_curves.values()):
        rep.figure(
            curves_figure(
                critic_curves,
                "critic fine-tuning: cross-entropy of the answer tokens (label and reason, or the label only)",
            )
        )
    _missing(rep, "critic training curve", [logs[n] for n, c in critic_curves.items() if not c])
    aligned = _aligned(summary)
    logs = {n: w / n / "logs" / "train.jsonl" for n in aligned}
    align_curves = {n: _curve(path) for n, path in logs.items()}
    if any(align_curves.values()):
        rep.figure(
            curves_figure(
                align_curves, "alignment: the synthetic videos' loss (reward-weighted) + lambda x real"
            )
        )
    _missing(rep, "alignment training curve", [logs[n] for n, c in align_curves.items() if not c])
    # With align.settings.validation_real: the diffusion loss of held-out clips (align --validation-real).
    held_out = {n: c for n in aligned if (c := _curve(w / n / "logs" / "validation.jsonl", "val_loss"))}
    if held_out:
        rep.figure(
            curves_figure(held_out, "alignment: diffusion loss of the held-out clips (--validation-real)")
        )


def _confusion_matrices(rep: Report, w: Path, summary: dict[str, Any]) -> None:
    """A confusion matrix per dimension of each critic the run evaluated (``critic_eval.json``,
    ``critic_label_only_eval.json``): true label by answered label, unparsed answers a column; an
    evaluation file that is missing is named."""
    missing = []
    for name in _critics(summary):
        path = w / f"{name}_eval.json"
        if not path.exists():
            missing.append(path)
            continue
        report = read_json(path)
        for dim, m in report.get("dimensions", {}).items():
            labels = [lab.value for lab in LABELS]
            columns = [*labels, "unparsed"]  # an answer without a label is the critic's too
            matrix = [[m["confusion"][t].get(p, 0) for p in columns] for t in labels]
            rep.figure(confusion_figure(matrix, labels, f"{name}: {dim}", columns))
    _missing(rep, "critic evaluation (confusion matrices)", missing)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
