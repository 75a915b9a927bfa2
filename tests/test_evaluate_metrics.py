import io

import numpy as np
import pytest

from videolift.core.report import Report, curves_figure, frame_strip_png, label_rates_figure
from videolift.evaluate.metrics import (
    format_difference,
    paired_difference,
    pairwise,
    replicate_difference,
    replicate_summary,
    summarize,
)

G, N, B = "Good", "Normal", "Bad"


def r(sc, ms, vf):
    return {"semantic_consistency": sc, "motion_smoothness": ms, "video_fidelity": vf}


def test_summarize_rates_reward_and_all_good():
    s = summarize([r(G, G, G), r(G, B, N), r(None, G, G), r(B, B, B)])
    assert s["videos"] == 4
    assert s["all_good_rate"] == pytest.approx(0.25)
    assert s["dimensions"]["semantic_consistency"] == {
        "Good": 0.5,
        "Normal": 0.0,
        "Bad": 0.25,
        "unparsed": 0.25,
    }
    # reward of the unparsed video comes from its parsed dimensions only
    expected = [0.9, (0.9 + 0.05 + 0.2) / 3, 0.9, 0.05]
    assert s["mean_reward"] == pytest.approx(np.mean(expected))
    assert summarize([])["all_good_rate"] is None
    # standard errors: all-Good is a 0/1 per video, so sqrt(p(1-p)/(n-1)) with the sample variance
    assert s["all_good_rate_se"] == pytest.approx(np.std([1, 0, 0, 0], ddof=1) / 2)
    assert s["mean_reward_se"] == pytest.approx(np.std(expected, ddof=1) / 2)
    assert summarize([r(G, G, G)])["all_good_rate_se"] is None  # one video: no spread to measure


def test_labels_count_in_any_case_as_rs_training_reads_them():
    # A hand-made or older scores file may spell labels "good" / " GOOD ": RS training keeps such a
    # video, so evaluation must count it Good too (it refused the file).
    mixed = [r("good", " GOOD ", G), r("good", "bad", "normal"), r(None, "Good", "good")]
    canonical = [r(G, G, G), r(G, B, N), r(None, G, G)]
    assert summarize(mixed) == summarize(canonical)
    assert summarize(mixed)["all_good_rate"] == pytest.approx(1 / 3)
    assert paired_difference(mixed, canonical)["all_good_rate"]["diff"] == 0.0
    assert pairwise(mixed, canonical)["overall"]["tie"] == 1.0


def test_paired_difference_uses_per_video_differences():
    a = [r(G, G, G), r(G, G, G), r(B, G, G), r(G, G, G)]
    b = [r(G, G, N), r(G, G, G), r(B, G, G), r(None, None, None)]
    d = paired_difference(a, b)
    good = [1, 0, 0, 1]
    assert d["all_good_rate"]["diff"] == pytest.approx(0.5)
    assert d["all_good_rate"]["se"] == pytest.approx(np.std(good, ddof=1) / 2)
    # the fourth pair has no parsed label in B: left out of the reward difference only
    assert d["mean_reward"]["pairs"] == 3 and d["all_good_rate"]["pairs"] == 4
    assert d["mean_reward"]["diff"] == pytest.approx((0.9 - (0.9 + 0.9 + 0.2) / 3) / 3)  # Normal = 0.2
    # Identical ratings: zero difference and zero spread, though each side's own rate has an SE.
    same = paired_difference([r(G, G, G), r(B, B, B)], [r(G, G, G), r(B, B, B)])
    assert same["all_good_rate"] == {"diff": 0.0, "se": 0.0, "pairs": 2}
    text = format_difference(d)
    assert text == "all Good +50.0 ± 28.9 points, reward +0.078 ± 0.078"
    with pytest.raises(ValueError, match="aligned"):
        paired_difference(a, b[:2])


