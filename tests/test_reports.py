"""report.html of `videolift eval` and of a pipeline run, read as a browser reads it (parsed HTML):
what each section shows, says it leaves out, and how it labels its numbers."""

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

DIMS = ("semantic_consistency", "motion_smoothness", "video_fidelity")


class Page(HTMLParser):
    """The page's text per element: paragraphs (with their class), headings, table headers and cells."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.paragraphs: list[tuple[str, str]] = []  # (class, text)
        self.th: list[str] = []
        self.td: list[str] = []
        self.captions: list[str] = []
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []  # (tag, name, value)
        self._open: list[tuple[str, str, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, k, v or "") for k, v in attrs]
        if tag in ("p", "th", "td", "h1", "h2", "span", "caption"):
            self._open.append((tag, dict(attrs).get("class") or "", []))

    def handle_data(self, data):
        for _, _, parts in self._open:
            parts.append(data)

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            _, cls, parts = self._open.pop()
            text = " ".join("".join(parts).split())
            if tag == "p":
                self.paragraphs.append((cls, text))
            elif tag in ("th", "td"):
                getattr(self, tag).append(text)
            elif tag == "caption":
                self.captions.append(text)

    def warnings(self) -> list[str]:
        return [text for cls, text in self.paragraphs if cls == "warn"]


def _workdir(tmp_path: Path, models: dict[str, list[tuple[str, int]]]) -> Path:
    """An eval folder of ``models``: name -> its (prompt, seed) videos, oracle-rated Bad, 3 frames each."""
    from videolift.core.video import write_video
    from videolift.evaluate.metrics import summarize

    bad = dict.fromkeys(DIMS, "Bad")
    root = tmp_path / "eval"
    for name, keys in models.items():
        (root / name / "videos").mkdir(parents=True)
        lines, rated = [], []
        for i, (prompt, seed) in enumerate(keys):
            video = f"videos/{i:05d}.mp4"
            write_video(root / name / video, np.full((3, 8, 8, 3), 60, np.uint8), fps=8)
            lines.append({"video": video, "prompt": prompt, "seed": seed})
            rated.append({"video": video, "ratings": {d: {"label": "Bad", "reason": ""} for d in DIMS}})
        (root / name / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (root / name / "oracle_ratings.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rated))
    evaluation = {
        "prompts": "prompts.txt",
        "summary": {n: {"oracle": summarize([bad] * len(k))} for n, k in models.items()},
        "pairwise": {},
    }
    (root / "eval.json").write_text(json.dumps(evaluation))
    return root


def _run_summary() -> dict:
    model = {"model": "m", "oracle_all_good_rate": 0.25, "oracle_mean_reward": 0.5}
    model |= {"critic_all_good_rate": 0.25, "critic_mean_reward": 0.5}
    accuracy = {**dict.fromkeys(DIMS, 0.9), "mean": 0.9}
    return {
        "critic": {"accuracy": accuracy, "accuracy_no_reasons": accuracy},
        "base": model,
        "aligned_rwl": {**model, "model": "aligned_rwl/pipeline"},
        "aligned_rs": {"skipped": "no generated video was rated Good on every dimension"},
        "align_rewards": "oracle",
        "wall_seconds": 1.0,
    }


def test_the_run_report_names_the_training_logs_and_critic_evaluations_it_lacks(tmp_path):
    """A run whose label-only critic lost its training log, whose aligned model logged nothing and whose
    critic evaluation is gone: the report named none of it (an empty panel, or nothing at all). Now each
    missing file is said, in a warning; a folder of earlier settings (aligned_old) is not this run's."""
    from videolift.pipeline.run_report import write_report

    _workdir(tmp_path, {"base": [("p", 1)], "aligned_rwl": [("p", 1)]})
    (tmp_path / "critic").mkdir()
    (tmp_path / "critic/train_log.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    (tmp_path / "critic_label_only").mkdir()  # trained, its log gone
    confusion = {t: {p: int(t == p) for p in ("Good", "Normal", "Bad")} for t in ("Good", "Normal", "Bad")}
    (tmp_path / "critic_label_only_eval.json").write_text(
        json.dumps({"dimensions": {d: {"confusion": confusion} for d in DIMS}})
    )
    (tmp_path / "aligned_old/logs").mkdir(parents=True)  # not in the summary: another run's
    (tmp_path / "aligned_old/logs/train.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")

    page = Page(write_report(tmp_path, _run_summary()).read_text())
    said = " ".join(page.warnings())
    assert f"No critic training curve for: {tmp_path / 'critic_label_only/train_log.jsonl'}" in said
    assert f"No alignment training curve for: {tmp_path / 'aligned_rwl/logs/train.jsonl'}" in said
    assert f"No critic evaluation (confusion matrices) for: {tmp_path / 'critic_eval.json'}" in said
    assert "aligned_old" not in said and "aligned_rs" not in said and f"{tmp_path}/critic/" not in said

    # Every log and evaluation there: no warning; a run without the label-only critic expects none of it.
    (tmp_path / "critic_label_only/train_log.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    (tmp_path / "aligned_rwl/logs").mkdir(parents=True)
    (tmp_path / "aligned_rwl/logs/train.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    (tmp_path / "critic_eval.json").write_text((tmp_path / "critic_label_only_eval.json").read_text())
    assert Page(write_report(tmp_path, _run_summary()).read_text()).warnings() == []
    summary = _run_summary()
    summary["critic"]["accuracy_no_reasons"] = None
    shutil.rmtree(tmp_path / "critic_label_only")
    (tmp_path / "critic_label_only_eval.json").unlink()
    assert Page(write_report(tmp_path, summary).read_text()).warnings() == []


def test_the_frame_grid_says_how_many_of_the_prompts_it_shows(tmp_path):
    """The grid shows the first six prompt-and-seed pairs: of 8 it said nothing of the other 2, and where
    no pair had a video of every model it showed an empty section."""
    from videolift.evaluate.eval_report import write_eval_report

    keys = [(f"prompt {i}", i) for i in range(8)]
    root = _workdir(tmp_path, {"base": keys, "aligned": keys[::-1]})
    page = Page(write_eval_report(root, json.loads((root / "eval.json").read_text())).read_text())
    assert "The first 6 of the 8 prompt-and-seed pairs every model has a video of" in " ".join(
        t for _, t in page.paragraphs
    )
    root = _workdir(tmp_path / "apart", {"base": keys[:2], "aligned": keys[2:4]})
    page = Page(write_eval_report(root, json.loads((root / "eval.json").read_text())).read_text())
    assert page.warnings() == ["No frames to show: no prompt and seed has a video of every model."]


def test_the_report_tables_say_their_units(tmp_path):
    """eval's model table showed all-Good in percent (25.0) beside each dimension's Good rate as a fraction
    (0.250) under headers that named neither; the run's model table gave its rates with no unit at all."""
    from videolift.evaluate.eval_report import write_eval_report
    from videolift.evaluate.metrics import summarize
    from videolift.pipeline.run_report import write_report

    root = _workdir(tmp_path, {"base": [("p", 1)], "aligned_rwl": [("p", 1)]})
    evaluation = json.loads((root / "eval.json").read_text())
    good, bad = dict.fromkeys(DIMS, "Good"), dict.fromkeys(DIMS, "Bad")
    evaluation["summary"]["base"]["oracle"] = summarize([good, bad, bad, {**bad, DIMS[0]: "Good"}])
    page = Page(write_eval_report(root, evaluation).read_text())
    header = page.th[: 5 + len(DIMS)]  # model, rater, videos, all-Good, reward, each dimension
    row = dict(zip(header, page.td[: len(header)], strict=True))
    assert row["all-Good % ± SE"].startswith("25.0 ± ")
    assert row["semantic_consistency Good %"] == "50.0" and row["video_fidelity Good %"] == "25.0"

    page = Page(write_report(tmp_path, _run_summary()).read_text())
    assert any("both in [0, 1]" in t for t in page.captions)


def test_model_names_and_prompts_are_shown_as_written(tmp_path):
    """Names and prompts reach the page as text, never markup, and the figures draw a `$` as a `$`:
    matplotlib took `$...$` for math, so a model named `run$\\foo$x` failed the report at savefig."""
    from videolift.evaluate.eval_report import write_eval_report

    prompt = "<script>alert(1)</script> & \"quoted\" 'single' é 日本"
    names = {"base": 'b<img src=x onerror=alert(1)>&"é', "aligned": "run$\\foo$x"}
    root = _workdir(tmp_path, {names["base"]: [(prompt, 1)], names["aligned"]: [(prompt, 1)]})
    evaluation = json.loads((root / "eval.json").read_text())
    evaluation["prompts"] = "<b>prompts</b>.txt"
    page = Page(write_eval_report(root, evaluation, title="<i>t</i> & é").read_text(encoding="utf-8"))
    assert set(page.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table",
                              "caption", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "img",
                              "div", "span"}  # fmt: skip
    sources = [v for _, k, v in page.attributes if k in ("src", "href")]
    assert len(sources) == page.tags.count("img") and all(v.startswith("data:") for v in sources)
    assert not [k for _, k, _ in page.attributes if k.startswith("on")]
    assert {names["base"], names["aligned"]} <= set(page.td)
    assert any(prompt in t for _, t in page.paragraphs)


def test_the_distribution_figures_label_their_y_axes():
    """The reward histograms' counts and the label bars' shares had no y-axis label (counts or density?)."""
    from videolift.core.report import histogram_figure, label_rates_figure
    from videolift.evaluate.metrics import summarize

    assert histogram_figure({"base": [0.1, 0.5]}, "oracle reward per video").axes[0].get_ylabel() == "videos"
    fig = label_rates_figure({"base": summarize([dict.fromkeys(DIMS, "Good")])})
    assert fig.axes[0].get_ylabel() == "share of videos"


def test_a_run_without_an_oracle_says_it_has_no_reward_hacking_guard(tmp_path):
    """Outside the toy world there is no oracle: the guard was left out without a word, as if it passed."""
    from videolift.pipeline.run_report import write_report

    _workdir(tmp_path, {"base": [("p", 1)], "aligned_rwl": [("p", 1)]})
    summary = _run_summary()
    del summary["align_rewards"]
    for key in ("base", "aligned_rwl"):
        summary[key] |= {"oracle_all_good_rate": None, "oracle_mean_reward": None}
    said = " ".join(Page(write_report(tmp_path, summary).read_text()).warnings())
    assert "No reward-hacking guard: it needs a rater independent of the critic" in said
    summary["base"]["oracle_mean_reward"] = summary["aligned_rwl"]["oracle_mean_reward"] = 0.5  # toy world
    assert "No reward-hacking guard" not in write_report(tmp_path, summary).read_text()
