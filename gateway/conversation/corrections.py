"""Keyword corrections applied to transcripts before the LLM (e.g. "acne plumbing" → "Acme Plumbing").

:class:`Corrections` holds literal rules (the settings' table); :class:`RuleCorrections` adds the
admin's regex rules (stored in the database, read by :mod:`gateway.agents.resolver`).

Literal rules: whole word, case-insensitive, whitespace-tolerant, longest pattern first, one pass.
Regex rules are then applied in order, each case-insensitive and anchored to word boundaries
(``(?<!\\w)(?:…)(?!\\w)``); their replacements may use groups (``\\1``, ``\\g<name>``).

Regex rules are written by admins and run on the event loop, in the middle of a live call (the
session corrects each transcript synchronously before the LLM sees it). Two guards keep a rule
like ``(a+)+$`` from freezing every call of the gateway:

* when a rule is stored, :func:`validate_regex_rule` refuses nested unbounded quantifiers and
  any pattern that exceeds :data:`RULE_TIMEOUT_S` on adversarial probe texts;
* when a rule runs, it runs with the `regex <https://pypi.org/project/regex/>`_ engine's
  ``timeout=``: at most :data:`RULE_TIMEOUT_S` per rule and :data:`APPLY_BUDGET_S` for all of
  them. A rule that runs out of time is skipped and logged; the text stays as it was.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from re import _constants as _sre  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Any

import regex

log = logging.getLogger(__name__)


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


MAX_PATTERN_CHARS = 500
RULE_TIMEOUT_S = 0.05
"""Longest one regex rule may run on one transcript (and on each probe when it is stored), seconds."""
APPLY_BUDGET_S = 0.2
"""Longest all regex rules together may run on one transcript; later rules are skipped, seconds."""
PROBE_CHARS = 1000
"""Length of the long probe texts a stored rule must handle within :data:`RULE_TIMEOUT_S`
(twice a long utterance; longer texts are still bounded by the timeout at call time)."""


@dataclass(frozen=True)
class Rule:
    """One correction: ``pattern`` → ``replacement``; ``is_regex`` makes the pattern a regular expression."""

    pattern: str
    replacement: str
    is_regex: bool = False


def compile_regex_rule(pattern: str) -> Any:
    """Compile a regex rule the way :class:`RuleCorrections` applies it (a ``regex.Pattern``).

    Only syntax is checked here; :func:`validate_regex_rule` also refuses slow patterns.

    Raises:
        ValueError: the pattern is empty, too long, or not a valid regular expression.
    """
    if not pattern.strip():
        raise ValueError("empty pattern")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    try:
        regex.compile(pattern)  # errors point into the pattern as written
        return regex.compile(rf"(?<!\w)(?:{pattern})(?!\w)", regex.IGNORECASE)
    except regex.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from exc


# The stdlib's own regex parser (private, stable since 3.11) gives the pattern's tree for the check.
_UNBOUNDED = _sre.MAXREPEAT
_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT}
_NO_BACKTRACKING = {_sre.POSSESSIVE_REPEAT, _sre.ATOMIC_GROUP}
MANY = 4
"""An outer repeat allowing more than this many rounds counts as a loop for the nesting check."""


def _subpatterns(av: Any) -> Iterator[Any]:
    """The sub-trees among a node's arguments (groups, branches, lookarounds, conditionals)."""
    for item in av if isinstance(av, tuple | list) else ():
        if isinstance(item, _sre_parse.SubPattern):
            yield item
        elif isinstance(item, list):
            yield from (x for x in item if isinstance(x, _sre_parse.SubPattern))


def _nested_quantifier(parsed: Any, in_loop: bool = False) -> bool:
    """True if an unbounded quantifier sits inside a quantified group (``(a+)+``, ``(\\w+\\s?)*``).

    Possessive quantifiers and atomic groups never backtrack into themselves, so they are safe.
    """
    for op, av in parsed:
        if op in _REPEATS:
            _low, high, sub = av
            if in_loop and high == _UNBOUNDED:
                return True
            if _nested_quantifier(sub, in_loop or high == _UNBOUNDED or high > MANY):
                return True
        elif op not in _NO_BACKTRACKING and any(_nested_quantifier(p, in_loop) for p in _subpatterns(av)):
            return True
    return False


