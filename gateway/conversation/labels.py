"""Speaker labels the LLM writes before its reply (``Sam: Sure, ...``), removed before TTS.

Small instruct models that were shown example exchanges in the prompt (``Caller: … / Sam: …``,
see :func:`gateway.agents.defaults.default_system_prompt`) sometimes start their answer with the
speaker's name. Said aloud it is nonsense ("Sam colon …") and it would enter the history, so
the reply's text stream is filtered before the speaker sees it.
"""

from __future__ import annotations

import re

LABEL = re.compile(r"\s*([A-Z][A-Za-z]{0,19})\s?:\s")
"""A one-word capitalised label and a colon at the very start of a reply, then whitespace."""
_MAYBE_LABEL = re.compile(r"\s*([A-Z][A-Za-z]{0,19}\s?:?)?")
"""What a reply's head may look like while it could still become a label."""
MAX_HEAD_CHARS = 24
"""Past this many characters without a label, the head is spoken as it is."""


class SpeakerLabelFilter:
    """Removes a leading ``Name:`` label from one reply's LLM text deltas.

    The first deltas are held only while the reply's head could still be a label (a capitalised
    word, optionally a colon, at most :data:`MAX_HEAD_CHARS` characters); then everything passes
    through unchanged, so the first spoken text waits a token or two at most. Text that merely
    contains a colon later (``at 9:30``, ``Note the fee: 89 dollars``) is untouched.
    """

    def __init__(self) -> None:
        self._head: str | None = ""

    def push(self, delta: str) -> str:
        """The text of ``delta`` to speak now (``""`` while the head is held)."""
        if self._head is None:
            return delta
        head = self._head + delta
        if (m := LABEL.match(head)) is not None:
            self._head = None
            return head[m.end() :]
        if len(head) > MAX_HEAD_CHARS or _MAYBE_LABEL.fullmatch(head) is None:
            self._head = None
            return head
        self._head = head
        return ""

    def end(self) -> str:
        """What is still held when the reply's text ends (a short reply such as ``Yes``)."""
        head, self._head = self._head or "", None
        return head
