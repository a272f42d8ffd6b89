"""Keyword corrections (the sentence splitter is the TTS service's: tests/tts/test_tts_text.py)."""

from gateway.conversation.corrections import Corrections


def test_corrections_whole_word_case_insensitive():
    c = Corrections({"acne plumbing": "Acme Plumbing", "sink": "basin"})
    assert c.apply("I called ACNE   Plumbing about my sink.") == "I called Acme Plumbing about my basin."
    assert c.apply("sinking feeling") == "sinking feeling"  # not a whole word


def test_corrections_longest_pattern_wins_and_specials_are_literal():
    c = Corrections({"water": "H2O", "water heater": "boiler", "c++": "C plus plus"})
    assert c.apply("my water heater and water") == "my boiler and H2O"
    assert c.apply("I code c++ daily") == "I code C plus plus daily"


def test_patterns_with_extra_spaces_match_any_whitespace():
    c = Corrections({"acne  plumbing": "Acme Plumbing"})
    assert c.apply("call acne plumbing now") == "call Acme Plumbing now"


def test_empty_corrections_leave_text_alone():
    assert Corrections({}).apply("hello") == "hello"