def _probes(pattern: str) -> list[str]:
    """Texts that make backtracking patterns blow up: runs of one character, then a character that fails."""
    chars = dict.fromkeys(c for c in pattern.lower() if c.isalnum() or c in " -_.'")
    chars.update(dict.fromkeys("a0 "))
    runs = list(chars)[:16]
    mixed = "".join(runs)
    texts = []
    for tail in ("!", "\x00", "0", "a"):
        texts += [c * 40 + tail for c in runs]
        texts += [c * PROBE_CHARS + tail for c in runs]
        texts.append((mixed * (PROBE_CHARS // len(mixed) + 1))[:PROBE_CHARS] + tail)
    return texts


def validate_regex_rule(pattern: str, replacement: str) -> Any:
    """Check a regex rule before it is stored: it compiles, its replacement is valid, and it is fast.

    Fast means: no nested unbounded quantifier (``(a+)+``, the classic catastrophic backtracking;
    write ``(?:a+)``, a possessive ``(a+)++`` or an atomic group ``(?>…)`` instead), and every
    probe text (runs of the pattern's own characters up to :data:`PROBE_CHARS` long, ending in a
    character that makes the match fail) handled within :data:`RULE_TIMEOUT_S`, all of them within
    :data:`APPLY_BUDGET_S`. Returns the compiled rule.

    Raises:
        ValueError: with a message for the admin (the API answers 422 with it).
    """
    compiled = compile_regex_rule(pattern)
    check_replacement(compiled, replacement)
    try:
        parsed = _sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        parsed = None  # regex-only syntax (\p{L}, …): the probes below still apply
    if parsed is not None and _nested_quantifier(parsed):
        raise ValueError(
            "pattern can backtrack catastrophically: a quantified group contains an unbounded quantifier "
            "(like (a+)+); remove the nesting, or make it possessive (a++) or atomic (?>...)"
        )
    deadline = time.monotonic() + APPLY_BUDGET_S
    for text in _probes(pattern):
        try:
            compiled.sub(replacement, text, timeout=RULE_TIMEOUT_S)
        except TimeoutError:
            raise ValueError(
                f"pattern is too slow: it took over {RULE_TIMEOUT_S * 1000:.0f} ms on a {len(text)}-character "
                "test text (catastrophic backtracking); simplify it"
            ) from None
        if time.monotonic() > deadline:
            raise ValueError(f"pattern is too slow: its test texts took over {APPLY_BUDGET_S * 1000:.0f} ms")
    return compiled


_GROUP_REF = re.compile(r"\\(\d+)|\\g<(\w+)>")


def check_replacement(pattern: Any, replacement: str) -> None:
    """Check a regex rule's replacement: group references must exist, escapes must be valid.

    Raises:
        ValueError: an unknown group or a bad escape.
    """
    for number, name in _GROUP_REF.findall(replacement):
        ref = number or name
        if ref.isdigit() and int(ref) > pattern.groups:
            raise ValueError(f"invalid replacement: no group {ref} in the pattern")
        if not ref.isdigit() and ref not in pattern.groupindex:
            raise ValueError(f"invalid replacement: no group named {ref!r} in the pattern")
    try:  # parse the template with the group references taken out
        regex.compile("").sub(_GROUP_REF.sub("", replacement), "")
    except regex.error as exc:
        raise ValueError(f"invalid replacement: {exc}") from exc


class RuleCorrections(Corrections):
    """Literal rules (as the base class) then regex rules, in the order given.

    Args:
        rules: the rules; later literal rules override earlier ones with the same pattern
            (case-insensitive), so pass global rules first and agent rules after them.
        skip_invalid: log and leave out a regex rule that does not compile instead of raising
            (for rules read from the database: one bad row must not stop a whole agent).

    Raises:
        ValueError: a regex rule does not compile (unless ``skip_invalid``).
    """

    def __init__(self, rules: Iterable[Rule] = (), skip_invalid: bool = False) -> None:
        rules = list(rules)
        literal: dict[str, str] = {}
        keys: dict[str, str] = {}
        for rule in rules:
            if rule.is_regex:
                continue
            pattern = " ".join(rule.pattern.split())  # the base class looks matches up whitespace-normalised
            key = pattern.lower()
            if key in keys:
                del literal[keys[key]]
            keys[key] = pattern
            literal[pattern] = rule.replacement
        super().__init__(literal)
        self.rules = rules
        self._regex_rules: list[tuple[Any, str, str]] = []
        for rule in rules:
            if not rule.is_regex:
                continue
            try:
                compiled = compile_regex_rule(rule.pattern)
                check_replacement(compiled, rule.replacement)
            except ValueError as exc:
                if not skip_invalid:
                    raise
                log.error("correction %r left out: %s", rule.pattern[:80], exc)
                continue
            self._regex_rules.append((compiled, rule.replacement, rule.pattern))

    @classmethod
    def from_table(
        cls, table: Mapping[str, str], extra: Iterable[Rule] = (), skip_invalid: bool = False
    ) -> RuleCorrections:
        """Literal rules from a ``{pattern: replacement}`` mapping (the settings' table), then ``extra``."""
        return cls([*(Rule(k, v) for k, v in table.items()), *extra], skip_invalid=skip_invalid)

    def apply(self, text: str) -> str:
        """Return ``text`` with literal then regex corrections applied (one pass each).

        Each regex rule runs for at most :data:`RULE_TIMEOUT_S` and all of them for at most
        :data:`APPLY_BUDGET_S`; a rule that runs out of time is skipped (logged) and leaves the
        text as it was. Never raises.
        """
        text = super().apply(text)
        if not self._regex_rules:
            return text
        deadline = time.monotonic() + APPLY_BUDGET_S
        for compiled, replacement, pattern in self._regex_rules:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("corrections: time budget spent, regex rule %r skipped", pattern[:80])
                continue
            try:
                text = compiled.sub(replacement, text, timeout=min(RULE_TIMEOUT_S, left))
            except TimeoutError:
                log.warning(
                    "corrections: regex rule %r timed out on a %d-character text; skipped", pattern[:80], len(text)
                )
        return text