def test_replicates_average_per_video_and_add_the_seed_spread():
    all_good, bad = r(G, G, G), r(B, B, B)
    # recipe A: two training seeds on the same 4 videos (all-Good rates 0.75 and 0.25)
    a = [[all_good, all_good, all_good, bad], [all_good, bad, bad, bad]]
    # recipe B: a single (untrained) base, all-Good rate 0.25
    b = [[bad, bad, all_good, bad]]
    sa = replicate_summary(a)
    assert sa["replicates"] == 2 and sa["all_good_rate"] == pytest.approx(0.5)
    assert sa["all_good_rate_seed_se"] == pytest.approx(np.std([0.75, 0.25], ddof=1) / np.sqrt(2))  # 0.25
    assert replicate_summary(b)["all_good_rate_seed_se"] is None  # one replicate: no spread

    d = replicate_difference(a, b)["all_good_rate"]
    per_video = [1.0 - 0.0, 0.5 - 0.0, 0.5 - 1.0, 0.0 - 0.0]  # replicate-averaged A minus B, per video
    assert d["diff"] == pytest.approx(0.25) and d["replicates"] == [2, 1] and d["pairs"] == 4
    assert d["eval_se"] == pytest.approx(np.std(per_video, ddof=1) / 2)
    assert d["seed_se"] == pytest.approx(0.25)  # only A has replicates
    assert d["se"] == pytest.approx(np.hypot(d["eval_se"], 0.25))
    # With one replicate each it is the plain paired difference, and no seed term.
    single = replicate_difference(a[:1], b)
    plain = paired_difference(a[0], b[0])
    assert single["all_good_rate"]["diff"] == pytest.approx(plain["all_good_rate"]["diff"])
    assert single["all_good_rate"]["se"] == pytest.approx(plain["all_good_rate"]["se"])
    assert single["mean_reward"]["seed_se"] is None
    # Rewards average over the replicates whose labels parsed on every dimension: a lone parsed Good
    # (a reward of 0.9 from that dimension alone) is not a win over Bad.
    parsed = replicate_difference([[r(G, G, G)], [r(None, None, None)]], [[r(B, B, B)]])
    assert parsed["mean_reward"]["diff"] == pytest.approx(0.9 - 0.05) and parsed["mean_reward"]["pairs"] == 1
    partly = replicate_difference([[r(G, None, None)], [r(N, N, N)]], [[r(B, B, B)]])["mean_reward"]
    assert partly["diff"] == pytest.approx(0.2 - 0.05) and partly["pairs"] == 1  # the Normal replicate only
    assert replicate_difference([[r(G, None, None)]], [[r(B, B, B)]])["mean_reward"]["pairs"] == 0
    with pytest.raises(ValueError, match="same videos"):
        replicate_difference(a, [[bad]])


def test_pairwise_counts_wins_ties_losses_per_dimension():
    a = [r(G, G, G), r(N, G, B), r(B, B, B)]
    b = [r(N, G, G), r(N, B, N), r(None, B, G)]
    p = pairwise(a, b)
    assert p["semantic_consistency"] == pytest.approx({"win": 2 / 3, "tie": 1 / 3, "loss": 0.0})
    assert p["motion_smoothness"] == pytest.approx({"win": 1 / 3, "tie": 2 / 3, "loss": 0.0})
    assert p["video_fidelity"] == pytest.approx({"win": 0.0, "tie": 1 / 3, "loss": 2 / 3})
    assert p["overall"] == pytest.approx({"win": 2 / 3, "tie": 0.0, "loss": 1 / 3})  # counts of Good dims
    with pytest.raises(ValueError, match="aligned"):
        pairwise(a, b[:2])


