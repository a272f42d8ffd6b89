"""Keyword corrections and the streaming sentence splitter."""

from gateway.conversation.corrections import Corrections
from gateway.conversation.sentences import SentenceSplitter


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


def test_splitter_emits_sentences_as_they_complete():
    sp = SentenceSplitter()
    out = []
    for delta in ["Sure", "! I can ", "help. The fee", " is 89.5 dollars", ". Bye"]:
        out += sp.push(delta)
    assert out == ["Sure!", "I can help.", "The fee is 89.5 dollars."]
    assert sp.flush() == ["Bye"]
    assert sp.flush() == []


def test_splitter_first_chunk_breaks_at_an_early_clause():
    sp = SentenceSplitter(min_clause_chars=60, first_clause_chars=24)
    first = sp.push("Of course, I can send a plumber over this afternoon, ")
    assert first == ["Of course, I can send a plumber over this afternoon,"]
    later = sp.push("and we will call you thirty minutes before, ")
    assert later == []  # after the first chunk, clauses need 60 characters
