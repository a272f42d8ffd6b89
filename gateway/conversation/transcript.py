"""What was said on a call: the turns of its record and the LLM's history, kept consistent.

:class:`Turn` is one entry of the call's record (Redis, the database row, the ``call.completed``
webhook); :meth:`Turn.to_dict` gives the stored shape (keys documented in ``docs/webhooks.md``).
:class:`Transcript` is the one place that changes the record's turns and the chat history the
LLM sees, so the history only ever holds what the caller said and what the caller *heard*
(an interrupted reply is trimmed to its played segments).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.conversation.replies import Reply


@dataclass
class Turn:
    """One turn of a call. Times are Unix seconds; ``audio_ms`` and ``barge_in_stream_ms`` are ms.

    Caller turns set ``raw_text`` (before corrections), ``audio_ms``, ``backchannel`` (speech over
    the agent that did not interrupt), ``unanswered``/``failed`` (the service that failed to
    answer it). Agent turns set ``reply_id``, ``full_text`` (what it meant to say; ``text`` is
    what was heard), ``interrupted``, ``status`` (``completed``/``interrupted``/``hangup``),
    ``latency_ms`` and, for a barge-in, ``barge_in_stream_ms`` (where in the caller's audio it fired).
    """

    role: Literal["user", "assistant"]
    text: str
    started_at: float
    ended_at: float
    raw_text: str | None = None
    audio_ms: int | None = None
    backchannel: bool = False
    unanswered: bool = False
    failed: str | None = None
    reply_id: str | None = None
    full_text: str | None = None
    interrupted: bool | None = None
    status: str | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    barge_in_stream_ms: int | None = None

    @classmethod
    def caller(cls, text: str, started_at: float | None = None, ended_at: float | None = None, **kw: Any) -> Turn:
        """A caller turn (times default to now)."""
        now = time.time()
        return cls("user", text, started_at if started_at is not None else now, ended_at or now, **kw)

    @classmethod
    def of_reply(cls, reply: Reply, status: str, barge_in_stream_ms: int | None = None) -> Turn:
        """The agent turn of ``reply``: only the heard segments when it was interrupted."""
        return cls(
            "assistant",
            reply.heard_text() if reply.interrupted else reply.text(),
            reply.started_at,
            time.time(),
            reply_id=reply.reply_id,
            full_text=reply.text(),
            interrupted=reply.interrupted,
            status=status,
            latency_ms={k: round(v, 1) for k, v in reply.latency_ms.items()},
            barge_in_stream_ms=barge_in_stream_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored shape: role, text, times, and only the fields that apply to this turn."""
        out: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.role == "assistant":
            out.update(
                reply_id=self.reply_id,
                full_text=self.full_text,
                interrupted=bool(self.interrupted),
                status=self.status,
                started_at=self.started_at,
                ended_at=self.ended_at,
                latency_ms=dict(self.latency_ms),
            )
            if self.barge_in_stream_ms is not None:
                out["barge_in_stream_ms"] = self.barge_in_stream_ms
            return out
        if self.raw_text is not None:
            out["raw_text"] = self.raw_text
        out.update(started_at=self.started_at, ended_at=self.ended_at)
        if self.audio_ms is not None:
            out["audio_ms"] = self.audio_ms
        if self.backchannel:
            out["backchannel"] = True
        if self.unanswered:
            out.update(unanswered=True, failed=self.failed)
        return out


class Transcript:
    """The call's turns and chat history.

    Args:
        append: writes one stored turn (a dict, :meth:`Turn.to_dict`) to the call's record.
        max_history_turns: how many history messages the LLM is sent (the system prompt aside).
    """

    def __init__(self, append: Callable[[dict[str, Any]], None], max_history_turns: int = 20) -> None:
        self._append = append
        self.max_history_turns = max_history_turns
        self.history: list[dict[str, str]] = []
        """OpenAI chat messages (user/assistant), oldest first."""
        self.carry_text = ""
        """Caller words transcribed but not yet answered (the caller went on talking)."""

    def messages(self, system_prompt: str, text: str) -> list[dict[str, str]]:
        """The request for answering ``text``: system prompt, the recent history, the caller's words."""
        recent = self.history[-self.max_history_turns :] if self.max_history_turns > 0 else []
        return [{"role": "system", "content": system_prompt}, *recent, {"role": "user", "content": text}]

    def restore(self, turns: list[dict[str, Any]]) -> None:
        """Rebuild the history from a call's stored turns (a resumed call: what was said and heard
        before its stream was lost). Backchannels and turns with no text are left out."""
        for turn in turns:
            text = str(turn.get("text") or "").strip()
            if text and not turn.get("backchannel"):
                self.history.append(
                    {"role": "assistant" if turn.get("role") == "assistant" else "user", "content": text}
                )

    def agent_said(self, reply: Reply) -> None:
        """A reply nobody asked for (the greeting) enters the history: the LLM must know it was heard."""
        if reply.spoken:
            reply.history_msg = {"role": "assistant", "content": reply.text()}
            self.history.append(reply.history_msg)

    def commit_exchange(self, text: str, user_turn: Turn, reply: Reply) -> None:
        """The caller's ``text`` got ``reply`` (being) spoken: both enter the history; the turn is stored."""
        self.carry_text = ""
        content = reply.heard_text() if reply.interrupted else reply.text()
        reply.history_msg = {"role": "assistant", "content": content}
        self.history += [{"role": "user", "content": text}, reply.history_msg]
        self._append(user_turn.to_dict())

    def unanswered(self, user_turn: Turn, service: str) -> None:
        """The caller spoke and got no answer (``service`` failed): store the turn, marked, alone.

        Its words are not carried into the caller's next turn.
        """
        self.carry_text = ""
        user_turn.unanswered, user_turn.failed = True, service
        self._append(user_turn.to_dict())

    def backchannel(self, text: str) -> None:
        """Store speech over the agent that did not interrupt it ("uh-huh")."""
        self._append(Turn.caller(text, backchannel=True).to_dict())

    def record_reply(self, reply: Reply, status: str, barge_in_stream_ms: int | None = None) -> None:
        """Store the agent's turn of ``reply`` once (nothing for a reply that said nothing).

        ``status`` other than ``completed`` marks a reply whose end was not heard as interrupted;
        its history message is trimmed to the heard segments.
        """
        if reply.recorded or not reply.spoken:
            return
        reply.recorded = True
        if status != "completed" and not reply.played_out:
            reply.interrupted = True
        turn = Turn.of_reply(reply, status, barge_in_stream_ms)
        if reply.history_msg is not None:
            reply.history_msg["content"] = turn.text
        self._append(turn.to_dict())
