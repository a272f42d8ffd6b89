"""The groups of :class:`gateway.config.GatewaySettings`: one pydantic model per responsibility.

Each group is a field of the settings (``settings.listening.vad_threshold``) and an environment
prefix: ``GATEWAY_<GROUP>__<FIELD>`` (``GATEWAY_LISTENING__VAD_THRESHOLD=0.6``), or the whole
group as JSON (``GATEWAY_LLM='{"model": "qwen2.5-7b-instruct"}'``). The groups follow the
gateway's packages and the order a call takes, so a reader looking for a knob looks where the
code using it lives:

* ``twilio`` — the carrier edge (``gateway/telephony/``): credentials, the REST base URL, the
  stream token, Media Streams message limits and the outbound pacing lead.
* ``stt``, ``tts``, ``llm`` — one group per upstream service (``gateway/upstream/``): URL,
  timeout and, for the LLM, model and sampling. Three groups, not one ``upstream``: their fields
  differ and each has its own defaults (a shared class would lose them on a partial override).
* ``redis`` — per-call state and the gateways' heartbeats (admission, the call's writer, the
  orphan sweep): URL, timeouts, TTLs.
* ``listening`` — hearing the caller (``conversation/listening.py``, ``endpointing.py``,
  ``smart_turn.py``, ``vad.py``, ``interruptions.py``): VAD, turn detection, barge-in, backchannels.
* ``call`` — one call's clock: its length cap, the silence timers, and the hang-up timeouts.
* ``agent`` — who answers and what it says (``gateway/agents/``, the settings-only agent): voice,
  greeting, prompt, corrections, tools, the re-prompt/goodbye lines, the unknown-number policy.
* ``browser`` — the browser carriers (``gateway/browser/``): the ``/phone`` softphone's ICE
  servers, the WebSocket voice API's limits, the agent audio's rate.
* ``fleet`` — gateways that share calls (``gateway/fleet/``): this gateway's advertised stream URL
  in the Redis registry, the SIGTERM drain, and how long a lost stream waits to be resumed elsewhere.
* ``database``, ``admin``, ``webhook``, ``outbox``, ``extraction``, ``recording`` — the tenants
  and the work after the call (``gateway/db/``, ``gateway/admin/``, ``gateway/after_call/``).

What every part of the process shares stays at the top level: host, port, log level,
environment, public URL, data directory, the shutdown grace and the server's WebSocket size cap.

**Legacy names.** Before the groups every setting was flat (``GATEWAY_VAD_THRESHOLD``,
``GATEWAY_TWILIO_AUTH_TOKEN``); those names keep working as aliases. A group's flat name is
``legacy_prefix + field`` (``twilio_`` + ``auth_token``) unless ``legacy_names`` says otherwise;
:func:`gateway.config.legacy_fields` builds the whole map from these two class variables, so a
field added to a group gets its flat alias without a second list to keep in step.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr

from gateway.agents.defaults import default_system_prompt
from gateway.conversation.interruptions import DEFAULT_BACKCHANNELS
from shared.config import DEFAULT_MODEL_ID


class SettingsGroup(BaseModel):
    """A group of settings; unknown keys are ignored (as unknown ``GATEWAY_`` variables are)."""

    legacy_prefix: ClassVar[str] = ""
    """Prefix of the fields' flat names (``twilio_``); empty: the flat name is the field name."""
    legacy_names: ClassVar[dict[str, str]] = {}
    """Fields whose flat name is not ``legacy_prefix + field``: field → flat name."""


