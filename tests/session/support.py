"""Shared lines and waits of the session tests' scripts."""

from __future__ import annotations

from tests.fakes import FakeTransport, Until
from tests.fakes.speech import split_sentences

LONG_REPLY = (
    "Sure, I can help with that. Our plumbers fix leaks and clear blocked drains every single day. "
    "We also install water heaters all across Springfield. Could you tell me your name and address please?"
)
LONG_SENTENCES = split_sentences(LONG_REPLY + " ")[0]
PROBLEM = "My kitchen sink is leaking."


def finished(kind: str, count: int = 1) -> Until:
    """Wait until ``count`` replies of ``kind`` have played to their end mark."""
    return Until(lambda t: len(t.log.finished(kind)) >= count, f"{count} {kind} played to the end")


def greeted() -> Until:
    """Wait for the greeting to play to its end (the caller listens before talking)."""
    return finished("greeting")


def reply_marks_played(transport: FakeTransport) -> int:
    """Sentence marks (not end marks) of ``reply-*`` replies played so far."""
    return sum(n.startswith("reply-") and not n.endswith(":end") for _, n in transport.log.marks_played)


def first_sentence_heard() -> Until:
    """Wait until the caller has heard the first sentence of an answer."""
    return Until(lambda t: reply_marks_played(t) >= 1, "the first sentence of the answer")
