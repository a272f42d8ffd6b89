"""Text normalisation and sentence segmentation (no model)."""

from __future__ import annotations

import pytest

from services.tts.normalize import normalize_for_speech
from services.tts.segmenter import SentenceSplitter, split_text


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),
        ("Call (800) 555-0199 now", "Call eight zero zero, five five five, zero one nine nine now"),
        ("We open at 9:30 am.", "We open at nine thirty AM."),
        ("Close at 5pm. Bye", "Close at five PM. Bye"),
        ("Meet at 14:05", "Meet at fourteen oh five"),
        ("Lunch at 12:00", "Lunch at twelve o'clock"),
        ("It is $12.50 or $1", "It is twelve dollars and fifty cents or one dollar"),
        ("Raised $5 million", "Raised five million dollars"),
        ("Only $0.05", "Only five cents"),
        ("Dr. Smith is on Elm Dr. today", "Doctor Smith is on Elm Drive today"),
        ("123 Main St. in St. Louis", "one twenty-three Main Street in Saint Louis"),
        ("Mr. Jones, e.g. order No. 42", "Mister Jones, for example order number forty-two"),
        ("In 2024 we had 1,234 calls", "In twenty twenty-four we had one thousand two hundred thirty-four calls"),
        ("Growth of 3.5% on the 21st", "Growth of three point five percent on the twenty-first"),
        ("**Great!** 😀 See [the docs](https://x.io) 👍🏽", "Great! See the docs"),
        ("# Hours\n- Mon 9-5\n- Sat closed", "Hours. Mon nine to five. Sat closed."),
        ("Write to bob.smith@example.com", "Write to bob dot smith at example dot com"),
        ("", ""),
        ("🎉🎉", ""),
    ],
)
def test_normalize_for_speech(text: str, spoken: str) -> None:
    assert normalize_for_speech(text) == spoken


def test_split_text_keeps_abbreviations_and_decimals() -> None:
    text = "Dr. Smith lives at 12 Main St. in St. Louis. It costs $3.50 today! Ok?"
    assert split_text(text) == ["Dr. Smith lives at 12 Main St. in St. Louis.", "It costs $3.50 today!", "Ok?"]


def test_splitter_incremental_fragments() -> None:
    splitter = SentenceSplitter(first_clause_chars=24)
    out: list[str] = []
    for fragment in [
        "Of course, I can help",
        " you with that",
        ", right now. Your",
        " number is 555",
        "-123-4567",
        ". It",
    ]:
        out += splitter.feed(fragment)
    # first segment of the turn ends at a comma once long enough; later ones only at sentence ends
    assert out == ["Of course, I can help you with that,", "right now.", "Your number is 555-123-4567."]
    assert splitter.flush() == ["It"]
    assert splitter.flush() == []


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        # no early comma: the first segment ends after 4 words, before the number (never inside it)
        (
            "A repair usually costs 150 to 300 dollars. Shall I book it?",
            ["A repair usually costs", "150 to 300 dollars.", "Shall I book it?"],
        ),
        # before a phrase-opening word when one comes right after word 4 or 5
        (
            "Our technicians are available from 8 to 6 on weekdays.",
            ["Our technicians are available", "from 8 to 6 on weekdays."],
        ),
        ("I am sorry to hear about the leak under the sink.", ["I am sorry to hear", "about the leak under the sink."]),
        # never after an article/preposition/auxiliary, inside a name or before an abbreviation
        ("I can have a plumber come out today.", ["I can have a plumber", "come out today."]),
        (
            "Dr. Smith lives at 12 Main St. in St. Louis now and then.",
            ["Dr. Smith lives at 12 Main St. in St. Louis", "now and then."],
        ),
        ("Got it John Smith at 42 Oak Street is that right?", ["Got it John Smith", "at 42 Oak Street is that right?"]),
        # a comma first still wins; a short first sentence stays whole; later sentences are not cut
        ("Sure, I can help with that.", ["Sure,", "I can help with that."]),
        (
            "We can send someone today. The visit costs 90 dollars in total.",
            ["We can send someone today.", "The visit costs 90 dollars in total."],
        ),
        # fewer than two words would be left before the sentence's end
        ("That is fine for me. Thanks.", ["That is fine for me.", "Thanks."]),
    ],
)
def test_first_segment_may_end_at_a_word_boundary(text: str, segments: list[str]) -> None:
    assert split_text(text, first_clause_chars=4, first_phrase_words=4) == segments
    # streamed word by word (as LLM tokens: " word"), the same segments come out
    splitter = SentenceSplitter(first_clause_chars=4, first_phrase_words=4)
    first, *rest = text.split(" ")
    out = splitter.feed(first)
    for word in rest:
        out += splitter.feed(" " + word)
    assert out + splitter.flush() == segments


def test_word_boundary_first_segment_is_off_by_default_and_per_turn() -> None:
    text = "A repair usually costs 150 to 300 dollars."
    assert split_text(text, first_clause_chars=4) == [text]
    splitter = SentenceSplitter(first_clause_chars=4, first_phrase_words=4)
    # the cut after "costs" is taken once "150" shows it does not open a phrase and the boundary
    # after "150" is ruled out, which needs "300" whole ("30" may be "30th")
    assert splitter.feed("A repair usually costs 150 to 30") == []
    assert splitter.feed("0 ") == ["A repair usually costs"]
    assert splitter.feed("dollars. And a repair usually costs 150 to 300 dollars. ") == [
        "150 to 300 dollars.",
        "And a repair usually costs 150 to 300 dollars.",
    ]
    assert splitter.flush() == []
    assert splitter.feed("A repair usually costs 150 to 300 ") == ["A repair usually costs"]  # a new turn


def test_splitter_waits_for_whitespace_after_a_period() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("That is $3.") == []
    assert splitter.feed("50 total. Thanks") == ["That is $3.50 total."]
    splitter.reset()
    assert splitter.buffered == ""


def test_splitter_cuts_run_on_text() -> None:
    segments = split_text("word " * 200, max_chars=120)
    assert len(segments) > 1
    assert all(len(s) <= 120 for s in segments)
    assert " ".join(segments).split() == ["word"] * 200


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("1" * 307, " ".join(["one"] * 307)),  # num2words raised OverflowError from 307 digits
        ("Card 4111111111111111", "Card four one one one one one one one one one one one one one one one"),
        ("$" + "2" * 20, " ".join(["two"] * 20) + " dollars"),
        ("1" * 20 + "th", " ".join(["one"] * 20)),
        (
            "999999999999999",
            "nine hundred ninety-nine trillion nine hundred ninety-nine billion nine hundred "
            "ninety-nine million nine hundred ninety-nine thousand nine hundred ninety-nine",
        ),
    ],
)
def test_long_numbers_are_read_digit_by_digit(text: str, spoken: str) -> None:
    assert normalize_for_speech(text) == spoken


def test_normalize_never_raises_on_huge_numbers() -> None:
    for text in ("9" * 5000, "$" + "9" * 5000 + ".99", "9" * 5000 + "%", "9" * 5000 + "th", "-" + "9" * 400):
        assert normalize_for_speech(text).count("nine") >= 400
