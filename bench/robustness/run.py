"""``make eval-robustness``: the gateway on real phone lines — noise, speakerphone echo, noise-only turns.

Every scripted caller (:mod:`bench.robustness.scripts`: Kokoro voices and real recordings) calls the
real :class:`~gateway.conversation.session.CallSession` through a simulated line
(:mod:`bench.robustness.line`: μ-law 8 kHz, telephone band, background noise at an SNR, the agent's
own voice fed back with a delay and an attenuation) and the gateway's real Twilio pacer, with the
real VAD, Smart Turn, faster-whisper and Kokoro and a scripted LLM, in virtual loop time
(``looptime``: each model's real compute time is slept on the loop's clock). Per condition it
reports WER, false speech starts, false barge-ins, missed barge-ins, how fast the line falls silent
under a real interruption, noise-only turns transcribed or answered, and end-of-turn delay.

Usage: ``python -m bench.robustness.run [--conditions clean,echo-10] [--label before]
[--json docs/eval-robustness-before.json] [--baseline docs/eval-robustness-before.json]``
(``GATEWAY_*`` variables change the gateway's settings, as for a real gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.robustness.line import Echo, PhoneLine, at_level, noise, noise_events
from bench.robustness.metrics import CallMetrics, measure, pool
from bench.robustness.models import CachedTTS, EngineSTT, Kokoro, ScriptedLLM, VirtualSmartTurn, VirtualVAD
from bench.robustness.scripts import ENGLISH, REPLIES_EN, REPLIES_ES, SPANISH, Caller
from bench.robustness.transport import AfterAgent, IntoAgent, LineTransport, Quiet, Speak, Step
from shared.audio import read_audio
from shared.config import models_dir

log = logging.getLogger("eval-robustness")


@dataclass(frozen=True)
class Condition:
    """One line: background noise (kind, SNR dB) and speakerphone echo."""

    name: str
    noise_kind: str | None = None
    snr_db: float | None = None
    echo: Echo | None = None
    callers: str = "en"

    @property
    def sounds(self) -> bool:
        """The noise-only turn has a breath, a cough and a clatter (noisy lines; a clean line is silent)."""
        return self.noise_kind is not None


CONDITIONS = [
    Condition("clean"),
    Condition("noise-20", "kitchen", 20),
    Condition("noise-10", "kitchen", 10),
    Condition("noise-5", "kitchen", 5),
    Condition("echo-6", echo=Echo(80, -6)),
    Condition("echo-10", echo=Echo(150, -10)),
    Condition("echo-20", echo=Echo(300, -20)),
    Condition("echo-10+noise-10", "kitchen", 10, Echo(150, -10)),
    Condition("spanish-echo-10", echo=Echo(150, -10), callers="es"),
]


# ---- the call -------------------------------------------------------------------------------------
class MemoryStore:
    """The live-call store, in memory (nothing reads it back)."""

    async def claim_stream(self, call_sid: str, stream_sid: str, ttl_s: int) -> str | None:
        return None

    def __getattr__(self, name: str) -> Any:
        async def ignore(*args: Any, **kwargs: Any) -> None:
            return None

        return ignore


class Hooks:
    """One agent profile; keeps the call's summary."""

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        self.summary: Any = None

    async def profile_for(self, call_sid: str, from_: str, to: str, resumed: bool = False) -> Any:
        return self.profile

    def call_moved(self, call_sid: str) -> None:
        """Never: the evaluation's calls are not resumed elsewhere."""

    async def call_ended(self, summary: Any) -> None:
        self.summary = summary


def line_audio(text: str, voice: str, lang: str, kokoro: Kokoro) -> tuple[np.ndarray, str]:
    """(float 8 kHz at the line's speech level, reference text) of a script line."""
    if text.startswith("file:"):
        path = models_dir() / "audio" / f"{text[5:]}.wav"
        audio, _ = read_audio(str(path), 8000)
        return at_level(audio.astype(np.float64)), path.with_suffix(".txt").read_text().strip()
    return at_level(kokoro.say(text, voice, lang).astype(np.float64)), text


