"""Silero batched across calls scores every frame exactly as each call's own stream would.

Real speech (CMU ARCTIC and the Kokoro caller in models/audio) through the real v6 graph: several
streams of different lengths, offsets and chunk sizes, one going digitally silent, fed through
:meth:`VADStream.feed` concurrently, against the same audio through :meth:`VADStream.process`
(one run per frame, the unbatched path).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from gateway.conversation.vad import FRAME_SAMPLES, SileroVAD, VADStream
from shared.audio import float_to_pcm16, read_audio


@pytest.fixture(scope="module")
def speech(arctic_wav: Path, caller_wav: Path) -> list[np.ndarray]:
    """Five caller streams, int16 16 kHz: different audio, lengths and frame phases."""
    arctic = float_to_pcm16(read_audio(arctic_wav, 16000)[0])
    caller = float_to_pcm16(read_audio(caller_wav, 16000)[0])
    silent_tail = np.concatenate([arctic[: 40 * FRAME_SAMPLES], np.zeros(30 * FRAME_SAMPLES, np.int16)])
    return [arctic, caller[:90_000], arctic[777:60_000], caller[5_000:], silent_tail]


CHUNKS = [320, 160, 512, 1000, 333]
"""Samples per push, one per stream (Twilio's 20 ms at 16 kHz is 320)."""


def unbatched(vad: SileroVAD, pcm: np.ndarray, chunk: int) -> list[float]:
    stream = vad.stream()
    return [p for i in range(0, pcm.size, chunk) for _, p in stream.process(pcm[i : i + chunk])]


async def fed(
    vad: SileroVAD, pcm: np.ndarray, chunk: int, frames: list[np.ndarray] | None = None, stream: VADStream | None = None
) -> list[float]:
    stream, probs = stream or vad.stream(), []
    for i in range(0, pcm.size, chunk):
        for frame, p in await stream.feed(pcm[i : i + chunk]):
            probs.append(p)
            if frames is not None:
                frames.append(frame)
    return probs


@pytest.fixture(scope="module")
def reference(speech: list[np.ndarray]) -> list[list[float]]:
    vad = SileroVAD(batch_wait_ms=0)
    return [unbatched(vad, pcm, chunk) for pcm, chunk in zip(speech, CHUNKS, strict=True)]


async def test_batched_streams_score_as_their_own_streams(speech, reference) -> None:
    vad = SileroVAD(batch_wait_ms=5, max_batch=3)  # both triggers: the timer and a full batch
    streams = [vad.stream() for _ in speech]  # the calls are live before their audio comes
    got = await asyncio.gather(
        *(fed(vad, pcm, chunk, stream=s) for pcm, chunk, s in zip(speech, CHUNKS, streams, strict=True))
    )
    for probs, ref in zip(got, reference, strict=True):
        assert len(probs) == len(ref)
        np.testing.assert_allclose(probs, ref, atol=1e-5)
    assert max(max(r) for r in reference) > 0.9  # real speech was scored
    assert reference[4][-30:] == [0.0] * 30  # the silent tail is not fed to the model
    batcher = vad.batcher
    assert batcher.frames / batcher.runs > 1.5  # frames of several calls shared runs
    assert batcher.frames == sum(sum(p > 0 for p in r) for r in reference)  # silence never queued


async def test_frames_come_back_as_pushed(speech) -> None:
    frames: list[np.ndarray] = []
    await fed(SileroVAD(batch_wait_ms=2), speech[2], 333, frames)
    n = len(frames) * FRAME_SAMPLES
    np.testing.assert_array_equal(np.concatenate(frames), speech[2][:n])


async def test_a_stream_cancelled_mid_batch_leaves_the_others_exact(speech, reference) -> None:
    vad = SileroVAD(batch_wait_ms=20, max_batch=64)
    idle = vad.stream()  # a live call with no frame now: the batch waits for the timer
    doomed = asyncio.create_task(fed(vad, speech[1], CHUNKS[1]))
    others = [asyncio.create_task(fed(vad, speech[i], CHUNKS[i])) for i in (0, 2, 3)]
    await asyncio.sleep(0)  # each task runs to its first frame's wait
    assert vad.batcher.waiting == 4  # all four frames are in the pending batch
    doomed.cancel()
    vad.batcher.wait_s = 0.002  # the rest of the audio need not wait as long
    results = await asyncio.gather(*others)
    assert doomed.cancelled()
    for probs, i in zip(results, (0, 2, 3), strict=True):
        np.testing.assert_allclose(probs, reference[i], atol=1e-5)
    del idle


async def test_a_frame_of_every_live_stream_runs_without_the_timer(speech, reference) -> None:
    vad = SileroVAD(batch_wait_ms=30_000)  # the timer would never fire within the test
    a, b = vad.stream(), vad.stream()
    got = await asyncio.wait_for(
        asyncio.gather(fed(vad, speech[0], 320, stream=a), fed(vad, speech[2], 320, stream=b)), 60
    )
    del a, b
    np.testing.assert_allclose(got[0], reference[0], atol=1e-5)
    np.testing.assert_allclose(got[1], reference[2], atol=1e-5)  # frames do not depend on the chunking
    assert vad.batcher.runs > 0


async def test_wait_zero_scores_at_once_without_the_batcher(speech, reference) -> None:
    vad = SileroVAD(batch_wait_ms=0)
    probs = await fed(vad, speech[0], CHUNKS[0])
    assert probs == reference[0]
    assert vad.batcher.runs == 0


async def test_a_failing_model_fails_every_frame_of_its_batch() -> None:
    vad = SileroVAD(batch_wait_ms=1)

    def broken(*_args: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise RuntimeError("onnx failed")

    vad.batcher._run = broken
    voiced = (np.sin(np.arange(FRAME_SAMPLES) / 3) * 8000).astype(np.int16)
    results = await asyncio.gather(*(vad.stream().feed(voiced) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
