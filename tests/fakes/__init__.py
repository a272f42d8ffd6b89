"""Scripted stand-ins for everything a live call touches, driving a whole call in virtual time.

After LiveKit Agents' ``tests/fake_session.py`` (``fake_stt``/``fake_tts``/``fake_llm``/``fake_vad``/
``fake_io``): a script of caller steps (:mod:`tests.fakes.caller`) plays through
:class:`FakeTransport`; :func:`run_call` serves it with :class:`~gateway.conversation.session.CallSession`
and returns what happened. Every fake satisfies its Protocol in :mod:`gateway.conversation.deps` /
:mod:`gateway.conversation.transport`, reads the event loop's clock and sleeps with asyncio, so under
``looptime`` a minute of call takes milliseconds and timings are exact and repeatable.
"""

from tests.fakes.call import FakeCarrier, FakeHooks, FakeStore
from tests.fakes.caller import Do, HangUp, Pause, Press, Say, Step, Type, Until
from tests.fakes.llm import FakeLLM, LLMReply, LLMRequest
from tests.fakes.session import CallResult, make_profile, make_settings, run_call
from tests.fakes.speech import FakeSTT, FakeTTS, FakeTurnDetector, FakeVAD
from tests.fakes.transport import FakeTransport, TransportLog

__all__ = [
    "CallResult",
    "Do",
    "FakeCarrier",
    "FakeHooks",
    "FakeLLM",
    "FakeSTT",
    "FakeStore",
    "FakeTTS",
    "FakeTransport",
    "FakeTurnDetector",
    "FakeVAD",
    "HangUp",
    "LLMReply",
    "LLMRequest",
    "Pause",
    "Press",
    "Say",
    "Step",
    "TransportLog",
    "Type",
    "Until",
    "make_profile",
    "make_settings",
    "run_call",
]
