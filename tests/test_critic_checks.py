"""Check-then-rate: which caption words are flagged, and how the check reads."""

from __future__ import annotations

import math

from videolift.critic.checks import NOTHING_FLAGGED, format_check, word_flags


def test_words_with_an_unlikely_token_are_flagged_with_the_likeliest_token():
    pieces = ["a", " red", " tri", "angle", " moves", " left"]
    likely, unlikely = math.log(0.9), math.log(0.01)
    logprobs = [likely, likely, likely, unlikely, likely, unlikely]
    likeliest = ["a", " red", " tri", "x", " moves", " right"]
    # "triangle" is flagged through its second piece and reports the token expected there.
    assert word_flags(pieces, logprobs, likeliest, 0.05) == [("triangle", "x"), ("left", "right")]
    assert word_flags(pieces, logprobs, likeliest, 0.005) == []
    # A threshold above every probability flags every word; an empty likeliest token reads "end".
    assert [w for w, _ in word_flags(pieces, logprobs, likeliest, 0.95)] == [
        "a",
        "red",
        "triangle",
        "moves",
        "left",
    ]
    assert word_flags(["a", " dog"], [0.0, unlikely], ["a", ""], 0.05) == [("dog", "end")]


def test_check_text():
    assert format_check([]) == NOTHING_FLAGGED == "none."
    assert format_check([("two", "a"), ("circle", "square")]) == "two (expected a), circle (expected square)."