def script_for(caller: Caller, kokoro: Kokoro, sounds: bool = False, seed: int = 0) -> list[Step]:
    """The caller's steps (see :mod:`bench.robustness.scripts`)."""

    def say(text: str, role: str = "turn") -> Speak:
        audio, ref = line_audio(text, caller.voice, caller.lang, kokoro)
        return Speak(np.concatenate([audio, np.zeros(1600)]), ref, role)

    return [
        AfterAgent(),
        say(caller.turn1),
        IntoAgent(2.0),
        say(caller.backchannel, "backchannel"),
        AfterAgent(),
        say(caller.turn2),
        IntoAgent(1.5),
        say(caller.interruption, "interruption"),
        AfterAgent(),
        Quiet(6.0, noise_events(6.0, seed) if sounds else None),
        say(caller.turn3),
        AfterAgent(),
    ]


@dataclass
class Models:
    """The process's models, loaded once."""

    vad: VirtualVAD
    stt: EngineSTT
    stt_es: EngineSTT | None
    smart_turn: VirtualSmartTurn
    kokoro: Kokoro


async def one_call(models: Models, caller: Caller, cond: Condition, seed: int) -> CallMetrics:
    """Serve one scripted call over the condition's line; its metrics."""
    from gateway.agents.profile import AgentProfile
    from gateway.config import GatewaySettings
    from gateway.conversation.corrections import Corrections
    from gateway.conversation.deps import Deps
    from gateway.conversation.session import CallSession

    settings = GatewaySettings(database_enabled=False, recording_enabled=False, webhook_url=None)  # type: ignore[call-arg]
    spanish = caller.lang == "es"
    stt = models.stt_es if spanish and models.stt_es is not None else models.stt
    stt.calls = []
    llm = ScriptedLLM(REPLIES_ES if spanish else REPLIES_EN)
    greeting = settings.agent.greeting
    profile_fields: dict[str, Any] = {}
    if spanish:
        greeting = "Gracias por llamar a Fontanería Acme, soy la recepcionista virtual. ¿En qué puedo ayudarle?"
        profile_fields = language_fields(settings)
    profile = AgentProfile(
        greeting=greeting,
        system_prompt="You are the receptionist of Acme Plumbing.",
        voice=caller.agent_voice,
        corrections=Corrections({}),
        name="eval",
        **profile_fields,
    )
    hooks = Hooks(profile)
    deps = Deps(
        settings=settings,
        store=MemoryStore(),
        stt=stt,
        tts=CachedTTS(models.kokoro),
        llm=llm,
        vad=models.vad,
        hooks=hooks,
        smart_turn=models.smart_turn if settings.listening.turn_detection == "smart_turn" else None,
        carrier=None,
        gateway_id="eval",
    )
    noise_audio = noise(cond.noise_kind, 30.0, seed) if cond.noise_kind else None
    line = PhoneLine(noise_audio, cond.snr_db, cond.echo, seed=seed)
    transport = LineTransport(
        script_for(caller, models.kokoro, cond.sounds, seed),
        line,
        settings.twilio.playback_lead_ms,
        settings.twilio.playback_tick_ms,
    )
    session = CallSession(deps, transport)
    events: list[tuple[str, int]] = []
    push = session.listener.push

    async def listened(pcm16: np.ndarray, *args: Any) -> list[Any]:
        out = await push(pcm16, *args)
        for ev in out:
            at = getattr(ev, "at_ms", getattr(ev, "start_ms", session.listener.now_ms))
            events.append((type(ev).__name__, int(at)))
        return out

    session.listener.push = listened  # type: ignore[method-assign,assignment]
    t0 = asyncio.get_running_loop().time()
    async with asyncio.timeout(400):
        await session.run()
    turns = list(hooks.summary.turns) if hooks.summary is not None else []
    tick = lambda at: int((at - t0) / 0.02)  # noqa: E731
    return measure(
        transport.log,
        transport.carrier.played,
        transport.carrier.clears,
        events,
        [(tick(c.at), c.text) for c in stt.calls],
        [(tick(at), text) for at, text, _ in llm.requests],
        turns,
        {"dropped_hallucinations": int(getattr(session.responder, "dropped", 0))},
    )


