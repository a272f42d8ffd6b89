"""Compressed audio from a browser's ``MediaRecorder`` → PCM16 mono, decoded as it streams in.

A ``MediaRecorder`` gives one container stream in pieces (Chrome: WebM with Opus; Firefox: Ogg
with Opus); only the first piece has the header, so the pieces must be decoded as one stream,
never one by one. :class:`StreamDecoder` hands the bytes to FFmpeg's demuxers and decoders through
PyAV (``av.open`` on a blocking file-like pipe, in a thread of its own: the demuxer reads as the
bytes arrive) and resamples to ``rate_hz`` mono PCM16 with FFmpeg's resampler. The container is
probed (no format is assumed) with a small probe, so the first audio comes out after the header
and the first cluster, not after seconds of buffering.

A stream FFmpeg cannot read ends the decoder with one error (``on_error``); the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable

import av
import numpy as np

log = logging.getLogger(__name__)

PROBE_BYTES = 4096
"""FFmpeg's ``probesize`` for the container (a WebM/Ogg header is much smaller)."""


class _Pipe:
    """A blocking, unseekable file-like object over the pieces :meth:`write` is given (the decoder thread reads)."""

    def __init__(self) -> None:
        self._pieces: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._buffer = b""
        self._eof = False

    def write(self, data: bytes) -> None:
        self._pieces.put(data)

    def close(self) -> None:
        self._pieces.put(None)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, blocking until some arrive; ``b""`` once closed and drained."""
        while not self._buffer and not self._eof:
            piece = self._pieces.get()
            if piece is None:
                self._eof = True
            else:
                self._buffer = piece
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


class StreamDecoder:
    """Decodes one caller's compressed stream to PCM16 mono at ``rate_hz``, in a thread.

    Args:
        rate_hz: output sample rate, Hz (16000: the VAD's and STT's).
        on_audio: called on the event loop with each decoded chunk, int16 of shape (n,).
        on_error: called on the event loop, once, when FFmpeg cannot read the stream (the message).
    """

    def __init__(
        self,
        rate_hz: int,
        on_audio: Callable[[np.ndarray], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.rate_hz = rate_hz
        self._on_audio = on_audio
        self._on_error = on_error
        self._pipe = _Pipe()
        self._loop = asyncio.get_running_loop()
        self._thread: threading.Thread | None = None
        self.bytes_in = 0
        self.failed = False

    def feed(self, data: bytes) -> None:
        """Hand the next piece of the stream over (the first starts the decoder thread)."""
        if self.failed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="browser-audio-decoder", daemon=True)
            self._thread.start()
        self.bytes_in += len(data)
        self._pipe.write(data)

    def close(self) -> None:
        """End of stream: the thread decodes what it has and exits."""
        self._pipe.close()

    def _run(self) -> None:
        try:
            container = av.open(self._pipe, mode="r", options={"probesize": str(PROBE_BYTES), "analyzeduration": "0"})
        except Exception as exc:  # not a container FFmpeg knows, or the stream ended first
            self._fail(f"cannot read the audio stream: {exc}")
            return
        try:
            if not container.streams.audio:
                self._fail("the stream has no audio track")
                return
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=self.rate_hz)
            for packet in container.demux(stream):
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        self._deliver(out.to_ndarray().reshape(-1).astype(np.int16, copy=True))
            for out in resampler.resample(None):
                self._deliver(out.to_ndarray().reshape(-1).astype(np.int16, copy=True))
        except Exception as exc:
            self._fail(f"the audio stream broke off: {exc}")
        finally:
            container.close()

    def _deliver(self, pcm: np.ndarray) -> None:
        if pcm.size:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the call is over
                self._loop.call_soon_threadsafe(self._on_audio, pcm)

    def _fail(self, message: str) -> None:
        self.failed = True
        log.warning("browser audio: %s", message)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_error, message)
