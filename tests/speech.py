"""Helpers shared by the speech tests."""

from __future__ import annotations

import jiwer

_NORMALIZE = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate (jiwer) after lower-casing and removing punctuation; 1.0 for an empty hypothesis."""
    if not hypothesis.strip():
        return 1.0
    return float(jiwer.wer(reference, hypothesis, reference_transform=_NORMALIZE, hypothesis_transform=_NORMALIZE))
