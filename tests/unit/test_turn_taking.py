"""Endpointing (pure, on synthetic probabilities), the turn state machine, and real Silero VAD."""

import numpy as np
import pytest

from gateway.conversation.endpointing import Endpointer, SpeechEnded, SpeechStarted
from gateway.conversation.turns import Action, Event, State, TurnMachine
from gateway.conversation.vad import FRAME_SAMPLES, SileroVAD
from shared.audio import Resampler, float_to_pcm16, read_audio, ulaw_decode, ulaw_encode

FRAME = np.ones(512, dtype=np.int16)


def run(ep: Endpointer, probs: list[float]) -> list:
    events = []
    for p in probs:
        events += ep.push(FRAME * int(p * 100), p)
    return events


def test_speech_then_silence_gives_one_utterance():
    ep = Endpointer(threshold=0.5, silence_ms=320, min_speech_ms=96, pre_roll_ms=64, frame_ms=32)
    events = run(ep, [0.0] * 5 + [0.9] * 10 + [0.0] * 12)
    started = [e for e in events if isinstance(e, SpeechStarted)]
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert [s.at_ms for s in started] == [160]
    assert len(ended) == 1
    utt = ended[0]
    assert (utt.start_ms, utt.end_ms) == (160, 480)
    assert utt.detected_ms == utt.end_ms + 320
    # pre-roll (2 frames) + 10 speech frames + 100 ms tail (3 frames)
    assert utt.audio.size == (2 + 10 + 3) * 512


def test_short_blip_is_dropped():
    ep = Endpointer(threshold=0.5, silence_ms=320, min_speech_ms=160, frame_ms=32)
    assert run(ep, [0.0] * 3 + [0.9] * 3 + [0.0] * 20) == []


def test_pause_shorter_than_silence_does_not_end_turn():
    ep = Endpointer(threshold=0.5, silence_ms=500, min_speech_ms=96, frame_ms=32)
    events = run(ep, [0.9] * 10 + [0.0] * 10 + [0.9] * 10 + [0.0] * 20)  # 320 ms pause
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ended) == 1 and ended[0].end_ms == 30 * 32


def test_hysteresis_keeps_speech_between_thresholds():
    ep = Endpointer(threshold=0.5, silence_ms=160, min_speech_ms=64, frame_ms=32)
    events = run(ep, [0.9] * 4 + [0.4] * 10 + [0.0] * 6)  # 0.4 ≥ 0.35: still speech
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ended) == 1 and ended[0].end_ms == 14 * 32


def test_max_utterance_cuts_long_speech():
    ep = Endpointer(threshold=0.5, silence_ms=500, min_speech_ms=64, max_utterance_ms=640, frame_ms=32)
    ended = [e for e in run(ep, [0.9] * 40) if isinstance(e, SpeechEnded)]
    assert len(ended) >= 2


@pytest.mark.parametrize(
    ("start", "event", "state", "action"),
    [
        (State.LISTENING, Event.SPEECH_STARTED, State.USER_SPEAKING, Action.NONE),
        (State.USER_SPEAKING, Event.SPEECH_ENDED, State.THINKING, Action.TRANSCRIBE),
        (State.THINKING, Event.REPLY_AUDIO_STARTED, State.SPEAKING, Action.NONE),
        (State.THINKING, Event.SPEECH_STARTED, State.USER_SPEAKING, Action.CANCEL_REPLY),
        (State.THINKING, Event.REPLY_ABANDONED, State.LISTENING, Action.NONE),
        (State.SPEAKING, Event.SPEECH_STARTED, State.USER_SPEAKING, Action.BARGE_IN),
        (State.SPEAKING, Event.REPLY_FINISHED, State.LISTENING, Action.NONE),
        # events that do not apply leave the state alone
        (State.USER_SPEAKING, Event.REPLY_FINISHED, State.USER_SPEAKING, Action.NONE),
        (State.LISTENING, Event.REPLY_ABANDONED, State.LISTENING, Action.NONE),
    ],
)
def test_turn_transitions(start, event, state, action):
    m = TurnMachine(start)
    assert m.handle(event) is action
    assert m.state is state


def test_full_conversation_cycle():
    m = TurnMachine()
    script = [Event.SPEECH_STARTED, Event.SPEECH_ENDED, Event.REPLY_AUDIO_STARTED, Event.REPLY_FINISHED]
    assert [m.handle(e) for e in script] == [Action.NONE, Action.TRANSCRIBE, Action.NONE, Action.NONE]
    assert m.state is State.LISTENING


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


def test_silero_detects_real_speech_over_the_phone_band(vad, arctic_wav):
    """Real recording → 8 kHz μ-law (what Twilio sends) → 16 kHz → VAD: speech found, silence not."""
    audio, _ = read_audio(arctic_wav, target_rate=8000)
    ulaw = ulaw_encode(float_to_pcm16(audio))
    stream, rs = vad.stream(), Resampler(8000, 16000)
    probs = []
    for i in range(0, len(ulaw), 160):
        probs += [p for _, p in stream.process(rs.process(ulaw_decode(ulaw[i : i + 160])))]
    speech = np.array(probs) >= 0.5
    assert speech.mean() > 0.4  # the clip is mostly speech
    silence = vad.stream().process(np.zeros(FRAME_SAMPLES * 20, dtype=np.int16))
    assert max(p for _, p in silence) < 0.2


def test_endpointer_on_real_speech_finds_one_utterance(vad, arctic_wav):
    audio, _ = read_audio(arctic_wav, target_rate=16000)
    pcm = np.concatenate([float_to_pcm16(audio), np.zeros(16000, dtype=np.int16)])
    stream, ep = vad.stream(), Endpointer(silence_ms=500)
    events = []
    for frame, p in stream.process(pcm):
        events += ep.push(frame, p)
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(ended) == 1
    assert 2.0 < ended[0].audio.size / 16000 < 3.6


def test_pause_detected_once_per_pause_then_commit_ends_turn():
    from gateway.conversation.endpointing import PauseDetected

    ep = Endpointer(threshold=0.5, silence_ms=1500, min_speech_ms=64, frame_ms=32, check_ms=192)
    events = run(ep, [0.9] * 10 + [0.0] * 10)
    pauses = [e for e in events if isinstance(e, PauseDetected)]
    assert len(pauses) == 1 and not any(isinstance(e, SpeechEnded) for e in events)
    assert pauses[0].audio.size == 10 * 512  # speech so far, no trailing silence
    ended = ep.commit()
    assert ended is not None and ended.end_ms == 320 and ended.detected_ms == 20 * 32
    assert ep.commit() is None  # nothing open any more


def test_new_speech_makes_a_pause_stale():
    from gateway.conversation.endpointing import PauseDetected

    ep = Endpointer(threshold=0.5, silence_ms=1500, min_speech_ms=64, frame_ms=32, check_ms=96)
    first = [e for e in run(ep, [0.9] * 5 + [0.0] * 4) if isinstance(e, PauseDetected)]
    run(ep, [0.9] * 3)
    assert first[0].pause_id != ep.pause_id
    second = [e for e in run(ep, [0.0] * 4) if isinstance(e, PauseDetected)]
    assert second and second[0].pause_id == ep.pause_id


def test_without_smart_turn_max_silence_still_ends_turn():
    ep = Endpointer(threshold=0.5, silence_ms=320, min_speech_ms=64, frame_ms=32, check_ms=96)
    ended = [e for e in run(ep, [0.9] * 5 + [0.0] * 12) if isinstance(e, SpeechEnded)]
    assert len(ended) == 1
