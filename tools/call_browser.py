"""``make call-browser``: one call from the ``/phone`` softphone in headless Chromium, a WAV as its microphone.

Starts Redis and every service as local processes (or reuses those of ``make dev``), opens
``/phone`` in Debian's Chromium with a fake microphone playing the caller's recording (Chromium's
``--use-file-for-fake-audio-capture``), presses Call, waits for the agent's answer, hangs up and
prints what the page showed: the transcript, the per-stage latencies the gateway reported and
the voice-to-voice latency *as the browser heard it* (from the last loud 20 ms of the microphone
to the first loud 20 ms of the agent's track, both measured with Web Audio ``AnalyserNode`` s),
and the ``analysis`` (post-call extraction). ``--screenshot`` saves the page as a PNG.

The microphone file is the recording with silence before it (the greeting plays first) and
after it (Chromium loops the file). Exits 1 if any stage failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.audio import read_audio, wav_bytes
from tools.chrome import Chrome, fake_mic_flags
from tools.stack import Ports, Stack, http_healthy

MIC_RATE_HZ = 48000
log = logging.getLogger("call-browser")


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def mic_file(parts: list[tuple[float, Path | None]], out: Path) -> Path:
    """Write the fake microphone: each part is ``(seconds of silence, None)`` or ``(0, recording)``
    in order, as a 48 kHz PCM16 mono WAV (what Chromium's fake capture reads)."""
    chunks = []
    for seconds, wav in parts:
        if wav is None:
            chunks.append(np.zeros(int(seconds * MIC_RATE_HZ), dtype=np.float32))
        else:
            chunks.append(read_audio(str(wav), MIC_RATE_HZ)[0])
    out.write_bytes(wav_bytes(np.concatenate(chunks), MIC_RATE_HZ))
    return out


@dataclass
class PageState:
    """What the softphone page showed (``window.phone`` and its transcript)."""

    turns: list[dict[str, Any]] = field(default_factory=list)
    """``{role: caller|agent, text, interrupted, reply, latency, heard_ms}`` in page order."""
    events: list[dict[str, Any]] = field(default_factory=list)
    remote_peak: float = 0.0
    voice_to_voice_ms: list[int] = field(default_factory=list)
    analysis: dict[str, Any] | None = None
    connection_log: list[str] = field(default_factory=list)
    state: str = ""


READ_PAGE = """(() => ({
  turns: [...document.querySelectorAll('[role=log] .turn')].map((e) => ({
    role: e.dataset.role, text: e.querySelector('.text').textContent, reply: e.dataset.reply || null,
    interrupted: e.classList.contains('interrupted'), latency: JSON.parse(e.dataset.latency || '{}'),
    heard_ms: e.dataset.heardMs ? Number(e.dataset.heardMs) : null })),
  events: window.phone.events, remote_peak: window.phone.remotePeak, voice_to_voice_ms: window.phone.voiceToVoiceMs,
  analysis: window.phone.analysis, state: window.phone.state,
  connection_log: [...document.querySelectorAll('#connlog li')].map((e) => e.textContent),
}))()"""


class Softphone:
    """``/phone`` in a headless Chromium whose microphone plays ``mic_wav``.

    Args:
        base_url: the gateway (``http://127.0.0.1:8080``).
        mic_wav: the fake microphone (PCM16 WAV; looped by Chromium).
        agent: agent id for ``?agent=`` (``None``: the default agent).
    """

    def __init__(self, base_url: str, mic_wav: Path, agent: int | None = None) -> None:
        self.base_url = base_url
        self.chrome = Chrome(fake_mic_flags(mic_wav))
        self.url = f"{base_url}/phone" + (f"?agent={agent}" if agent is not None else "")

    def call(self) -> None:
        """Open the page and press Call (the microphone file starts playing now)."""
        self.chrome.goto(self.url)
        self.chrome.click("button[data-action=call]")

    def read(self) -> PageState:
        """The page's state now."""
        return PageState(**self.chrome.eval(READ_PAGE))

    def wait_for(self, expression: str, timeout_s: float) -> Any:
        """Poll a JS expression on the page until truthy.

        Raises:
            AssertionError: not in time; the message has the page's transcript and connection log.
        """
        try:
            return self.chrome.wait_for(expression, timeout_s)
        except AssertionError as exc:
            page = self.read()
            turns = "\n".join(f"  {t['role']} {t['reply'] or ''}: {t['text']}" for t in page.turns)
            raise AssertionError(f"{exc}\ntranscript:\n{turns}\nlog:\n  " + "\n  ".join(page.connection_log)) from None

    def hang_up(self, timeout_s: float = 240) -> PageState:
        """Press Hang up and wait for the analysis (the post-call extraction)."""
        self.chrome.click("button[data-action=call]")
        self.wait_for("window.phone.analysis !== null || window.phone.state === 'ended'", timeout_s)
        return self.read()

    def close(self) -> None:
        """Quit the browser."""
        self.chrome.close()


STAGES = [("endpointing_ms", "endpointing"), ("stt_ms", "STT"), ("llm_ttft_ms", "LLM first token"),
          ("tts_first_audio_ms", "TTS first audio"), ("voice_to_voice_ms", "voice-to-voice (server)")]  # fmt: skip
FIRST_REPLY = (
    "[...document.querySelectorAll('[role=log] .turn[data-role=agent]')]"
    ".some((e) => !(e.dataset.reply || '').startsWith('greeting') && e.dataset.latency && e.dataset.heardMs)"
)


def summarize(page: PageState) -> list[str]:
    """Print what the page showed; return the failed checks (empty when all is well)."""
    failures = []
    for turn in page.turns:
        who = "caller" if turn["role"] == "caller" else f"agent ({turn['reply']})"
        _out(f"  {who:<18}: {turn['text']}{'  [interrupted]' if turn['interrupted'] else ''}")
    reply = next(
        (t for t in page.turns if t["role"] == "agent" and not (t["reply"] or "").startswith("greeting")), None
    )
    if not any(t["role"] == "caller" and t["text"].strip() for t in page.turns):
        failures.append("no caller transcript")
    if reply is None or not reply["text"].strip():
        failures.append("no agent reply")
    _out("  latency (ms):")
    for key, label in STAGES:
        value = (reply or {}).get("latency", {}).get(key)
        _out(f"    {label:<26} {value:>7.0f}" if value is not None else f"    {label:<26}  (missing)")
    heard = (reply or {}).get("heard_ms")
    _out(
        f"    {'voice-to-voice (browser)':<26} {heard:>7.0f}" if heard else "    voice-to-voice (browser)    (missing)"
    )
    if not heard:
        failures.append("no agent audio heard in the page")
    _out(f"  agent audio peak     : {page.remote_peak:.3f} (RMS, AnalyserNode on the remote track)")
    if page.analysis is None:
        failures.append("no analysis")
        _out("  analysis             : (none)")
    else:
        _out(f"  analysis             : {page.analysis.get('status')} {json.dumps(page.analysis.get('details'))}")
    return failures


def run(base_url: str, audio: Path, agent: int | None, screenshot: Path | None, lead_s: float, timeout_s: float) -> int:
    """Place the call, print the summary; returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="sb-call-browser-") as tmp:
        mic = mic_file([(lead_s, None), (0, audio), (60.0, None)], Path(tmp) / "mic.wav")
        phone = Softphone(base_url, mic, agent)
        t0 = time.monotonic()
        try:
            phone.call()
            _out(f"Switchboard browser call to {phone.url}")
            try:
                phone.wait_for(FIRST_REPLY, timeout_s)
                time.sleep(1.0)
            except AssertionError:
                _out(f"no answer within {timeout_s:.0f}s")
            page = phone.hang_up()
            if screenshot is not None:
                phone.chrome.screenshot(screenshot)
                _out(f"  screenshot           : {screenshot}")
        finally:
            phone.close()
    _out(f"  session              : {next((e['session_id'] for e in page.events if e['type'] == 'connected'), '?')}"
         f" ({time.monotonic() - t0:.1f}s)")  # fmt: skip
    failures = summarize(page)
    if failures:
        _out("FAILED: " + "; ".join(failures))
        for line in page.connection_log:
            _out(f"    {line}")
        return 1
    _out("OK")
    return 0


def main() -> int:
    """CLI entry point (``python -m tools.call_browser --audio X``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio", type=Path, default=Path("models/audio/caller_leak.wav"))
    parser.add_argument("--agent", type=int, default=None, help="agent id (default: the default agent)")
    parser.add_argument("--url", default=None, help="a running gateway (default: start or reuse the local stack)")
    parser.add_argument("--screenshot", type=Path, default=None, help="save the page as a PNG")
    parser.add_argument("--lead-s", type=float, default=12.0, help="microphone silence before the recording, s")
    parser.add_argument("--timeout-s", type=float, default=90.0, help="longest wait for the answer, s")
    parser.add_argument("--log-dir", type=Path, default=Path("var/log"))
    parser.add_argument("--free-ports", action="store_true", help="start a private stack on free ports (reuse nothing)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.audio.is_file():
        _out(f"no such audio file: {args.audio} (run `make models` for the default caller)")
        return 2
    if args.url:
        return run(args.url, args.audio, args.agent, args.screenshot, args.lead_s, args.timeout_s)
    ports = Ports.free() if args.free_ports else Ports()
    stack = Stack(ports, reuse=not args.free_ports, log_dir=args.log_dir)
    if not args.free_ports and http_healthy(ports.gateway):
        log.info("using the running gateway at %s", stack.gateway_url)
        return run(stack.gateway_url, args.audio, args.agent, args.screenshot, args.lead_s, args.timeout_s)
    try:
        stack.start()
    except RuntimeError as exc:
        _out(f"could not start the stack: {exc} (logs in {args.log_dir})")
        return 1
    try:
        return run(stack.gateway_url, args.audio, args.agent, args.screenshot, args.lead_s, args.timeout_s)
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
