"""Keyword corrections with literal and regex rules, drop-in for :class:`gateway.corrections.Corrections`.

Literal rules behave exactly as :class:`~gateway.corrections.Corrections` (whole word,
case-insensitive, whitespace-tolerant, longest pattern first, one pass). Regex rules are then
applied in order, each case-insensitive and anchored to word boundaries (``(?<!\\w)(?:…)(?!\\w)``);
their replacements may use groups (``\\1``, ``\\g<name>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.corrections import Corrections

MAX_PATTERN_CHARS = 500


@dataclass(frozen=True)
class Rule:
    """One correction: ``pattern`` → ``replacement``; ``is_regex`` makes the pattern a regular expression."""

    pattern: str
    replacement: str
    is_regex: bool = False


def compile_regex_rule(pattern: str) -> re.Pattern[str]:
    """Compile a regex rule the way :class:`RuleCorrections` applies it.

    Raises:
        ValueError: the pattern is empty, too long, or not a valid regular expression.
    """
    if not pattern.strip():
        raise ValueError("empty pattern")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    try:
        re.compile(pattern)  # errors point into the pattern as written
        return re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from exc


_GROUP_REF = re.compile(r"\\(\d+)|\\g<(\w+)>")


def check_replacement(pattern: re.Pattern[str], replacement: str) -> None:
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
        re.compile("").sub(_GROUP_REF.sub("", replacement), "")
    except re.error as exc:
        raise ValueError(f"invalid replacement: {exc}") from exc


class RuleCorrections(Corrections):
    """Literal rules (as the base class) then regex rules, in the order given.

    Args:
        rules: the rules; later literal rules override earlier ones with the same pattern
            (case-insensitive), so pass global rules first and agent rules after them.

    Raises:
        ValueError: a regex rule does not compile.
    """

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
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
        self._regex_rules: list[tuple[re.Pattern[str], str]] = []
        for rule in rules:
            if rule.is_regex:
                regex = compile_regex_rule(rule.pattern)
                check_replacement(regex, rule.replacement)
                self._regex_rules.append((regex, rule.replacement))

    @classmethod
    def from_table(cls, table: Mapping[str, str], extra: Iterable[Rule] = ()) -> RuleCorrections:
        """Literal rules from a ``{pattern: replacement}`` mapping (the settings' table), then ``extra``."""
        return cls([*(Rule(k, v) for k, v in table.items()), *extra])

    def apply(self, text: str) -> str:
        """Return ``text`` with literal then regex corrections applied (one pass each)."""
        text = super().apply(text)
        for regex, replacement in self._regex_rules:
            text = regex.sub(replacement, text)
        return text
