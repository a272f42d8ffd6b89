"""``run_call``: one whole :class:`~gateway.conversation.session.CallSession` over fakes, in loop time.

The one place that builds the settings (:func:`make_settings`) and the :class:`Deps`, so a change
of their shape is one edit here. Run it from a test marked ``@pytest.mark.looptime`` (the
``tests/session`` tier does so for every test): the loop's clock is then virtual and a minute of
call takes milliseconds; without it the call would take its real length, so :func:`run_call`
refuses to start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.agents.profile import AgentProfile, CallSummary
from gateway.config import GatewaySettings
from gateway.conversation.corrections import Corrections
from gateway.conversation.deps import Deps, TurnDetector
from tests.fakes.call import FakeCarrier, FakeHooks, FakeStore
from tests.fakes.caller import Step
from tests.fakes.llm import FakeLLM
from tests.fakes.speech import FakeSTT, FakeTTS, FakeTurnDetector, FakeVAD
from tests.fakes.transport import FakeTransport, TransportLog

SYSTEM_PROMPT = "You are the test receptionist."

TEST_SETTINGS: dict[str, Any] = {
    "turn_detection": "silence",
    "database_enabled": False,
    "recording_enabled": False,
    "webhook_url": None,
}
"""What the session tier changes from the defaults (each test may override any setting)."""


def make_settings(**overrides: Any) -> GatewaySettings:
    """The call's settings: the defaults, :data:`TEST_SETTINGS`, then ``overrides``; no ``.env`` read."""
    return GatewaySettings(_env_file=None, **{**TEST_SETTINGS, **overrides})  # type: ignore[call-arg]


def make_profile(settings: GatewaySettings, **overrides: Any) -> AgentProfile:
    """The agent answering: greeting, voice, corrections and transfer number from ``settings``."""
    fields: dict[str, Any] = {
        "greeting": settings.agent.greeting,
        "system_prompt": SYSTEM_PROMPT,
        "voice": settings.agent.voice,
        "corrections": Corrections(settings.agent.corrections),
        "transfer_number": settings.agent.transfer_number,
        "name": "test-agent",
    }
    return AgentProfile(**{**fields, **overrides})


def turn_dict(turn: Any) -> dict[str, Any]:
    """A stored turn as a dict (the record may hold dicts or a dataclass with ``to_dict``)."""
    if isinstance(turn, dict):
        return turn
    if hasattr(turn, "to_dict"):
        return dict(turn.to_dict())
    return dataclasses.asdict(turn)


