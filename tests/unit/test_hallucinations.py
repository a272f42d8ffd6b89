"""Whisper's hallucinations on noise are dropped, the caller's real words kept (scores measured on tiny.en)."""

from __future__ import annotations

import pytest

from gateway.conversation.hallucinations import hallucination, normalise


@pytest.mark.parametrize(
    ("text", "no_speech", "logprob", "language", "reason"),
    [
        ("So", 0.54, -1.98, "en", "low_confidence"),  # a cough, measured
        ("Thank you.", 0.11, -0.15, "en", None),  # a caller saying it, measured
        ("Okay, thanks, bye.", 0.01, -0.28, "en", None),
        ("You.", 0.29, -0.46, "en", "known_hallucination"),  # on its own, with doubt: noise
        ("Thanks for watching!", 0.05, -0.8, "en", "known_hallucination"),
        ("My name is John Smith.", 0.3, -0.9, "en", None),  # doubtful scores, but not a known phrase
        ("Anything at all", 0.7, -0.2, "en", "no_speech"),
        ("Subtítulos realizados por la comunidad de Amara.org", 0.3, -0.5, "es", "known_hallucination"),
        ("Gracias.", 0.25, -0.4, "es", "known_hallucination"),
        ("Gracias, hasta mañana.", 0.25, -0.4, "es", None),
        ("Thank you.", None, None, "en", None),  # no scores: nothing to judge by
        ("", 0.9, -2.0, "en", None),  # nothing to drop
    ],
)
def test_hallucinations(
    text: str, no_speech: float | None, logprob: float | None, language: str, reason: str | None
) -> None:
    assert hallucination(text, no_speech, logprob, language) == reason


def test_normalise() -> None:
    assert normalise("  Thank you!! ") == "thank you"
    assert normalise("Subtítulos realizados por la comunidad de Amara.org") == (
        "subtítulos realizados por la comunidad de amara org"
    )
