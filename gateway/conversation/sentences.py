"""Split streamed LLM text into speakable chunks as soon as they are complete. Pure."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"([.!?]+[\"')\]]*)(\s+)")
_CLAUSE_END = re.compile(r"([,;:—])(\s+)")


class SentenceSplitter:
    """Feed text deltas; get complete sentences (and long clauses) to send to TTS.

    A sentence ends at ``. ! ?`` followed by whitespace; a clause ends at ``, ; : —`` once the
    buffer holds at least ``min_clause_chars`` characters (``first_clause_chars`` for a reply's
    first chunk, so the first audio starts early). Decimal numbers ("3.5") do not split, because
    no whitespace follows the dot.
    """

    def __init__(self, min_clause_chars: int = 60, first_clause_chars: int = 24) -> None:
        self.min_clause_chars = min_clause_chars
        self.first_clause_chars = first_clause_chars
        self._buf = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        """Add a text delta; return the chunks completed by it (maybe empty)."""
        self._buf += delta
        out: list[str] = []
        while True:
            clause_chars = self.min_clause_chars if self._emitted else self.first_clause_chars
            m = _SENTENCE_END.search(self._buf)
            if m is None and len(self._buf) >= clause_chars:
                m = _CLAUSE_END.search(self._buf, pos=clause_chars // 2)
            if m is None:
                return out
            chunk = self._buf[: m.end(1)].strip()
            self._buf = self._buf[m.end() :]
            if chunk:
                out.append(chunk)
                self._emitted += 1

    def flush(self) -> list[str]:
        """Return whatever is left at the end of the stream."""
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []
