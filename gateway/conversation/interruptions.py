"""When caller speech over the agent is an interruption, and when it is only a backchannel. Pure.

The approach of LiveKit Agents' ``min_interruption_duration``/``min_interruption_words`` and
pipecat's ``MinWordsInterruptionStrategy``: long speech interrupts at once; short speech is
transcribed first and interrupts only if it has enough words that are not acknowledgements.
"""

from __future__ import annotations

import re

DEFAULT_BACKCHANNELS = (
    "mm", "mhm", "mm-hm", "mm-hmm", "uh-huh", "uh huh", "hmm", "yeah", "yes", "yep", "yup", "okay", "ok",
    "right", "sure", "alright", "all right", "got it", "i see", "cool", "great", "thanks", "thank you",
    "ajá", "aja", "sí", "si", "vale", "claro", "bueno", "de acuerdo", "entiendo", "ya", "gracias", "mhm", "ok",
)  # fmt: skip

_WORDS = re.compile(r"[\w']+(?:-[\w']+)*")


def words(text: str) -> list[str]:
    """Lower-case word tokens (hyphenated words such as "mm-hm" stay one token)."""
    return _WORDS.findall(text.lower())


def is_backchannel(text: str, backchannels: tuple[str, ...] | list[str], min_words: int) -> bool:
    """True if ``text`` should not interrupt the agent.

    It is a backchannel when it is empty, or every word belongs to an acknowledgement phrase
    ("mm-hm", "yeah okay", "right, got it"), or it has fewer than ``min_words`` words.
    """
    return len(words(text)) < min_words or only_backchannels(text, backchannels)


def only_backchannels(text: str, backchannels: tuple[str, ...] | list[str]) -> bool:
    """True if ``text`` is empty or every word belongs to an acknowledgement phrase (whatever its length)."""
    tokens = words(text)
    phrases = {tuple(words(p)) for p in backchannels}
    longest = max((len(p) for p in phrases), default=1)
    i = 0
    while i < len(tokens):
        for n in range(min(longest, len(tokens) - i), 0, -1):
            if tuple(tokens[i : i + n]) in phrases:
                i += n
                break
        else:
            return False
    return True
