"""Deprecated location of the correction rules: they are domain logic and live in
:mod:`gateway.conversation.corrections` now.

Kept only until ``tests/unit/test_security.py`` imports them from their new home; nothing in
``gateway/`` imports this module (``gateway/db`` does not import the conversation).
"""

from gateway.conversation.corrections import (
    APPLY_BUDGET_S,
    RULE_TIMEOUT_S,
    Rule,
    RuleCorrections,
    check_replacement,
    compile_regex_rule,
    validate_regex_rule,
)

__all__ = [
    "APPLY_BUDGET_S",
    "RULE_TIMEOUT_S",
    "Rule",
    "RuleCorrections",
    "check_replacement",
    "compile_regex_rule",
    "validate_regex_rule",
]
