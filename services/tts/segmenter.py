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
* Failing that, the first segment may end at a *word boundary* once it holds ``first_phrase_words``
  words (``0`` = off): a long first sentence without an early comma ("A repair usually costs 150 to
  300 dollars.") starts playing while the model still writes it, instead of being synthesised whole
  (Kokoro int8 on two cores: ~200 ms + ~17 ms per character). The cut goes before a word that opens
  a phrase ("and", "to", "for", "with"… :data:`_PHRASE_OPENERS`) if one follows word
  ``first_phrase_words`` or the next, else at the first boundary from there that is allowed: never
  after a word that needs the next one (an article, preposition, conjunction, possessive,
  auxiliary, pronoun or abbreviation, :data:`_NO_CUT_AFTER`), never after a number ("150 to 300"
  stays whole), never inside a run of capitalised words or before an abbreviation ("John Smith",
  "12 Main St."), and never with fewer than two words left before the sentence's end.
  The decision needs only the words up to three past the cut, so streamed fragments and a whole
  text give the same segments.
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
_WORD = re.compile(r"\S+(?=\s)")
_EDGE_PUNCT = "\"'“”‘’()[]"

_PHRASE_OPENERS = frozenset(
    "and but or so because if when while where which who whom whose that than to for with from at in on by "
    "about after before until since though although unless like into over under through during without".split()
)
"""A first segment preferably ends before one of these words: the phrase that follows starts anew."""
_NO_CUT_AFTER = _PHRASE_OPENERS | frozenset(
    "a an the of as per via my your our their his her its this these those some any each every no not "
    "is are was were be been am can could will would should shall may might must do does did have has had "
    "i you we they he she it i'm you're we're they're it's i'll you'll we'll i've we've i'd".split()
)
"""A first segment never ends after one of these words: each needs the word that follows."""


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
        first_phrase_words: the first segment of a turn may end at a word boundary once it has this
            many words (0 disables it; rules in the module docstring).

    Usage: call :meth:`feed` with each fragment and speak what it returns; call :meth:`flush` at the
    end of the turn for the remainder; :meth:`reset` drops buffered text (barge-in).
    """

    def __init__(self, first_clause_chars: int = 24, max_chars: int = 300, first_phrase_words: int = 0) -> None:
        self.first_clause_chars = first_clause_chars
        self.max_chars = max(40, max_chars)
        self.first_phrase_words = first_phrase_words
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
        if self._emitted_in_turn == 0:
            limit = cut if cut is not None else (newline if newline != -1 else len(buf))
            clause = self._clause_cut(buf, limit)
            if self.first_phrase_words > 0:
                phrase = self._phrase_cut(buf, clause if clause is not None else limit)
                if phrase is not None:
                    return phrase
            if clause is not None:
                return clause
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

    def _clause_cut(self, buf: str, limit: int) -> int | None:
        """End of the first clause of ``buf`` before ``limit`` that is long enough to be a first segment."""
        if self.first_clause_chars <= 0:
            return None
        for m in _CLAUSE_END.finditer(buf):
            if m.end() >= limit:
                break
            if m.end() >= self.first_clause_chars:
                return m.end()
        return None

    def _phrase_cut(self, buf: str, end: int) -> int | None:
        """A word boundary of ``buf[:end]`` (the first sentence or clause so far) to end the first segment at.

        A word counts once whitespace follows it. The boundary after word ``k`` is judged once words
        ``k + 1`` and ``k + 2`` have come; a boundary that is allowed but not before a phrase opener
        waits one word more, for a better one right after it. Nothing later is looked at, so the
        result does not depend on how the text was fragmented.
        """
        words = list(_WORD.finditer(buf[: end + 1]))
        n = self.first_phrase_words
        fallback: int | None = None
        for k in range(n - 1, len(words) - 2):
            raw, raw_next = words[k].group(), words[k + 1].group()
            word, following = _bare(raw), _bare(raw_next)
            allowed = not (
                word in _NO_CUT_AFTER
                or word in _ABBREV_KEYS
                or following in _ABBREV_KEYS
                or _has_digit(word)
                or (_capitalised(raw) and _capitalised(raw_next))
            )
            if allowed and following in _PHRASE_OPENERS:
                return words[k].end()
            if allowed and fallback is None:
                fallback = words[k].end()
            if k >= n and fallback is not None:
                return fallback
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


def _bare(word: str) -> str:
    """``word`` lower-cased without surrounding quotes and brackets (its inner punctuation stays)."""
    return word.strip(_EDGE_PUNCT).lower()


def _capitalised(word: str) -> bool:
    """True if ``word`` starts with a capital letter (a name: "Oak Street", "John Smith")."""
    bare = word.lstrip(_EDGE_PUNCT)
    return bare[:1].isupper()


def _has_digit(word: str) -> bool:
    """True for a number or a word with digits in it ("150", "$3.50", "21st")."""
    return any(c.isdigit() for c in word)


def split_text(text: str, first_clause_chars: int = 24, max_chars: int = 300, first_phrase_words: int = 0) -> list[str]:
    """Split a whole text into segments with the same rules as :class:`SentenceSplitter`."""
    splitter = SentenceSplitter(first_clause_chars, max_chars, first_phrase_words)
    return splitter.feed(text) + splitter.flush()
