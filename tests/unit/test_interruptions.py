"""Backchannels do not interrupt; real interjections do."""

import pytest

from gateway.conversation.interruptions import DEFAULT_BACKCHANNELS, is_backchannel


@pytest.mark.parametrize("text", ["Mm-hm.", "yeah", "Okay.", "Yeah, okay, right.", "uh huh", "", "Got it, thanks."])
def test_backchannels(text):
    assert is_backchannel(text, DEFAULT_BACKCHANNELS, min_words=3)


@pytest.mark.parametrize(
    "text", ["Wait, that's not my address.", "No no, stop please", "Actually I live on Oak Street"]
)
def test_interruptions(text):
    assert not is_backchannel(text, DEFAULT_BACKCHANNELS, min_words=3)


def test_short_non_backchannel_below_min_words_does_not_interrupt():
    assert is_backchannel("No.", DEFAULT_BACKCHANNELS, min_words=2)
    assert not is_backchannel("No, stop.", DEFAULT_BACKCHANNELS, min_words=2)