class TwilioSettings(SettingsGroup):
    """The carrier edge: Twilio credentials, REST API and Media Streams limits."""

    legacy_prefix: ClassVar[str] = "twilio_"
    legacy_names: ClassVar[dict[str, str]] = {
        name: name
        for name in ("stream_token_ttl_s", "max_message_chars", "max_media_payload_bytes", "playback_lead_ms")
    }

    auth_token: SecretStr = SecretStr("")
    """Validates ``X-Twilio-Signature`` when set; with the account SID, also authenticates REST calls."""
    account_sid: str = ""
    """Account SID for Twilio's REST API (hang-up, transfer); empty disables REST calls."""
    api_base_url: str = "https://api.twilio.com"
    """Base URL of Twilio's REST API (tests point it at a local fake)."""
    stream_token_ttl_s: int = 120
    """How long the stream token issued by the voice webhook stays valid, seconds (see
    ``gateway/telephony/signature.py``; checked when the auth token is set)."""
    max_message_chars: int = 16384
    """A Media Streams message longer than this is skipped unparsed and counted (Twilio's are < 1 KiB
    but for ``start`` with its custom parameters)."""
    max_media_payload_bytes: int = 1600
    """A ``media`` payload larger than this (decoded μ-law bytes; 200 ms) is skipped and counted
    (Twilio sends 20 ms: 160 bytes)."""
    playback_lead_ms: int = 100
    """The least outbound audio kept ahead of real time at Twilio, ms (a small jitter buffer there)."""
    playback_tick_ms: int = 60
    """How often a call's outbound pacer wakes while a reply plays, ms: each wake tops Twilio's
    buffer up to ``playback_lead_ms + playback_tick_ms`` ahead (0 wakes once per 20 ms frame)."""


class SttSettings(SettingsGroup):
    """The STT service."""

    legacy_prefix: ClassVar[str] = "stt_"

    url: str = "http://127.0.0.1:8001"
    """STT service base URL."""
    timeout_s: float = 10.0
    """STT request timeout, seconds; a timeout becomes a spoken apology."""


class TtsSettings(SettingsGroup):
    """The TTS service."""

    legacy_prefix: ClassVar[str] = "tts_"

    url: str = "http://127.0.0.1:8002"
    """TTS service base URL."""
    timeout_s: float = 15.0
    """TTS request timeout, seconds."""


class LlmSettings(SettingsGroup):
    """The LLM server (vLLM or the CPU stand-in) for replies; extraction uses it too."""

    legacy_prefix: ClassVar[str] = "llm_"

    url: str = "http://127.0.0.1:8000/v1"
    """OpenAI-compatible base URL of the LLM (vLLM or the CPU stand-in), including ``/v1``."""
    model: str = DEFAULT_MODEL_ID
    """Served model id."""
    api_key: SecretStr = SecretStr("not-needed")
    """Bearer token for the LLM server, if it requires one."""
    max_tokens: int = 80
    """Reply length cap, tokens."""
    temperature: float = 0.3
    """Sampling temperature."""
    timeout_s: float = 20.0
    """LLM request timeout, seconds."""
    prewarm: bool = True
    """At call start, while the greeting plays, ask the LLM for one token of the call's prompt so the
    server holds its prefix (system prompt, greeting) in its KV cache: the caller's first turn then
    skips that prefill. llama.cpp keeps only its last prompt (post-call extraction evicts it);
    vLLM's prefix cache keeps it anyway, at the cost of one tiny request per call."""


class RedisSettings(SettingsGroup):
    """Per-call turn state and the gateways' heartbeats."""

    legacy_prefix: ClassVar[str] = "redis_"
    legacy_names: ClassVar[dict[str, str]] = {
        name: name for name in ("record_turns_ttl_s", "heartbeat_ttl_s", "orphan_sweep_interval_s")
    }

    url: str = "redis://127.0.0.1:6379/0"
    """Redis for per-call turn state."""
    socket_timeout_s: float = 2.0
    """A Redis command slower than this fails (the call's writer retries; the call goes on), seconds."""
    flush_timeout_s: float = 3.0
    """At hang-up, how long the call's pending Redis writes may take before the call is finished
    without them (the database row and the webhook are built from the call's own record), seconds."""
    record_turns_ttl_s: int = 7 * 24 * 3600
    """How long a finished call stays in Redis, seconds."""
    heartbeat_ttl_s: float = 10.0
    """A gateway whose Redis heartbeat is older than this is dead: its calls are finished as
    ``gateway-lost`` by the other gateways (or by it, when it restarts), seconds."""
    orphan_sweep_interval_s: float = 5.0
    """How often each gateway looks for dead gateways' calls, seconds."""


