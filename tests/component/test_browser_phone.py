"""The ``/phone`` softphone in real headless Chromium, a real recording as its microphone.

Chromium (Debian's, driven over the DevTools protocol) plays a WAV as its microphone
(``--use-file-for-fake-audio-capture``): silence while the greeting plays, the caller's question,
silence while the agent answers, then a real human voice (CMU ARCTIC) over the agent's long answer.
The gateway runs in-process with real Redis, STT, TTS and VAD over WebRTC (aiortc); the LLM is
scripted so the answer is long enough to be interrupted. The test checks what the page shows:
the caller's words in the ``role="log"`` transcript, the agent's streamed reply, its audio reaching
the page (an ``AnalyserNode`` on the remote track), the barge-in cutting the reply, the analysis
after hang-up, and a screenshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.component.fakes import FakeLLM
from tools.call_browser import Softphone, mic_file

pytestmark = pytest.mark.timeout(240)

GREETING = "Acme Plumbing, how can I help?"
LONG_REPLY = (
    "I'm sorry to hear about the leak. First, please turn off the water valve under the sink so the floor "
    "does not get any wetter. Our plumbers are out in Springfield all day today, and one of them can be at "
    "your house this afternoon between two and four. We will also bring a wet vacuum for the water on the "
    "floor. If the water keeps coming, put a bucket under the pipe and some towels around it. Our technician "
    "will check the pipe, the trap and the supply lines, and tell you the price before any work starts. "
    "Could you tell me your name and your address please?"
)
DETAILS = {"problem": "kitchen sink leaking", "urgency": "emergency", "summary": "Leaking kitchen sink."}
BARGE_WORDS = ("turned", "sharply", "faced", "gregson", "across", "table")
"""Words of the CMU ARCTIC line the caller speaks over the agent (tiny.en hears most of them)."""


@pytest.fixture
def phone_call(gateway, fake_llm: FakeLLM, caller_wav: Path, arctic_wav: Path, tmp_path: Path) -> Iterator[Softphone]:
    default, completion = fake_llm.default_reply, fake_llm.completion_reply
    fake_llm.default_reply = LONG_REPLY  # every answer is long enough to be interrupted
    fake_llm.completion_reply = json.dumps(DETAILS)
    base, _app = gateway(ice_servers=[], agent={"greeting": GREETING})
    # a short greeting · the question (7.5 s) · the answer starts 2-6 s later · speech over it 12 s in
    mic = mic_file([(8.0, None), (0, caller_wav), (12.0, None), (0, arctic_wav), (40.0, None)], tmp_path / "mic.wav")
    phone = Softphone(base, mic)
    yield phone
    phone.close()
    fake_llm.default_reply, fake_llm.completion_reply = default, completion


def test_softphone_call_with_barge_in(phone_call: Softphone, tmp_path: Path) -> None:
    phone = phone_call
    phone.call()
    phone.wait_for("!!document.querySelector('[role=log] .turn[data-role=agent][data-reply=\"greeting-1\"]')", 30)
    phone.wait_for("window.phone.state === 'in call'", 10)
    # the caller's words appear in the log
    phone.wait_for("[...document.querySelectorAll('[role=log] [data-role=caller]')].length >= 1", 45)
    # the agent's answer streams in, its audio reaches the page, then the caller cuts it off
    phone.wait_for("window.phone.voiceToVoiceMs.length >= 1", 30)
    phone.wait_for("window.phone.events.some((e) => e.type === 'turn_complete' && e.interrupted)", 40)
    # the recording's words over the agent are answered. The caller's question has two sentences:
    # where Smart Turn ends the turn at the pause between them (it does on some CPUs), the second
    # sentence interrupts the first answer too, so the barge-in is found by the recording's words.
    barge_at = phone.wait_for(
        "(() => { const t = [...document.querySelectorAll('[role=log] .turn')];"
        " const b = t.findIndex((e) => e.dataset.role === 'caller'"
        f" && /\\b({'|'.join(BARGE_WORDS)})\\b/i.test(e.querySelector('.text').textContent));"
        " return b > 0 && t.slice(b + 1).some((e) => e.dataset.role === 'agent'"
        " && e.querySelector('.text').textContent) ? b : null; })()",
        40,
    )
    page = phone.read()
    assert not phone.chrome.errors, phone.chrome.errors

    callers = [t for t in page.turns if t["role"] == "caller"]
    assert any("kitchen sink" in t["text"].lower() and "leak" in t["text"].lower() for t in callers), callers
    assert page.turns[0]["reply"] == "greeting-1" and page.turns[0]["text"] == GREETING
    interrupted_at = max((i for i, t in enumerate(page.turns[:barge_at]) if t["interrupted"]), default=-1)
    assert interrupted_at > 0, ("no reply was cut before the barge-in", page.turns)
    cut = page.turns[interrupted_at]
    assert cut["role"] == "agent" and cut["reply"].startswith("reply-"), cut
    assert cut["text"] and LONG_REPLY.startswith(cut["text"][:30]), ("the heard part of the reply", page.turns)
    assert len(cut["text"]) < len(LONG_REPLY), "only what was heard stays"
    deltas = [
        e for e in page.events if e["type"] == "ai_text" and e["reply_id"] == cut["reply"] and not e["is_complete"]
    ]
    assert len(deltas) > 20, "the agent's text streamed token by token"
    assert {"endpointing_ms", "stt_ms", "llm_ttft_ms", "tts_first_audio_ms"} <= set(cut["latency"])
    after = page.turns[interrupted_at + 1 :]
    barge = next(t for t in after if t["role"] == "caller")
    # over the agent's voice the browser's echo canceller may eat a word or two of the caller's (double talk)
    said = {w.strip(".,").lower() for w in barge["text"].split()}
    assert len(set(BARGE_WORDS) & said) >= 2, barge
    assert any(t["role"] == "agent" and t["text"] for t in after[after.index(barge) :]), "the barge-in is answered"
    # the agent's audio reached the page: the remote track's analyser heard it, after the caller spoke
    assert page.remote_peak > 0.05, page.remote_peak
    assert 100 < page.voice_to_voice_ms[0] < 15000, page.voice_to_voice_ms
    heard = [t["heard_ms"] for t in page.turns if t["heard_ms"]]
    assert heard and heard[0] == page.voice_to_voice_ms[0]

    phone.chrome.screenshot(tmp_path / "phone.png")
    page = phone.hang_up()
    assert page.analysis is not None and page.analysis["status"] == "ok", page.analysis
    assert page.analysis["details"]["urgency"] == "emergency"
    assert page.state == "ended"
    assert any("connection connected" in line for line in page.connection_log), page.connection_log
    assert (tmp_path / "phone.png").stat().st_size > 20_000