def language_fields(settings: Any) -> dict[str, Any]:
    """Profile fields of a Spanish agent, where the gateway has them (``language``)."""
    from gateway.agents.profile import AgentProfile

    return {"language": "es"} if "language" in AgentProfile.__dataclass_fields__ else {}


def run_condition(models: Models, cond: Condition, calls: int) -> dict[str, Any]:
    """All callers of ``cond``, each in its own virtual-time loop; the pooled row."""
    import looptime

    callers = SPANISH if cond.callers == "es" else ENGLISH[:calls]
    results = []
    for i, caller in enumerate(callers):
        loop = looptime.new_event_loop(start=0.0, noop_cycles=4, _enabled=True)
        try:
            started = time.perf_counter()
            results.append(loop.run_until_complete(one_call(models, caller, cond, seed=11 + i)))
            log.info("%s / %s: %.1fs", cond.name, caller.voice, time.perf_counter() - started)
        finally:
            loop.close()
    return pool(results)


# ---- the report -------------------------------------------------------------------------------------
COLUMNS = [
    ("WER", "wer", "{:.3f}"),
    ("false starts", "false_starts", "{}"),
    ("false barge-ins", "false_barge_ins", "{}"),
    ("missed barge-ins", "missed_barge_ins", "{}/{interruptions}"),
    ("barge-in silence p50 ms", "barge_in_silence_p50_ms", "{:.0f}"),
    ("pauses resumed", "resumed_pauses", "{}/{pauses}"),
    ("noise-only: transcribed / answered", "noise_transcripts", "{}/{noise_replies}"),
    ("end-of-turn p50 ms", "endpointing_p50_ms", "{:.0f}"),
]


def cell(row: dict[str, Any], key: str, fmt: str) -> str:
    """One formatted cell (``-`` when the value is missing)."""
    value = row.get(key)
    if value is None:
        return "-"
    return fmt.format(value, **row)


def table(rows: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]] | None = None) -> str:
    """Markdown: one line per condition (``before → after`` when a baseline is given)."""
    head = "| condition | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, row in rows.items():
        cells = []
        for _, key, fmt in COLUMNS:
            now = cell(row, key, fmt)
            if baseline is not None and name in baseline:
                before = cell(baseline[name], key, fmt)
                now = f"{before} → {now}" if before != now else now
            cells.append(now)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the conditions; print the table; write JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conditions", default=",".join(c.name for c in CONDITIONS))
    p.add_argument("--calls", type=int, default=len(ENGLISH), help="English callers per condition")
    p.add_argument("--label", default="")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--baseline", type=Path, default=None, help="a JSON of an earlier run: print before → after")
    p.add_argument("--cache", type=Path, default=Path("var/eval-robustness/tts"))
    p.add_argument("--denoise", action="store_true", help="trial: spectral gating (noisereduce) before STT")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    wanted = args.conditions.split(",")
    conditions = [c for c in CONDITIONS if c.name in wanted]
    if not conditions:
        p.error(f"no such condition in {wanted}; known: {[c.name for c in CONDITIONS]}")
    stt_es = None
    if any(c.callers == "es" for c in conditions) and language_fields(None):  # the gateway knows languages
        multilingual = models_dir() / "whisper-base"
        if (multilingual / "model.bin").exists():
            stt_es = EngineSTT(str(multilingual))
        else:
            log.warning("no multilingual model in %s: the Spanish caller is heard by tiny.en", multilingual)
    models = Models(VirtualVAD(), EngineSTT(), stt_es, VirtualSmartTurn(), Kokoro(args.cache))
    models.stt.denoise = args.denoise
    rows: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for cond in conditions:
        rows[cond.name] = run_condition(models, cond, args.calls)
        sys.stdout.write(
            f"{cond.name}: {json.dumps({k: v for k, v in rows[cond.name].items() if k not in ('refs', 'hyps')})}\n"
        )
    baseline = json.loads(args.baseline.read_text())["conditions"] if args.baseline else None
    sys.stdout.write("\n" + table(rows, baseline) + "\n")
    sys.stdout.write(f"\n{sum(r['calls'] for r in rows.values())} calls in {time.perf_counter() - started:.0f} s\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"label": args.label, "conditions": rows}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
