"""The speaker-label filter on the LLM's text stream (gateway.conversation.labels)."""

from __future__ import annotations

import pytest

from gateway.conversation.labels import SpeakerLabelFilter


def filtered(parts: list[str]) -> list[str]:
    """The non-empty texts the filter lets out for ``parts`` (one reply's deltas)."""
    f = SpeakerLabelFilter()
    out = [f.push(p) for p in parts] + [f.end()]
    return [o for o in out if o]


@pytest.mark.parametrize(
    "parts",
    [
        ["Sam", ":", " He", " turned", " sharply."],
        ["Sam: He", " turned", " sharply."],
        [" Sam", " :", " He turned sharply."],
        ["Receptionist:", " He", " turned sharply."],
    ],
)
def test_a_leading_label_is_removed(parts):
    assert "".join(filtered(parts)) == "He turned sharply."


@pytest.mark.parametrize(
    "parts",
    [
        ["Sure", ".", " What", " is", " your", " address?"],
        ["We", " open", " at", " 9:30", " tomorrow."],
        ["Note", " the", " fee: 89 dollars."],
        ["Sam", " will", " call", " you", " back."],
        ["Yes"],
        ["OK:no space after the colon"],
    ],
)
def test_text_without_a_label_passes_unchanged(parts):
    assert "".join(filtered(parts)) == "".join(parts)


def test_only_the_head_is_held_back():
    out = filtered(["Sure", ",", " we", " can", " come", " today."])
    assert out[0] == "Sure," and out[1:] == [" we", " can", " come", " today."]


def test_a_label_later_in_the_reply_is_kept():
    assert "".join(filtered(["Well. ", "Sam: hi"])) == "Well. Sam: hi"