class FleetSettings(SettingsGroup):
    """Gateways that share calls: the registry, the drain on SIGTERM, resuming a call whose stream was lost
    (``gateway/fleet/``, docs/scale-out.md)."""

    legacy_prefix: ClassVar[str] = "fleet_"

    advertise_url: str | None = None
    """This gateway's own public base URL (``https://gw-2.example.com``; ``http://10.0.0.7:8080``):
    the voice webhook, served by any gateway, puts the least-loaded gateway's advertised URL in
    ``<Stream url>`` (``wss://…/twilio/stream``). Unset: ``GATEWAY_PUBLIC_URL``; with neither, this
    gateway is not offered to the others and streams its own calls (the one-host default)."""
    drain_timeout_s: float = 20.0
    """On SIGTERM the gateway drains: the registry stops sending it calls, its calls go on; once none
    is left, or after this long, it shuts down (calls still open then are handed to another gateway
    through Twilio's ``<Redirect>``), seconds. Keep it below the orchestrator's stop grace
    (compose ``stop_grace_period``: 30 s)."""
    resume_wait_s: float = 4.0
    """A call whose stream was lost without Twilio's ``stop`` (this gateway's shutdown, a network
    cut) waits this long for another gateway to resume it before it is finished here, seconds."""
    max_routes: int = Field(default=5, ge=1)
    """How many times the voice webhook routes one call (the first time, then after each lost or
    failed stream) before it gives up on it (an apology and a hang-up)."""


class ListeningSettings(SettingsGroup):
    """Hearing the caller: voice activity, end of turn, barge-in (see docs/turn-taking.md)."""

    vad_model_path: str | None = None
    """Silero VAD ONNX; defaults to the ``silero_vad_v6.onnx`` faster-whisper ships."""
    vad_threshold: float = 0.5
    """Silero speech probability that counts as speech (silence below it minus 0.15)."""
    vad_batch_wait_ms: int = Field(default=10, ge=0, le=32)
    """How long a call's completed 32 ms VAD frame waits for other calls' frames, so that one Silero
    run scores them all (``gateway/conversation/vad_batch.py``); 0: each frame runs alone, at once.
    Adds at most this much to VAD, barge-in and endpointing decisions (docs/benchmarks.md)."""
    vad_max_batch: int = Field(default=64, ge=1)
    """A VAD batch this full runs without waiting (bounds one run's time on the event loop: ~4 ms at 64)."""
    turn_detection: Literal["smart_turn", "silence"] = "smart_turn"
    """``smart_turn``: after a short pause Smart Turn v3 decides if the caller is done (fast on a
    finished question, patient mid-sentence); ``silence``: only ``endpoint_silence_ms``."""
    smart_turn_model_path: str | None = None
    """Smart Turn ONNX; defaults to ``models/smart-turn/smart-turn-v3.2-cpu.onnx``."""
    smart_turn_pause_ms: int = 200
    """Pause after which Smart Turn is asked whether the turn is complete."""
    smart_turn_threshold: float = 0.5
    """Smart Turn probability at which the turn ends."""
    smart_turn_max_silence_ms: int = 1500
    """With Smart Turn, a pause this long ends the turn whatever the model says."""
    smart_turn_backend: Literal["local", "stt"] = "local"
    """Where Smart Turn runs: ``local`` in this process (a worker thread; the CPU default), ``stt``
    the STT service's ``POST /v1/turn``, batched across calls (the GPU host: no model in the gateway).
    A failed remote check counts as "not done", so ``smart_turn_max_silence_ms`` ends the turn."""
    smart_turn_timeout_s: float = 0.5
    """With the ``stt`` backend, the longest one turn check may take (connect + answer), seconds."""
    endpoint_silence_ms: int = 500
    """Silence after speech that ends the caller's turn (``turn_detection=silence``)."""
    early_stt: bool = True
    """Early transcription: start transcribing the utterance once the caller has paused for
    ``early_stt_ms``, while the end of turn is still being decided; when the turn ends on that same
    audio (the caller did not speak again) the reply uses that transcript, else it is dropped
    (``gateway/conversation/early_stt.py``, docs/turn-taking.md)."""
    early_stt_ms: int = Field(default=96, ge=0)
    """Silence after which the early transcription starts, ms; never before the utterance's 100 ms of
    trailing silence are in (three 32 ms frames: 96, the default, is the earliest). Before
    ``smart_turn_pause_ms`` it gets a head start on the Smart Turn check; a pause the caller breaks
    costs one cancelled transcription (docs/benchmarks.md, issue 13c)."""
    min_speech_ms: int = 250
    """Speech shorter than this is ignored (clicks, noise)."""
    pre_roll_ms: int = 200
    """Audio kept before detected speech start so the first syllable reaches STT."""
    barge_in_min_ms: int = 1200
    """Voiced caller speech over the agent this long interrupts at once (clear + cancel); shorter speech
    is transcribed and interrupts only if it has enough words (see docs/turn-taking.md). The agent is
    already silent from the speech's onset (``barge_in_pause_ms``), so this only has to outlast the
    longest backchannel ("mm-hm" runs to 960 ms); without the pause, 800 ms talks over the caller less."""
    barge_in_min_words: int = 3
    """Shorter speech over the agent interrupts only with this many words that are not backchannels."""
    barge_in_pause_ms: int = Field(default=64, ge=0)
    """Voiced caller speech over the agent this long (not its own echo) pauses the agent's audio at
    once, keeping the rest queued (what the carrier buffered, ≤ ``playback_lead_ms`` +
    ``playback_tick_ms``, plays on); it is then interrupted (``barge_in_min_ms``, or words) or resumed
    where it stopped (a backchannel, a noise, a cough). 0: no pause, the agent talks on until it is
    interrupted (docs/turn-taking.md, LiveKit Agents' ``resume_false_interruption``)."""
    false_interruption_timeout_ms: int = Field(default=2000, ge=0)
    """A pause that is neither confirmed as an interruption nor resumed within this long resumes (a
    decision that never came: a slow or failed transcription), ms."""
    echo_gate: bool = True
    """Ignore caller audio that the agent's own voice coming back down the line explains (speakerphone
    echo), from the delay and level of the echo estimated against what the gateway played
    (``gateway/conversation/echo.py``): it neither pauses nor interrupts the agent nor starts a turn."""
    echo_margin_db: float = 6.0
    """How far above the predicted echo caller audio must be to count as the caller, dB."""
    backchannels: list[str] = Field(default_factory=lambda: list(DEFAULT_BACKCHANNELS))
    """Acknowledgements ("mm-hm", "yeah", "okay") that never interrupt the agent."""