@dataclass
class CallResult:
    """What happened on one call. Times in :attr:`log` are seconds of call time since it started."""

    settings: GatewaySettings
    transport: FakeTransport
    llm: FakeLLM
    stt: FakeSTT
    tts: FakeTTS
    store: FakeStore
    hooks: FakeHooks
    carrier: FakeCarrier | None
    turn_detector: TurnDetector | None
    call_s: float
    """How long the call lasted, seconds of loop (virtual) time."""
    wall_s: float
    """How long it took to run, real seconds."""

    @property
    def log(self) -> TransportLog:
        """Everything that crossed the transport."""
        return self.transport.log

    @property
    def summary(self) -> CallSummary:
        """The summary the hooks received (exactly one per call)."""
        assert len(self.hooks.summaries) == 1, f"{len(self.hooks.summaries)} summaries handed to the hooks"
        return self.hooks.summaries[0]

    @property
    def turns(self) -> list[dict[str, Any]]:
        """The call's turns, as handed to the hooks."""
        return [turn_dict(t) for t in self.summary.turns]

    def user_turns(self) -> list[dict[str, Any]]:
        """The caller's turns (backchannels included)."""
        return [t for t in self.turns if t["role"] == "user"]

    def agent_turns(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The agent's turns (``kind``: only replies ``<kind>-<n>``)."""
        return [
            t
            for t in self.turns
            if t["role"] == "assistant" and (kind is None or str(t.get("reply_id", "")).rsplit("-", 1)[0] == kind)
        ]

    def kinds(self) -> list[str]:
        """The kinds of the agent's turns, in order (greeting, reply, apology, …)."""
        return [str(t.get("reply_id", "")).rsplit("-", 1)[0] for t in self.agent_turns()]

    @property
    def stored_turns(self) -> list[dict[str, Any]]:
        """The turns the live store (Redis) holds for the call."""
        return self.store.turns.get(self.transport.started.call_id, [])


async def run_call(
    script: Sequence[Step] | FakeTransport,
    *,
    llm: FakeLLM | None = None,
    stt: FakeSTT | None = None,
    tts: FakeTTS | None = None,
    turn_detector: TurnDetector | None = None,
    store: FakeStore | None = None,
    carrier: FakeCarrier | None = None,
    no_carrier: bool = False,
    profile: dict[str, Any] | None = None,
    limit_s: float = 600.0,
    **settings: Any,
) -> CallResult:
    """Serve one call, scripted by ``script``, to its end; return what happened.

    Args:
        script: the caller's steps (or a :class:`FakeTransport` built with them).
        llm, stt, tts, turn_detector, store, carrier: fakes to use (default: fresh ones);
            ``turn_detector`` (a :class:`FakeTurnDetector` or a real one, e.g. the remote client
            over a mock transport) also switches ``turn_detection`` to ``smart_turn``.
        no_carrier: serve the call without carrier actions (``Deps.carrier`` is ``None``).
        profile: :class:`AgentProfile` fields to override.
        limit_s: the longest the call may last, seconds of loop time.
        **settings: :class:`GatewaySettings` fields.

    Raises:
        AssertionError: the loop's time is real (no ``looptime``), the caller's script could not
            be followed (an :class:`~tests.fakes.caller.Until` timed out), or the call did not end
            within ``limit_s``.
    """
    loop = asyncio.get_running_loop()
    assert getattr(loop, "looptime_on", False), "run_call needs virtual time: mark the test @pytest.mark.looptime"
    from gateway.conversation.session import CallSession

    transport = script if isinstance(script, FakeTransport) else FakeTransport(script)
    if turn_detector is not None:
        settings.setdefault("turn_detection", "smart_turn")
    config = make_settings(**settings)
    llm = llm or FakeLLM()
    stt = stt or FakeSTT()
    tts = tts or FakeTTS()
    store = store or FakeStore()
    stt.texts = transport.texts
    if isinstance(turn_detector, FakeTurnDetector):
        turn_detector.texts = transport.texts
    if carrier is None and not no_carrier:
        carrier = FakeCarrier()
    if carrier is not None and carrier.transport is None:
        carrier.transport = transport
    hooks = FakeHooks(make_profile(config, **(profile or {})))
    deps = Deps(
        settings=config,
        store=store,
        stt=stt,
        tts=tts,
        llm=llm,
        vad=FakeVAD(),
        hooks=hooks,
        smart_turn=turn_detector,
        carrier=carrier,
        gateway_id="gw-test",
    )
    session = CallSession(deps, transport)
    t_loop, t_wall = loop.time(), time.perf_counter()
    try:
        async with asyncio.timeout(limit_s):
            await session.run()
    except TimeoutError:
        raise AssertionError(f"the call did not end within {limit_s} s of call time") from None
    finally:
        await transport.stop_caller()
        if carrier is not None:
            await carrier.aclose()
    if transport.error is not None:
        raise AssertionError(f"the caller's script failed: {transport.error}") from transport.error
    return CallResult(
        settings=config,
        transport=transport,
        llm=llm,
        stt=stt,
        tts=tts,
        store=store,
        hooks=hooks,
        carrier=carrier,
        turn_detector=turn_detector,
        call_s=loop.time() - t_loop,
        wall_s=time.perf_counter() - t_wall,
    )
