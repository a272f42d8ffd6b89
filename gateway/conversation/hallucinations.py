"""Whisper's hallucinations on noise: transcripts that are not the caller's words. Pure.

Whisper writes plausible text for audio with no speech in it (a cough, a breath, a clatter that
VAD let through): "Thank you.", "So", "you", "Thanks for watching!", in Spanish "Gracias." or the
subtitle credits of its training data ("Subtítulos realizados por la comunidad de Amara.org").
OpenAI's own guard (``no_speech_threshold`` 0.6 with ``logprob_threshold`` −1.0, both required,
which the STT service applies per window) lets most of them through. A transcript is dropped here
(not answered, counted in ``gateway_dropped_transcripts_total{reason}``) when:

* ``no_speech``: Whisper is sure there was no speech (``no_speech_prob`` ≥ 0.6, whatever the text);
* ``low_confidence``: the text is unlikely (``avg_logprob`` < −1.0) and Whisper doubts there was
  speech (``no_speech_prob`` > 0.2), or it is very unlikely (< −1.5);
* ``known_hallucination``: the whole text is one of the phrases Whisper is known to invent on
  noise (the lists below, from the faster-whisper and openai/whisper issue trackers' reports) and
  the scores show some doubt (``no_speech_prob`` > 0.2 or ``avg_logprob`` < −0.7): a caller who
  clearly says "Thank you." is answered.

Without scores (an STT that gives none) only the text can be judged, and nothing is dropped.
Measured on the real tiny.en over the phone path (issue 17): a cough → "So" at
``no_speech_prob`` 0.54, ``avg_logprob`` −1.98 (dropped); a spoken "Thank you." → 0.11, −0.15 (kept).
"""

from __future__ import annotations

import re

KNOWN: dict[str, frozenset[str]] = {
    "en": frozenset(
        {
            "thank you",
            "thanks",
            "thank you very much",
            "thanks for watching",
            "thank you for watching",
            "thank you so much for watching",
            "please subscribe",
            "you",
            "so",
            "bye",
            "bye bye",
            "oh",
            "uh",
            "um",
            "hmm",
        }
    ),
    "es": frozenset(
        {
            "gracias",
            "muchas gracias",
            "gracias por ver",
            "gracias por ver el video",
            "subtítulos realizados por la comunidad de amara org",
            "subtítulos por la comunidad de amara org",
            "suscríbete",
            "adiós",
            "eh",
            "mmm",
        }
    ),
}
NO_SPEECH = 0.6
DOUBT_NO_SPEECH = 0.2
LOW_LOGPROB = -1.0
VERY_LOW_LOGPROB = -1.5
DOUBT_LOGPROB = -0.7

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, spaces squeezed ("Thank you!" → "thank you")."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def hallucination(
    text: str, no_speech_prob: float | None, avg_logprob: float | None, language: str | None = None
) -> str | None:
    """Why ``text`` is not the caller's words (``no_speech``, ``low_confidence``,
    ``known_hallucination``), or ``None`` to keep it. ``language``: whose phrase list to check
    (``None``: all of them)."""
    if not text.strip() or no_speech_prob is None or avg_logprob is None:
        return None
    if no_speech_prob >= NO_SPEECH:
        return "no_speech"
    if avg_logprob < VERY_LOW_LOGPROB or (avg_logprob < LOW_LOGPROB and no_speech_prob > DOUBT_NO_SPEECH):
        return "low_confidence"
    phrases = [KNOWN[language]] if language in KNOWN else list(KNOWN.values())
    if any(normalise(text) in p for p in phrases) and (no_speech_prob > DOUBT_NO_SPEECH or avg_logprob < DOUBT_LOGPROB):
        return "known_hallucination"
    return None
