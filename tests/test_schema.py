import pytest
from pydantic import ValidationError

from videolift.core.reward import RewardConfig
from videolift.core.schema import Dimension, HRARecord, Label, format_answer, parse_answer


@pytest.mark.parametrize(
    ("text", "label", "reason"),
    [
        ("Bad. The panda is not wearing a spacesuit.", Label.Bad, "The panda is not wearing a spacesuit."),
        # A reason that mentions other labels must not flip the label (the reference script's bug).
        (
            "Good. Nothing Bad here, not even Normal flaws.",
            Label.Good,
            "Nothing Bad here, not even Normal flaws.",
        ),
        (
            "Normal. The motion is mostly good but bad at the end.",
            Label.Normal,
            "The motion is mostly good but bad at the end.",
        ),
        ("good", Label.Good, ""),
        ("bad. lower-case label", Label.Bad, "lower-case label"),
        ("Good.", Label.Good, ""),
        ("   Normal.    extra   whitespace  ", Label.Normal, "extra   whitespace"),
        ("**Bad**: markup", Label.Bad, "markup"),
        ("Label: Normal - prefixed", Label.Normal, "prefixed"),
        ('Bad. "Quoted" reason keeps its quotes', Label.Bad, '"Quoted" reason keeps its quotes'),
    ],
)
def test_parse_answer_reads_the_leading_label(text, label, reason):
    assert parse_answer(text) == (label, reason)


@pytest.mark.parametrize("text", ["", "The video is Good.", "Goodness, what a video", "N/A", "Fine."])
def test_parse_answer_without_leading_label_is_unparsed(text):
    label, _ = parse_answer(text)
    assert label is None


def test_format_then_parse_round_trips():
    for label in Label:
        for reason in ["", "The circle is green, but the prompt asks for red.", "Bad things. Normal too."]:
            assert parse_answer(format_answer(label, reason)) == (label, reason)


def test_record_validation_and_defaults():
    rec = HRARecord.model_validate(
        {
            "video": "v/1.mp4",
            "prompt": "p",
            "ratings": {"motion_smoothness": {"label": "normal", "reason": " r "}},
            "truth": {"x": 1},
        }
    )
    assert rec.video_id == "v/1.mp4"
    assert rec.ratings[Dimension.motion_smoothness].label is Label.Normal
    assert rec.ratings[Dimension.motion_smoothness].reason == "r"
    assert rec.to_json()["truth"] == {"x": 1}  # extra fields ride along
    with pytest.raises(ValidationError, match="unknown dimension"):
        HRARecord.model_validate({"video": "a", "prompt": "p", "ratings": {"smoothness": {"label": "Good"}}})
    with pytest.raises(ValidationError, match="unknown label"):
        HRARecord.model_validate(
            {"video": "a", "prompt": "p", "ratings": {"video_fidelity": {"label": "Great"}}}
        )
    with pytest.raises(ValidationError):
        HRARecord.model_validate({"video": "a", "ratings": {}})


def test_reward_defaults_are_the_papers():
    cfg = RewardConfig()
    dims = list(Dimension)
    assert cfg.aggregate({d: "Good" for d in dims}) == pytest.approx(0.9)
    assert cfg.aggregate({d: "Bad" for d in dims}) == pytest.approx(0.05)
    assert cfg.aggregate(dict(zip(dims, ["Good", "Normal", "Bad"], strict=True))) == pytest.approx(
        (0.9 + 0.2 + 0.05) / 3
    )
    assert cfg.aggregate({dims[0]: "Normal"}) == pytest.approx(0.2)
    # reward(): parsed labels only; None when nothing the mapping counts was parsed
    assert cfg.reward({dims[0]: "Normal", dims[1]: None}) == pytest.approx(0.2)
    assert cfg.reward({dims[0]: None}) is None
    weighted = RewardConfig(aggregation="weighted", weights={dims[0]: 1, dims[1]: 0, dims[2]: 0})
    assert weighted.reward({dims[0]: "Good", dims[1]: "Bad"}) == pytest.approx(0.9)
    assert weighted.reward({dims[0]: None, dims[1]: "Good"}) is None


def test_reward_config_from_file(tmp_path):
    path = tmp_path / "reward.yaml"
    path.write_text("scores: {good: 1.0, normal: 0.5, bad: 0.0}\naggregation: min\n")
    cfg = RewardConfig.load(path)
    assert cfg.aggregate({"semantic_consistency": "Good", "video_fidelity": "Normal"}) == 0.5
    path.write_text("scores: {good: 1.0}\n")
    with pytest.raises(Exception, match=r"reward\.yaml.*scores.*missing score for Normal, Bad"):
        RewardConfig.load(path)


def test_trim_step_log_keeps_steps_up_to_the_checkpoint(tmp_path):
    from videolift.core.jsonl import trim_step_log

    log = tmp_path / "train.jsonl"
    trim_step_log(log, 3)  # no log yet: nothing to do
    assert not log.exists()
    log.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4}\n{"step": 5, "lo')  # killed mid-line
    trim_step_log(log, 3)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n{"step": 3}\n'
