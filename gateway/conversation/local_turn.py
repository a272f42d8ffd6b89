"""Smart Turn in the gateway process (``GATEWAY_SMART_TURN_BACKEND=local``, the CPU default).

:class:`LocalTurnDetector` satisfies :class:`gateway.conversation.deps.TurnDetector` with the
model of :mod:`shared.smart_turn`, one check at a time on a worker thread (ONNX and numpy release
the GIL, so the event loop keeps serving the other calls). The ``stt`` backend is
:class:`gateway.upstream.turn.RemoteTurnDetector`.
"""

from __future__ import annotations

import asyncio

import numpy as np

from shared.smart_turn import SmartTurn


class LocalTurnDetector:
    """Wraps one :class:`SmartTurn` shared by all the process's calls.

    Args:
        model: the loaded model (:class:`SmartTurn` raises ``FileNotFoundError`` when it is missing).
    """

    def __init__(self, model: SmartTurn) -> None:
        self.model = model

    async def probability(self, pcm16: np.ndarray) -> float:
        """P(turn complete) for the utterance so far (int16 (n,) 16 kHz; the last 8 s count)."""
        return await asyncio.to_thread(self.model.probability, pcm16)