def test_report_is_self_contained_html(tmp_path):
    rep = Report("demo")
    rep.heading("Summary")
    rep.table(["model", "reward"], [["base", 0.31234], ["aligned", None]])
    rep.figure(label_rates_figure({"base": summarize([r(G, N, B)]), "rwl": summarize([r(G, G, G)])}))
    rep.frames([("base", np.zeros((3, 8, 8, 3), np.uint8))])
    out = rep.write(tmp_path / "report.html")
    text = out.read_text()
    assert "<td>0.312</td>" in text and "<td>-</td>" in text
    assert text.count("data:image/png;base64,") == 2
    assert "http://" not in text and "https://" not in text  # opens offline
    png = frame_strip_png(np.zeros((4, 8, 8, 3), np.uint8), scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_real_sized_clip_is_shown_as_nine_small_frames_not_a_25_mb_strip(tmp_path):
    from PIL import Image

    from videolift.core.report import STRIP_HEIGHT, frame_strip

    clip = np.random.default_rng(0).integers(0, 255, (49, 480, 720, 3), dtype=np.uint8)  # CogVideoX-2B's
    image, mime = frame_strip(clip)
    shown = Image.open(io.BytesIO(image))
    assert mime == "image/jpeg" and shown.size == (9 * 216 + 8 * 2, STRIP_HEIGHT) and len(image) < 1 << 20
    toy, mime = frame_strip(np.zeros((9, 48, 48, 3), np.uint8))  # toy clips: every frame, as pixels
    assert mime == "image/png" and Image.open(io.BytesIO(toy)).size == (3 * (9 * 50 - 2), 144)
    mid, mime = frame_strip(np.zeros((49, 100, 100, 3), np.uint8))  # 9 of its frames, as they are
    assert mime == "image/png" and Image.open(io.BytesIO(mid)).size == (9 * 102 - 2, 100)
    rep = Report("real")
    rep.frames([("base", clip)])
    assert "data:image/jpeg;base64," in rep.write(tmp_path / "r.html").read_text()


def test_standard_errors_are_clustered_by_prompt():
    from videolift.core.stats import mean_and_cluster_se, mean_and_se

    values = [1.0, 1.0, -1.0, -1.0, 0.5, 0.25]
    assert mean_and_cluster_se(values, range(6)) == pytest.approx(mean_and_se(values))  # one video a prompt
    # two prompts whose two videos agree: two independent pieces of evidence, not four
    diff, se = mean_and_cluster_se([1.0, 1.0, -1.0, -1.0], ["p", "p", "q", "q"])
    assert diff == 0.0 and se == pytest.approx(1.0) and mean_and_se([1.0, 1.0, -1.0, -1.0])[1] < 0.6
    # A model that wins both videos of one prompt and loses both of another: clustered SE is larger.
    a = [r(G, G, G), r(G, G, G), r(B, B, B), r(B, B, B)]
    b = [r(B, B, B), r(B, B, B), r(G, G, G), r(G, G, G)]
    plain, clustered = paired_difference(a, b), paired_difference(a, b, clusters=["p", "p", "q", "q"])
    assert clustered["all_good_rate"]["diff"] == plain["all_good_rate"]["diff"] == 0.0
    assert clustered["all_good_rate"]["se"] > plain["all_good_rate"]["se"]
    assert summarize(a, clusters=["p", "p", "q", "q"])["all_good_rate_se"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="4 values but 3 cluster labels"):
        mean_and_cluster_se([1.0] * 4, ["p", "p", "q"])


def test_a_partly_unparsed_critic_answer_is_not_a_reward_win():
    # Good on the one parsed dimension would be a reward of 0.9 against 0.33 for Good / Bad / Bad.
    a = [r(G, None, None), r(G, G, G)]
    b = [r(G, B, B), r(B, G, G)]
    d = paired_difference(a, b)
    assert d["mean_reward"]["pairs"] == 1  # only the pair rated on every dimension
    assert d["mean_reward"]["diff"] == pytest.approx(0.9 - (0.05 + 0.9 + 0.9) / 3)
    assert d["all_good_rate"]["pairs"] == 2


def test_a_curve_of_one_logged_point_is_drawn():
    """A short run logs its loss once: a plain line through one point would leave the panel empty."""
    fig = curves_figure({"aligned_rwl": [(10, 0.15)], "long": [(s, 1 / s) for s in range(1, 200)]}, "loss")
    short, long = fig.axes[0].lines
    assert short.get_marker() == "o" and long.get_marker() in (None, "None", "")


def test_the_recipe_tables_say_their_error_columns_are_the_all_good_rates(capsys):
    """The recipes' difference row shows all-Good and reward with their combined SE, then the evaluation
    and seed SEs of the all-Good difference only: the columns and the printed line say so (they read as
    the errors of the whole row)."""
    from videolift.evaluate.cli import print_recipes
    from videolift.evaluate.eval_report import comparison_tables

    a = [[r(G, G, G), r(B, B, B), r(G, G, G)], [r(G, G, G), r(G, G, G), r(B, B, B)]]
    base = [[r(B, B, B), r(B, B, B), r(G, G, G)]]
    evaluation = {
        "groups": {"rwl": {"members": ["rwl.1", "rwl.2"], "oracle": replicate_summary(a)},
                   "base": {"members": ["base"], "oracle": replicate_summary(base)}},
        "group_differences": {"rwl vs base": {"oracle": replicate_difference(a, base)}},
    }  # fmt: skip
    tables = []

    class Shown:
        def table(self, header, rows, caption=""):
            tables.append(header)

    comparison_tables(Shown(), evaluation)
    assert tables[-1][-2:] == ["all-Good evaluation SE (points)", "all-Good seed SE (points)"]
    print_recipes(evaluation)
    assert "; all-Good seed SE" in " ".join(capsys.readouterr().out.split())  # however the console wraps
