"""Keyword corrections: literal and regex rules, global and per agent, applied to the agent's calls."""

from __future__ import annotations

import pytest

from gateway.after_call.runtime import DatabaseHooks
from gateway.config import GatewaySettings
from gateway.conversation.corrections import Corrections, Rule, RuleCorrections
from gateway.db.engine import Database
from gateway.db.repos import AgentRepo, CorrectionRepo, NumberRepo


def test_literal_rules_are_whole_word_case_insensitive_and_whitespace_tolerant() -> None:
    c = RuleCorrections([Rule("acne plumbing", "Acme Plumbing"), Rule("gas", "GAS")])
    assert isinstance(c, Corrections)
    assert c.apply("I called ACNE   plumbing about gas") == "I called Acme Plumbing about GAS"
    assert c.apply("the gasket of acne plumbingx") == "the gasket of acne plumbingx"


def test_longest_literal_wins_and_later_rules_override_earlier_ones() -> None:
    c = RuleCorrections([Rule("water heater", "water heater"), Rule("heater", "HEATER"), Rule("Acne", "global")])
    assert c.apply("my water heater and the heater") == "my water heater and the HEATER"
    agent_wins = RuleCorrections([Rule("acne", "Global Co"), Rule("ACNE", "Acme")])  # global first, agent last
    assert agent_wins.apply("acne") == "Acme"


def test_regex_rules_use_groups_and_word_boundaries() -> None:
    c = RuleCorrections([Rule(r"(\d{3}) (\d{4})", r"\1-\2", is_regex=True), Rule(r"plum+ing", "plumbing", True)])
    assert c.apply("call 555 1234 about plummming") == "call 555-1234 about plumbing"
    assert c.apply("x5551234 plumingx") == "x5551234 plumingx"


@pytest.mark.parametrize(
    ("pattern", "replacement"),
    [("(unclosed", "x"), ("(a)", r"\2"), ("(?P<n>a)", r"\g<m>"), ("a", r"\q"), ("", "x")],
)
def test_invalid_regex_rules_are_refused(pattern: str, replacement: str) -> None:
    with pytest.raises(ValueError):
        RuleCorrections([Rule(pattern, replacement, is_regex=True)])


async def test_each_agent_gets_global_and_its_own_corrections(db: Database) -> None:
    async with db.sessions() as s, s.begin():
        acme = await AgentRepo(s).create(name="Acme", greeting="Hi Acme", system_prompt="p", voice="af_heart")
        bolt = await AgentRepo(s).create(name="Bolt", greeting="Hi Bolt", system_prompt="p", voice="am_michael")
        await NumberRepo(s).create("+15550100002", acme.id)
        await NumberRepo(s).create("+15550100003", bolt.id)
        rules = CorrectionRepo(s)
        await rules.create("plumming", "plumbing", False, None)
        await rules.create("acne", "Acme", False, acme.id)
        await rules.create(r"bolt(ed)? electric", "Bolt Electric", True, bolt.id)
        await rules.create("acne", "ACNE-GLOBAL", False, None)  # the agent's own rule wins for Acme
    hooks = DatabaseHooks(GatewaySettings(corrections={"settings only": "from settings"}), db)
    said = "acne plumming bolted electric settings only"
    acme_profile = await hooks.profile_for("CA1", "+15550100001", "+15550100002")
    bolt_profile = await hooks.profile_for("CA2", "+15550100001", "+15550100003")
    other_profile = await hooks.profile_for("CA3", "+15550100001", "+15559999999")
    assert acme_profile.corrections.apply(said) == "Acme plumbing bolted electric settings only"
    assert bolt_profile.corrections.apply(said) == "ACNE-GLOBAL plumbing Bolt Electric settings only"
    # Unknown number → the settings agent: settings table + global rules.
    assert other_profile.corrections.apply(said) == "ACNE-GLOBAL plumbing bolted electric from settings"
    await hooks.drain()
