"""``report.html`` of a pipeline run: summary, label and reward distributions, training curves,
critic confusion matrices and a base-vs-aligned frame grid on the same held-out prompts and seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from videolift.core.jsonl import read_json, read_jsonl_dicts
from videolift.core.schema import DIMENSIONS, LABELS
from videolift.evaluate.eval_report import comparison_tables, distributions, frame_grid
from videolift.evaluate.report import Report, confusion_figure, curves_figure

GAIN_GUARD = 0.7  # oracle gain must be at least this share of the critic-measured gain


def _curve(path: Path, key: str = "loss") -> list[tuple[float, float]]:
    if not path.exists():
        return []
    return [(r["step"], r[key]) for r in read_jsonl_dicts(path) if r.get(key) is not None]


def reward_hacking_check(summary: dict[str, Any], key: str = "aligned_rwl") -> dict[str, Any] | None:
    """Oracle gain against the critic-measured gain of the aligned model ``key``; None without an
    oracle or that model; ``ok`` None when the critic parsed no answer on either model's videos."""
    base, aligned = summary.get("base"), summary.get(key)
    if not base or not aligned or "skipped" in aligned or base.get("oracle_mean_reward") is None:
        return None
    if base.get("critic_mean_reward") is None or aligned.get("critic_mean_reward") is None:
        return {"oracle_gain": None, "critic_gain": None, "ratio": None, "ok": None}
    oracle_gain = aligned["oracle_mean_reward"] - base["oracle_mean_reward"]
    critic_gain = aligned["critic_mean_reward"] - base["critic_mean_reward"]
    ratio = oracle_gain / critic_gain if critic_gain > 0 else None
    return {
        "oracle_gain": oracle_gain,
        "critic_gain": critic_gain,
        "ratio": ratio,
        "ok": ratio is None or ratio >= GAIN_GUARD,
    }


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
        return text, ""
    return (
        text + f" — BELOW {GAIN_GUARD}: the critic's gain is not matched by the oracle; the aligned "
        "model may exploit the critic.",
        "warn",
    )


def write_report(
    workdir: str | Path, summary: dict[str, Any], title: str = "videolift: the LiFT loop"
) -> Path:
    w = Path(workdir)
    evaluation = read_json(w / "eval" / "eval.json")
    names = list(evaluation["summary"])
    rep = Report(title)

    rep.heading("Summary (held-out prompts)")
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
        ["model", "directory", "oracle all-Good", "oracle reward", "critic all-Good", "critic reward"], rows
    )
    acc = summary["critic"]
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
        "standard error over the test videos",
    )
    if summary.get("align_rewards") == "oracle":  # no critic in the loop to exploit
        rep.paragraph(
            "The aligned models were trained on the oracle's ratings (align.rewards: oracle), a perfect "
            "critic: this measures alignment apart from the critic's errors, and the reward-hacking "
            "guard does not apply."
        )
    else:
        for key in [k for k in summary if k.startswith("aligned_")]:
            if (check := reward_hacking_check(summary, key)) is not None:
                rep.paragraph(*_guard_text(key, check))
    comparison_tables(rep, evaluation)
    if stages := summary.get("stages"):
        rep.table(
            ["stage", "seconds", "in this run"],
            [[n, _seconds(s["seconds"]), "ran" if s["ran"] else "up to date"] for n, s in stages.items()],
            caption=f"each stage's time when it last ran; this run took {summary['wall_seconds']:.0f} s "
            f"wall, the stages {sum(s['seconds'] or 0 for s in stages.values()):.0f} s together (side by side ones overlap)",
        )

    rep.heading("Label and reward distributions, before and after")
    distributions(rep, evaluation, w / "eval")

    rep.heading("Training curves")
    critic_curves = {n: _curve(w / n / "train_log.jsonl") for n in ("critic", "critic_label_only")}
    rep.figure(curves_figure(critic_curves, "critic fine-tuning (answer-token cross-entropy)"))
    align_curves = {p.name: _curve(p / "logs" / "train.jsonl") for p in sorted(w.glob("aligned_*"))}
    if align_curves:
        rep.figure(curves_figure(align_curves, "alignment (reward-weighted diffusion loss)"))

    rep.heading("Critic confusion matrices (held-out)")
    for name in ("critic", "critic_label_only"):
        path = w / f"{name}_eval.json"
        if not path.exists():
            continue
        report = read_json(path)
        for dim, m in report.get("dimensions", {}).items():
            labels = [lab.value for lab in LABELS]
            columns = [*labels, "unparsed"]  # an answer without a label is the critic's too
            matrix = [[m["confusion"][t].get(p, 0) for p in columns] for t in labels]
            rep.figure(confusion_figure(matrix, labels, f"{name}: {dim}", columns))

    rep.heading("Same held-out prompts and seeds: base vs aligned")
    frame_grid(rep, w / "eval", names)
    return rep.write(w / "report.html")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
