"""Check-then-rate: which caption words are flagged, and how the check reads."""

from __future__ import annotations

import math

from videolift.critic.checks import NOTHING_FLAGGED, format_check, token_pieces, word_flags


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


def _sentencepiece_tokenizer():
    """A Llama tokenizer (LLaVA-NeXT-Video's kind): sentencepiece-style, words start with a space mark."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer, raw.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    raw.train_from_iterator(
        ["two red circles move left in a sand desert"] * 50,
        trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]),
    )
    return LlamaTokenizer(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_caption_words_are_found_with_sentencepiece_and_byte_level_tokenizers():
    from videolift.models.tiny_vlm import build_tiny_vlm

    _, processor = build_tiny_vlm()
    for tokenizer in (_sentencepiece_tokenizer(), processor.tokenizer):
        ids = tokenizer("two red circles move left", add_special_tokens=False)["input_ids"]
        pieces = token_pieces(tokenizer, ids)
        assert "".join(pieces).strip() == "two red circles move left"
        unlikely = [math.log(0.01) if "re" in p else 0.0 for p in pieces]  # the first piece of "red"
        assert word_flags(pieces, unlikely, ["x"] * len(pieces), 0.05) == [("red", "x")]
