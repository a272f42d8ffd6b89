"""The simulated callers' script (:mod:`bench.load`, :mod:`bench.llm_load`): no imports, so a box
that carries only the LLM can use it."""

SCRIPT = [
    "Hi, the pipe under my kitchen sink is leaking. Can somebody come out today?",
    "My name is John Smith, and I live at 42 Oak Street.",
    "How much does a repair usually cost?",
]
"""The caller's lines, one per turn, spoken after the agent's reply to the previous one."""
BARGE_IN_LINE = "Sorry, wait, it is actually the bathroom sink, not the kitchen."
"""Spoken over the agent's reply to the last scripted line (a barge-in)."""
