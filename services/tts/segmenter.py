"""Incremental sentence/clause segmentation of text that arrives in fragments (LLM tokens).

A segment is the unit of synthesis: Kokoro speaks each segment in one forward pass and the
streaming endpoints send its audio tagged with its text. Rules, in order:

* A sentence ends after ``. ! ? …`` (plus closing quotes/brackets) once whitespace follows; never
  after an abbreviation from :data:`services.tts.normalize.ABBREVIATIONS` ("Dr.", "St."…) or a
  single-letter initial ("J."), and never inside a number ("3.5" only splits when whitespace is seen).
* A line break ends a segment (markdown lists and headings arrive one per line).
* The *first* segment of a turn (nothing sent since the last flush/reset) may also end at a clause
  mark ``, ; : —`` once it holds ``first_clause_chars`` characters: a shorter first segment means
  earlier first audio (the time-to-first-audio that a caller hears).
* Any buffer longer than ``max_chars`` is cut at its last clause mark, else at its last space, so a
  run-on sentence never waits for its end (nor exceeds Kokoro's 510-phoneme window by much).

Idea after the segmenters of streaming TTS servers (e.g. RealtimeTTS, Pipecat's
``match_endofsentence``): split early for latency, but only at boundaries that do not break prosody.
"""

from __future__ import annotations

import re

from services.tts.normalize import ABBREVIATIONS

__all__ = ["SentenceSplitter", "split_text"]

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_CLAUSE_END = re.compile(r"[,;:—–][\"'”’)\]]*(?=\s)")
_ABBREV_KEYS = frozenset(ABBREVIATIONS)
_INITIAL = re.compile(r"(?:^|\s)[A-Z]\.$")


def _is_abbreviation(text_up_to_mark: str) -> bool:
    """True if the period ending ``text_up_to_mark`` belongs to an abbreviation or an initial."""
    last = text_up_to_mark.rsplit(None, 1)[-1].lower() if text_up_to_mark.strip() else ""
    last = last.lstrip("(\"'“‘")
    return last in _ABBREV_KEYS or bool(_INITIAL.search(text_up_to_mark))


class SentenceSplitter:
    """Turn a stream of text fragments into speakable segments.

    Args:
        first_clause_chars: the first segment of a turn may end at a clause mark once it has this many
            characters (0 disables clause splitting of the first segment).
        max_chars: a buffer longer than this is cut at a clause mark or a space.

    Usage: call :meth:`feed` with each fragment and speak what it returns; call :meth:`flush` at the
    end of the turn for the remainder; :meth:`reset` drops buffered text (barge-in).
    """

    def __init__(self, first_clause_chars: int = 24, max_chars: int = 300) -> None:
        self.first_clause_chars = first_clause_chars
        self.max_chars = max(40, max_chars)
        self._buf = ""
        self._emitted_in_turn = 0

    @property
    def buffered(self) -> str:
        """Text received but not yet returned as a segment."""
        return self._buf

    def feed(self, fragment: str) -> list[str]:
        """Add a fragment; return the segments it completed (stripped, non-empty), oldest first."""
        self._buf += fragment
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            segment, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if segment:
                out.append(segment)
                self._emitted_in_turn += 1
        if not self._buf.strip():
            self._buf = self._buf.lstrip()
        return out

    def flush(self) -> list[str]:
        """End the turn: return whatever is buffered as a last segment (or nothing) and start a new turn."""
        rest = self._buf.strip()
        self._buf = ""
        self._emitted_in_turn = 0
        return [rest] if rest else []

    def reset(self) -> None:
        """Forget buffered text and start a new turn (used on cancel)."""
        self._buf = ""
        self._emitted_in_turn = 0

    def _find_cut(self) -> int | None:
        buf = self._buf
        newline = buf.find("\n")
        cut = self._sentence_cut(buf, newline)
        if self._emitted_in_turn == 0 and self.first_clause_chars > 0:
            limit = cut if cut is not None else (newline if newline != -1 else len(buf))
            for m in _CLAUSE_END.finditer(buf):
                if m.end() >= limit:
                    break
                if m.end() >= self.first_clause_chars:
                    return m.end()
        if cut is not None:
            return cut
        if newline != -1:
            if buf[:newline].strip():
                return newline + 1
            self._buf = buf[newline + 1 :]
            return self._find_cut()
        if len(buf) > self.max_chars:
            head = buf[: self.max_chars]
            clauses = list(_CLAUSE_END.finditer(head))
            if clauses and clauses[-1].end() > self.max_chars // 3:
                return clauses[-1].end()
            space = head.rfind(" ")
            return space if space > 0 else self.max_chars
        return None

    @staticmethod
    def _sentence_cut(buf: str, newline: int) -> int | None:
        """End of the first complete sentence before the first line break, if any."""
        for m in _SENTENCE_END.finditer(buf):
            if newline != -1 and newline < m.start():
                return None
            if m.group(0) == "." and _is_abbreviation(buf[: m.end()]):
                continue
            if buf[: m.start()].strip():
                return m.end()
        return None


def split_text(text: str, first_clause_chars: int = 24, max_chars: int = 300) -> list[str]:
    """Split a whole text into segments with the same rules as :class:`SentenceSplitter`."""
    splitter = SentenceSplitter(first_clause_chars, max_chars)
    return splitter.feed(text) + splitter.flush()
