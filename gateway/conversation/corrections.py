"""Keyword corrections applied to transcripts before the LLM (e.g. "acne plumbing" → "Acme Plumbing")."""

from __future__ import annotations

import re
from collections.abc import Mapping


class Corrections:
    """A table of ``pattern → replacement``: whole-word, case-insensitive, longest pattern first.

    Patterns are literal text; runs of whitespace in a pattern match any whitespace.
    """

    def __init__(self, table: Mapping[str, str]) -> None:
        self.table = {k.strip(): v for k, v in table.items() if k.strip()}
        patterns = sorted(self.table, key=len, reverse=True)
        self._lookup = {" ".join(k.lower().split()): v for k, v in self.table.items()}
        if patterns:
            alternation = "|".join(r"\s+".join(map(re.escape, p.split())) for p in patterns)
            self._regex: re.Pattern[str] | None = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)
        else:
            self._regex = None

    def apply(self, text: str) -> str:
        """Return ``text`` with every whole-word match replaced."""
        if self._regex is None:
            return text
        return self._regex.sub(lambda m: self._lookup[" ".join(m.group(0).lower().split())], text)