class CallSettings(SettingsGroup):
    """One call's clock: its length, the caller-silence timers, the hang-up timeouts."""

    max_call_seconds: int = 900
    """Calls are closed after this long."""
    reprompt_after_s: float = 8.0
    """Caller silence after which the agent asks if they are still there."""
    hangup_after_s: float = 20.0
    """Caller silence after which the agent says goodbye and hangs up."""
    task_close_timeout_s: float = 3.0
    """At hang-up, how long the call's tasks get to stop after being cancelled; one that ignores
    cancellation is abandoned (logged, ``gateway_abandoned_tasks_total``), seconds."""
    finish_timeout_s: float = 20.0
    """Longest time storing a finished call (database row, recording, webhook event) may take, seconds."""


class AgentSettings(SettingsGroup):
    """The settings' agent (every call without a database; unknown numbers with one) and its lines."""

    voice: str = "af_heart"
    """Kokoro voice of the agent (a Spanish agent whose voice is English speaks with ``ef_dora``)."""
    language: Literal["en", "es", "auto"] = "en"
    """The language the agent answers in: ``en``, ``es``, or ``auto`` (detected from the caller's first
    words; English until then). ``es``/``auto`` need the STT service's multilingual model
    (``STT_MULTILINGUAL_MODEL``); a Spanish agent left with the English greeting greets in Spanish
    (``gateway/conversation/language.py``)."""
    greeting: str = "Thanks for calling Acme Plumbing, this is the virtual receptionist. How can I help you today?"
    """Spoken when the call connects."""
    system_prompt: str = Field(default_factory=default_system_prompt)
    """The LLM system prompt (default: a plumbing receptionist with the business facts)."""
    corrections: dict[str, str] = Field(default_factory=lambda: {"acne plumbing": "Acme Plumbing"})
    """Keyword corrections applied to transcripts: JSON object ``{"pattern": "replacement"}``;
    whole word, case-insensitive."""
    tools: list[str] = Field(default_factory=list)
    """Function-calling tools the agent may use: ``end_call``, ``transfer_call``, ``take_message``,
    ``book_appointment`` (JSON list). Off by default: the 0.5B CPU model calls tools unreliably; enable
    with a model that handles function calling (e.g. on vLLM with ``--tool-call-parser hermes``)."""
    transfer_number: str | None = None
    """E.164 number ``transfer_call`` dials (the default agent's)."""
    end_call_goodbye: str = "Thanks for calling Acme Plumbing. Goodbye!"
    """Said before hanging up when the model ends the call without saying goodbye itself."""
    max_history_turns: int = 12
    """Messages of conversation history sent to the LLM."""
    reprompt_text: str = "Are you still there?"
    """Spoken after ``call.reprompt_after_s`` of silence."""
    goodbye_text: str = "I haven't heard anything, so I'll hang up now. Please call back any time. Goodbye!"
    """Spoken before hanging up on a silent line."""
    trouble_reprompt_text: str = "Sorry, I'm having technical trouble. Could you say that again?"
    """Spoken instead of the re-prompt when the caller's last turn got no answer (an upstream failed)."""
    trouble_goodbye_text: str = (
        "Sorry, we're having technical trouble right now. Please call back in a few minutes. Goodbye!"
    )
    """Spoken instead of the goodbye when the caller's last turn got no answer (an upstream failed)."""
    resume_text: str = "Sorry, you cut out for a second. {last}"
    """Said when another gateway resumes a call whose gateway was lost (``{last}``: the last sentence
    the caller heard from the agent, so the conversation picks up where it was)."""
    resume_ask_text: str = "Sorry, you cut out for a second. Could you say that again?"
    """Said instead when the caller spoke last: the answer they were owed was lost with the gateway."""
    unknown_number_policy: Literal["default", "reject"] = "default"
    """A call to a number no agent owns: ``default`` (the default agent, else the settings agent)
    or ``reject`` (speak ``reject_message`` and hang up)."""
    reject_message: str = "Sorry, this number is not in service. Please check the number and call again. Goodbye."
    """Spoken to callers of unknown numbers when the policy is ``reject``."""


