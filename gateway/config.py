"""Gateway settings (env prefix ``GATEWAY_``), read by pydantic-settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from gateway.conversation.interruptions import DEFAULT_BACKCHANNELS
from shared.config import DEFAULT_MODEL_ID, PROJECT_ROOT, ServiceSettings

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "placeholder", "secret", "xxx", "your_auth_token", "password"}
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "placeholder", "your_", "your-", "<your", "example")
"""Text no real secret contains (copied examples: ``your_auth_token``, ``changeme-please``…)."""
MIN_SECRET_CHARS = 16
"""Shortest admin key / webhook secret accepted in production (``openssl rand -hex 16`` gives 32)."""
MIN_DISTINCT_CHARS = 6
"""A production secret has at least this many different characters (refuses ``aaaaaaaaaaaaaaaa``)."""
_TWILIO_TOKEN = re.compile(r"[0-9a-fA-F]{32}")


def _weakness(value: str, min_chars: int = MIN_SECRET_CHARS) -> str | None:
    """Why ``value`` is not a production secret (``None``: it is acceptable).

    A length and variety floor, not a deny-list alone: ``a`` and ``aaaaaaaaaaaaaaaa`` are refused
    as well as ``changeme``. A random hex or base64 key of the minimum length passes.
    """
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        return "is empty or a placeholder"
    if len(value) < min_chars:
        return f"is {len(value)} characters long; at least {min_chars} are required"
    if len(set(value)) < MIN_DISTINCT_CHARS:
        return f"has fewer than {MIN_DISTINCT_CHARS} different characters"
    if any(word in value.lower() for word in PLACEHOLDER_WORDS):
        return "looks like a copied example value"
    return None


BUSINESS_FACTS = (
    "Business: Acme Plumbing, a family plumbing company in Springfield.\n"
    "Hours: Monday to Friday 8 am to 6 pm, Saturday 9 am to 1 pm; 24/7 emergency line for burst pipes "
    "and flooding.\n"
    "Service area: Springfield and towns within 20 miles.\n"
    "Prices: call-out fee 89 dollars, waived if the job goes ahead; leak repairs usually 150 to 300 dollars.\n"
    "Services: leaks, clogged drains, water heaters, toilets, sinks, burst pipes."
)


def default_system_prompt(facts: str = BUSINESS_FACTS) -> str:
    """The receptionist prompt: the business facts, the answer style, and three example exchanges.

    Small instruct models (the 0.5B CPU default) follow examples far better than abstract rules:
    with the examples, replies end in a booking question; without them they rarely do.
    """
    return (
        "You are Sam, the friendly phone receptionist of Acme Plumbing. You talk to callers on the phone.\n\n"
        f"{facts}\n\n"
        "How you answer: one or two short spoken sentences, then one question that helps book a plumber visit "
        "(the caller's name, address, or a good time). Never use lists or markdown. If you don't know something, "
        "say the plumber will confirm it.\n\n"
        "Example 1\nCaller: My bathroom drain is blocked.\n"
        "Sam: Sorry to hear that, we clear blocked drains every day. What is your address so we can send a plumber?"
        "\n\nExample 2\nCaller: How much do you charge?\n"
        "Sam: The call-out fee is 89 dollars, and it's waived if the job goes ahead. What problem are you having?"
        "\n\nExample 3\nCaller: Can someone come tomorrow morning?\n"
        "Sam: Yes, we can book a plumber for tomorrow morning. May I have your name and address?"
    )


class GatewaySettings(ServiceSettings):
    """Every gateway setting; each is an env var ``GATEWAY_<NAME>`` (see README)."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    port: int = 8080
    workers: int = Field(default=1, ge=1)
    """Gateway processes sharing the port (uvicorn workers: one listening socket, the kernel hands
    each new connection to one of them; a call's WebSocket stays in the process that accepted it,
    its state is in Redis and its stream token is an HMAC, so the webhook and the stream may land
    in different workers). More than one turns on Prometheus' multiprocess mode (``/metrics``
    sums every worker) and runs the migrations once before the workers start."""
    environment: str = "development"
    """``production`` refuses to start with a placeholder Twilio auth token."""
    public_url: str | None = None
    """Public base URL (``https://<pod>-8080.proxy.runpod.net``) for the TwiML stream URL and
    signature validation behind proxies; defaults to the request's own host."""
    twilio_auth_token: SecretStr = SecretStr("")
    """Validates ``X-Twilio-Signature`` when set; with the account SID, also authenticates REST calls."""
    twilio_account_sid: str = ""
    """Account SID for Twilio's REST API (hang-up, transfer); empty disables REST calls."""
    twilio_api_base_url: str = "https://api.twilio.com"
    """Base URL of Twilio's REST API (tests point it at a local fake)."""

    stt_url: str = "http://127.0.0.1:8001"
    """STT service base URL."""
    tts_url: str = "http://127.0.0.1:8002"
    """TTS service base URL."""
    llm_url: str = "http://127.0.0.1:8000/v1"
    """OpenAI-compatible base URL of the LLM (vLLM or the CPU stand-in), including ``/v1``."""
    llm_model: str = DEFAULT_MODEL_ID
    """Served model id."""
    llm_api_key: SecretStr = SecretStr("not-needed")
    """Bearer token for the LLM server, if it requires one."""
    llm_max_tokens: int = 80
    """Reply length cap, tokens."""
    llm_temperature: float = 0.3
    """Sampling temperature."""
    stt_timeout_s: float = 10.0
    """STT request timeout, seconds; a timeout becomes a spoken apology."""
    llm_timeout_s: float = 20.0
    """LLM request timeout, seconds."""
    tts_timeout_s: float = 15.0
    """TTS request timeout, seconds."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for per-call turn state."""
    webhook_url: str | None = None
    """Where ``call.completed`` is POSTed; unset disables webhooks."""
    webhook_timeout_s: float = 5.0
    """Per delivery attempt, seconds."""
    webhook_attempts: int = 4
    """Delivery attempts with exponential backoff."""

    voice: str = "af_heart"
    """Kokoro voice of the agent."""
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
    debug_audio_dir: str | None = None
    """If set, every caller utterance sent to STT is also written here as a WAV (for debugging)."""
    max_history_turns: int = 12
    """Messages of conversation history sent to the LLM."""

    vad_model_path: str | None = None
    """Silero VAD ONNX; defaults to the ``silero_vad_v6.onnx`` faster-whisper ships."""
    vad_batch_wait_ms: int = Field(default=10, ge=0, le=32)
    """How long a call's completed 32 ms VAD frame waits for other calls' frames, so that one Silero
    run scores them all (``gateway/conversation/vad_batch.py``); 0: each frame runs alone, at once.
    Adds at most this much to VAD, barge-in and endpointing decisions (docs/benchmarks.md)."""
    vad_max_batch: int = Field(default=64, ge=1)
    """A VAD batch this full runs without waiting (bounds one run's time on the event loop: ~4 ms at 64)."""
    turn_detection: Literal["smart_turn", "silence"] = "smart_turn"
    """``smart_turn``: after a short pause Smart Turn v3 decides if the caller is done (fast on a
    finished question, patient mid-sentence); ``silence``: only ``GATEWAY_ENDPOINT_SILENCE_MS``."""
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
    A failed remote check counts as "not done", so ``GATEWAY_SMART_TURN_MAX_SILENCE_MS`` ends the turn."""
    smart_turn_timeout_s: float = 0.5
    """With the ``stt`` backend, the longest one turn check may take (connect + answer), seconds."""
    barge_in_min_ms: int = 800
    """Voiced caller speech over the agent this long interrupts at once (clear + cancel); shorter speech
    is transcribed and interrupts only if it has enough words (see docs/turn-taking.md)."""
    barge_in_min_words: int = 3
    """Shorter speech over the agent interrupts only with this many words that are not backchannels."""
    backchannels: list[str] = Field(default_factory=lambda: list(DEFAULT_BACKCHANNELS))
    """Acknowledgements ("mm-hm", "yeah", "okay") that never interrupt the agent."""
    reprompt_after_s: float = 8.0
    """Caller silence after which the agent asks if they are still there."""
    hangup_after_s: float = 20.0
    """Caller silence after which the agent says goodbye and hangs up."""
    reprompt_text: str = "Are you still there?"
    """Spoken after ``GATEWAY_REPROMPT_AFTER_S`` of silence."""
    goodbye_text: str = "I haven't heard anything, so I'll hang up now. Please call back any time. Goodbye!"
    """Spoken before hanging up on a silent line."""
    trouble_reprompt_text: str = "Sorry, I'm having technical trouble. Could you say that again?"
    """Spoken instead of the re-prompt when the caller's last turn got no answer (an upstream failed)."""
    trouble_goodbye_text: str = (
        "Sorry, we're having technical trouble right now. Please call back in a few minutes. Goodbye!"
    )
    """Spoken instead of the goodbye when the caller's last turn got no answer (an upstream failed)."""
    vad_threshold: float = 0.5
    """Silero speech probability that counts as speech (silence below it minus 0.15)."""
    endpoint_silence_ms: int = 500
    """Silence after speech that ends the caller's turn (``GATEWAY_TURN_DETECTION=silence``)."""
    min_speech_ms: int = 250
    """Speech shorter than this is ignored (clicks, noise)."""
    pre_roll_ms: int = 200
    """Audio kept before detected speech start so the first syllable reaches STT."""
    playback_lead_ms: int = 100
    """How far ahead of real time outbound audio is sent (a small jitter buffer at Twilio)."""
    max_call_seconds: int = 900
    """Calls are closed after this long."""
    record_turns_ttl_s: int = 7 * 24 * 3600
    """How long a finished call stays in Redis, seconds."""
    redis_socket_timeout_s: float = 2.0
    """A Redis command slower than this fails (the call's writer retries; the call goes on), seconds."""
    redis_flush_timeout_s: float = 3.0
    """At hang-up, how long the call's pending Redis writes may take before the call is finished
    without them (the database row and the webhook are built from the call's own record), seconds."""
    task_close_timeout_s: float = 3.0
    """At hang-up, how long the call's tasks get to stop after being cancelled; one that ignores
    cancellation is abandoned (logged, ``gateway_abandoned_tasks_total``), seconds."""
    finish_timeout_s: float = 20.0
    """Longest time storing a finished call (database row, recording, webhook event) may take, seconds."""
    shutdown_timeout_s: float = 8.0
    """On SIGTERM, how long open calls get to finish before uvicorn closes them, seconds."""
    ws_max_message_bytes: int = 1 << 20
    """A WebSocket message larger than this closes the stream (1009) before it is buffered."""
    max_message_chars: int = 16384
    """A Media Streams message longer than this is skipped unparsed and counted (Twilio's are < 1 KiB
    but for ``start`` with its custom parameters)."""
    max_media_payload_bytes: int = 1600
    """A ``media`` payload larger than this (decoded μ-law bytes; 200 ms) is skipped and counted
    (Twilio sends 20 ms: 160 bytes)."""
    stream_token_ttl_s: int = 120
    """How long the stream token issued by the voice webhook stays valid, seconds (see
    ``gateway/telephony/signature.py``; checked when ``GATEWAY_TWILIO_AUTH_TOKEN`` is set)."""
    heartbeat_ttl_s: float = 10.0
    """A gateway whose Redis heartbeat is older than this is dead: its calls are finished as
    ``gateway-lost`` by the other gateways (or by it, when it restarts), seconds."""
    orphan_sweep_interval_s: float = 5.0
    """How often each gateway looks for dead gateways' calls, seconds."""

    data_dir: str = str(PROJECT_ROOT / "data")
    """Where the SQLite database and the call recordings (``recordings/<CallSid>.wav``) live."""
    database_enabled: bool = True
    """Agents, numbers, corrections, calls and the webhook outbox in a database (admin API,
    signed at-least-once webhooks, extraction); ``false``: the settings-only agent above."""
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("GATEWAY_DATABASE_URL", "DATABASE_URL", "database_url")
    )
    """SQLAlchemy URL (also read from plain ``DATABASE_URL``); default
    ``sqlite+aiosqlite:///<data_dir>/switchboard.db``. PostgreSQL: ``postgresql://user:pass@host/db`` (asyncpg)."""
    database_auto_migrate: bool = True
    """Run the Alembic migrations (``upgrade head``) when the gateway starts."""
    admin_api_key: SecretStr = SecretStr("")
    """Key for ``/api/*``, ``/v1/pipeline`` and the ``/admin`` page (``Authorization: Bearer <key>``
    or ``X-Admin-Key``); empty disables them. ``production`` refuses a placeholder."""
    unknown_number_policy: Literal["default", "reject"] = "default"
    """A call to a number no agent owns: ``default`` (the default agent, else the settings agent)
    or ``reject`` (speak ``GATEWAY_REJECT_MESSAGE`` and hang up)."""
    reject_message: str = "Sorry, this number is not in service. Please check the number and call again. Goodbye."
    """Spoken to callers of unknown numbers when the policy is ``reject``."""
    recording_enabled: bool = True
    """Keep a WAV of each call (both sides mixed, 8 kHz) in ``<data_dir>/recordings``."""
    extraction_enabled: bool = True
    """After each call the LLM fills the call's details (name, callback number, address, problem,
    urgency, time window, summary) into JSON, sent with ``call.completed``."""
    extraction_json_mode: Literal["json_object", "json_schema"] = "json_object"
    """How the schema is sent: ``json_object`` with ``schema`` (llama.cpp server) or OpenAI's
    ``json_schema`` (vLLM)."""
    extraction_timeout_s: float = 60.0
    """Per extraction request to the LLM, seconds."""
    extraction_max_tokens: int = 400
    """Length cap of the extraction JSON, tokens."""
    extraction_defer_s: float = 60.0
    """While calls are in progress an extraction waits up to this long, so it does not slow down
    live replies on a shared LLM (0: never wait)."""
    webhook_secret: SecretStr = SecretStr("")
    """HMAC-SHA256 key signing webhooks to ``GATEWAY_WEBHOOK_URL`` (agents have their own);
    empty sends them unsigned."""
    webhook_events: list[str] = Field(default_factory=lambda: ["call.completed"])
    """Events sent to ``GATEWAY_WEBHOOK_URL`` (JSON list of ``call.started``, ``call.completed``)."""
    outbox_max_attempts: int = 12
    """Webhook delivery attempts from the outbox before an event is marked failed."""
    outbox_backoff_base_s: float = 2.0
    """First retry delay, seconds; doubled after each failed attempt (with jitter)."""
    outbox_backoff_max_s: float = 600.0
    """Longest retry delay, seconds."""
    outbox_poll_interval_s: float = 1.0
    """How often the outbox dispatcher looks for due events (new ones are sent at once)."""

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> GatewaySettings:
        """In ``production``, refuse secrets an attacker could guess; development keeps its empty defaults.

        * ``GATEWAY_TWILIO_AUTH_TOKEN``: required, exactly 32 hex characters (the form of every
          Twilio auth token), so ``your_auth_token`` or a shortened token cannot slip through and
          turn signature validation into a check against a known key.
        * ``GATEWAY_ADMIN_API_KEY``: required with the database (the admin API exists then), and
          whenever set at least 16 characters, 6 of them different, no example text.
        * ``GATEWAY_WEBHOOK_SECRET``: required when ``GATEWAY_WEBHOOK_URL`` is set with the database
          on (the outbox signs with it; unsigned events would let anyone forge calls to the
          receiver); whenever set, the same floor as the admin key. Without the database the
          settings-only sender does not sign, so the secret is not demanded there.

        Raises:
            ValueError: naming the environment variable and what is wrong with it.
        """
        if self.environment.strip().lower() == "production":
            token = self.twilio_auth_token.get_secret_value().strip()
            if not _TWILIO_TOKEN.fullmatch(token) or len(set(token.lower())) < MIN_DISTINCT_CHARS:
                raise ValueError(
                    "GATEWAY_TWILIO_AUTH_TOKEN must be the real Twilio auth token in production "
                    "(32 hex characters, from the Twilio console)"
                )
            secrets = {
                "GATEWAY_ADMIN_API_KEY": (self.admin_api_key.get_secret_value(), self.database_enabled),
                "GATEWAY_WEBHOOK_SECRET": (
                    self.webhook_secret.get_secret_value(),
                    self.database_enabled and bool(self.webhook_url),
                ),
            }
            for env_var, (value, required) in secrets.items():
                if not value and not required:
                    continue
                reason = _weakness(value)
                if reason is not None:
                    raise ValueError(
                        f"{env_var} {reason} in production: use a random value of at least "
                        f"{MIN_SECRET_CHARS} characters (e.g. `openssl rand -hex 32`)"
                    )
        if self.vad_model_path is not None and not Path(self.vad_model_path).is_file():
            raise ValueError(f"GATEWAY_VAD_MODEL_PATH {self.vad_model_path!r} does not exist")
        return self

    @property
    def resolved_database_url(self) -> str:
        """``database_url`` or the SQLite file in ``data_dir`` (async driver names filled in)."""
        from gateway.db.engine import normalize_url

        return normalize_url(self.database_url or f"sqlite:///{Path(self.data_dir) / 'switchboard.db'}")
