import numpy as np
import pytest

from videolift.toy.grammar import (
    ACTIONS,
    COLOURS,
    HELDOUT_COMBOS,
    PAIR_ACTIONS,
    SCENES,
    SHAPES,
    PromptSpec,
    Subject,
    all_specs,
    parse_prompt,
    sample_distinct,
    sample_spec,
    split_specs,
)


def test_every_prompt_parses_back_to_its_spec():
    specs = list(all_specs())
    assert len(specs) == len(set(specs)) > 3000
    for spec in specs:
        assert parse_prompt(spec.text) == spec
    assert parse_prompt("  A Red  Circle moves LEFT in a sand desert. ") == PromptSpec(
        (Subject("red", "circle"),), "left", "desert"
    )


@pytest.mark.parametrize(
    ("text", "subjects", "action"),
    [
        ("two blue squares bounce in the night sky", (Subject("blue", "square"),) * 2, "bounce"),
        (
            "a green triangle and a yellow circle grow on a snow field",
            (Subject("green", "triangle"), Subject("yellow", "circle")),
            "grow",
        ),
        ("a red circle moves in a circle on a grey road", (Subject("red", "circle"),), "orbit"),
    ],
)
def test_parse_examples(text, subjects, action):
    spec = parse_prompt(text)
    assert (spec.subjects, spec.action, spec.text) == (subjects, action, text)


@pytest.mark.parametrize(
    "text",
    [
        "a purple circle moves left in a sand desert",  # unknown colour
        "a red circle moves left",  # no scene
        "two red circles moves left in a sand desert",  # plural subject, singular verb
        "a red circle move left in a sand desert",  # singular subject, plural verb
        "a dog runs in the park",
        "two red circles move in a circle on a snow field",  # orbits have one subject
        "a red circle and a red circle move left in a sand desert",  # the grammar says "two red circles"
    ],
)
def test_parse_rejects_text_outside_the_grammar(text):
    with pytest.raises(ValueError, match="toy-world prompt|does not agree"):
        parse_prompt(text)


def _triples(specs):
    return {(s.colour, s.shape, p.action) for p in specs for s in p.subjects}


def _words(specs):
    subjects = [s for p in specs for s in p.subjects]
    return (
        {s.colour for s in subjects},
        {s.shape for s in subjects},
        {p.action for p in specs},
        {p.scene for p in specs},
    )


def test_heldout_split_is_disjoint_and_only_new_combinations():
    train, heldout = set(split_specs("train")), set(split_specs("heldout"))
    assert train and heldout and not train & heldout
    assert train | heldout == set(all_specs())
    assert not _triples(train) & HELDOUT_COMBOS  # no held-out combination is ever seen in training
    assert _triples(heldout) >= HELDOUT_COMBOS
    assert _words(train) == (set(COLOURS), set(SHAPES), set(ACTIONS), set(SCENES))  # every single word is


def test_pairs_never_orbit_and_sampling_respects_the_split():
    assert all(s.count == 1 for s in all_specs() if s.action == "orbit")
    assert "orbit" not in PAIR_ACTIONS
    rng = np.random.default_rng(0)
    drawn = [sample_spec(rng, "heldout") for _ in range(200)]
    assert all(s.split == "heldout" for s in drawn)
    assert {s.count for s in drawn} == {1, 2}


def test_sample_distinct_is_deterministic_and_bounded():
    a, b = sample_distinct(50, "train", seed=3), sample_distinct(50, "train", seed=3)
    assert a == b and len(set(a)) == 50
    assert sample_distinct(50, "train", seed=4) != a
    everything = sample_distinct(len(split_specs("heldout")), "heldout")
    assert set(everything) == set(split_specs("heldout"))
    with pytest.raises(ValueError, match="only"):
        sample_distinct(len(split_specs("heldout")) + 1, "heldout")