class DatabaseSettings(SettingsGroup):
    """Agents, numbers, corrections, calls and the webhook outbox."""

    legacy_prefix: ClassVar[str] = "database_"

    enabled: bool = True
    """Agents, numbers, corrections, calls and the webhook outbox in a database (admin API,
    signed at-least-once webhooks, extraction); ``false``: the settings-only agent."""
    url: str | None = None
    """SQLAlchemy URL (also read from plain ``DATABASE_URL``); default
    ``sqlite+aiosqlite:///<data_dir>/switchboard.db``. PostgreSQL: ``postgresql://user:pass@host/db`` (asyncpg)."""
    auto_migrate: bool = True
    """Run the Alembic migrations (``upgrade head``) when the gateway starts."""


class AdminSettings(SettingsGroup):
    """The admin API and page."""

    legacy_prefix: ClassVar[str] = "admin_"

    api_key: SecretStr = SecretStr("")
    """Key for ``/api/*``, ``/v1/pipeline`` and the ``/admin`` page (``Authorization: Bearer <key>``
    or ``X-Admin-Key``); empty disables them. ``production`` refuses a placeholder."""


DEFAULT_ICE_SERVERS: list[dict[str, Any]] = [{"urls": ["stun:stun.l.google.com:19302"]}]


class BrowserSettings(SettingsGroup):
    """Calls from a browser: the ``/phone`` WebRTC softphone and the ``/ws/conversation`` voice API."""

    legacy_prefix: ClassVar[str] = "browser_"
    legacy_names: ClassVar[dict[str, str]] = {"ice_servers": "ice_servers"}

    enabled: bool = True
    """Serve ``/phone``'s calls and ``/ws/conversation`` (the page itself is always served)."""
    require_admin_key: bool = False
    """Browser calls need the admin key (``Authorization: Bearer`` or ``X-Admin-Key``; the page sends
    the key the admin page saved). Off: anyone who reaches the gateway may talk to its agents."""
    ice_servers: list[dict[str, Any]] = Field(default_factory=lambda: [dict(s) for s in DEFAULT_ICE_SERVERS])
    """STUN/TURN servers for WebRTC, JSON as the browser's ``RTCIceServer`` list (``urls``,
    ``username``, ``credential``), used by the gateway and the page. Behind a proxy that passes no
    UDP (RunPod) add a TURN server over TCP or TLS: ``[{"urls": "turns:turn.example.com:443?transport=tcp",
    "username": "u", "credential": "p"}]``. ``[]``: host candidates only (a LAN, a test)."""
    ice_transport_policy: Literal["all", "relay"] = "all"
    """The page's ``iceTransportPolicy``: ``relay`` sends media only through the TURN server."""
    output_rate_hz: Literal[16000, 24000] = 24000
    """Sample rate of the agent's audio to browsers, Hz (24000: Kokoro's own, no resampling)."""
    playback_lead_ms: int = Field(default=100, ge=20)
    """How far ahead of real time agent audio is sent over the WebSocket API, ms."""
    max_audio_message_bytes: int = Field(default=256 * 1024, ge=1024)
    """Largest binary audio message accepted on ``/ws/conversation`` (larger: an ``error``, skipped)."""


