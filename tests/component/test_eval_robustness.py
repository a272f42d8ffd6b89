"""``make eval-robustness`` in miniature: one scripted caller on a speakerphone line (−10 dB echo,
150 ms) through the real session, VAD, Smart Turn, faster-whisper, Kokoro and Twilio pacer, in
virtual time (~40 s). Guards the evaluation harness against the seam moving under it, and the echo
gate and pause-at-onset barge-in against regressions: the agent is not interrupted by its own voice,
the caller's real interruption over the echo is, and the noise-only turn gets no answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.robustness.run import main

pytestmark = pytest.mark.timeout(600)


def test_a_speakerphone_caller_is_heard_over_the_echo_and_the_echo_is_not(tmp_path: Path) -> None:
    out = tmp_path / "robustness.json"
    assert main(["--conditions", "echo-10", "--calls", "1", "--json", str(out), "--cache", str(tmp_path / "tts")]) == 0
    row = json.loads(out.read_text())["conditions"]["echo-10"]
    assert row["calls"] == 1 and not row["timeouts"], row
    assert row["false_barge_ins"] == 0 and row["false_starts"] == 0, row  # its own voice never interrupts it
    assert row["interruptions"] == 1 and row["missed_barge_ins"] == 0, row  # the caller's interruption does
    assert row["noise_replies"] == 0, row  # nothing said: nothing answered
    assert row["wer"] < 0.2, row  # the caller's words, heard over the echo