class WebhookSettings(SettingsGroup):
    """The settings' agent's webhook (database agents carry their own URL, secret and events)."""

    legacy_prefix: ClassVar[str] = "webhook_"

    url: str | None = None
    """Where ``call.completed`` is POSTed; unset disables webhooks."""
    secret: SecretStr = SecretStr("")
    """HMAC-SHA256 key signing webhooks to ``url`` (agents have their own); empty sends them unsigned."""
    events: list[str] = Field(default_factory=lambda: ["call.completed"])
    """Events sent to ``url`` (JSON list of ``call.started``, ``call.completed``)."""
    timeout_s: float = 5.0
    """Per delivery attempt, seconds."""
    attempts: int = 4
    """Delivery attempts with exponential backoff (settings-only gateway, in memory)."""


class OutboxSettings(SettingsGroup):
    """At-least-once webhook delivery from the database's outbox."""

    legacy_prefix: ClassVar[str] = "outbox_"

    max_attempts: int = 12
    """Webhook delivery attempts from the outbox before an event is marked failed."""
    backoff_base_s: float = 2.0
    """First retry delay, seconds; doubled after each failed attempt (with jitter)."""
    backoff_max_s: float = 600.0
    """Longest retry delay, seconds."""
    poll_interval_s: float = 1.0
    """How often the outbox dispatcher looks for due events (new ones are sent at once)."""


class ExtractionSettings(SettingsGroup):
    """The call's details filled in by the LLM after hang-up."""

    legacy_prefix: ClassVar[str] = "extraction_"

    enabled: bool = True
    """After each call the LLM fills the call's details (name, callback number, address, problem,
    urgency, time window, summary) into JSON, sent with ``call.completed``."""
    json_mode: Literal["json_object", "json_schema"] = "json_object"
    """How the schema is sent: ``json_object`` with ``schema`` (llama.cpp server) or OpenAI's
    ``json_schema`` (vLLM)."""
    timeout_s: float = 60.0
    """Per extraction request to the LLM, seconds."""
    max_tokens: int = 400
    """Length cap of the extraction JSON, tokens."""
    defer_s: float = 60.0
    """While calls are in progress an extraction waits up to this long, so it does not slow down
    live replies on a shared LLM (0: never wait)."""


class RecordingSettings(SettingsGroup):
    """Audio kept from calls."""

    legacy_prefix: ClassVar[str] = "recording_"
    legacy_names: ClassVar[dict[str, str]] = {"debug_audio_dir": "debug_audio_dir"}

    enabled: bool = True
    """Keep a WAV of each call (both sides mixed, 8 kHz) in ``<data_dir>/recordings``."""
    debug_audio_dir: str | None = None
    """If set, every caller utterance sent to STT is also written here as a WAV (for debugging)."""
