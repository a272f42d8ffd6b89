"""Gateway settings, read by pydantic-settings: a few global fields and one group per responsibility.

The groups and why they are cut so are in :mod:`gateway.config_groups`. Every setting has two
environment names, both read from the environment and from ``.env``:

* nested ``GATEWAY_<GROUP>__<FIELD>`` (``GATEWAY_LISTENING__VAD_THRESHOLD``; the delimiter is
  ``__``), or a whole group as JSON (``GATEWAY_LISTENING='{"vad_threshold": 0.6}'``);
* the flat name it had before the groups (``GATEWAY_VAD_THRESHOLD``, ``GATEWAY_TWILIO_AUTH_TOKEN``;
  ``DATABASE_URL`` too), read by :class:`LegacyEnvSource` through :func:`legacy_fields`.

Precedence, highest first: constructor arguments > environment > ``.env`` > defaults; within the
environment (and within ``.env``) a nested name beats its flat alias. Constructor arguments may be
nested (``GatewaySettings(listening={"vad_threshold": 0.6})``) or flat
(``GatewaySettings(vad_threshold=0.6)``, folded into the group by :func:`fold_flat`; the nested
form wins if both name one field). Code reads the nested attribute: ``settings.listening.vad_threshold``.

Sources: pydantic-settings' "Nested models" (``env_nested_delimiter``) and "Customise settings
sources" (``settings_customise_sources``); full-stack-fastapi-template's ``core/config.py`` for the
refusal of placeholder secrets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from gateway.config_groups import (
    AdminSettings,
    AgentSettings,
    BrowserSettings,
    CallSettings,
    DatabaseSettings,
    ExtractionSettings,
    FleetSettings,
    ListeningSettings,
    LlmSettings,
    OutboxSettings,
    RecordingSettings,
    RedisSettings,
    SettingsGroup,
    SttSettings,
    TtsSettings,
    TwilioSettings,
    WebhookSettings,
)
from shared.config import PROJECT_ROOT, ServiceSettings

ENV_PREFIX = "GATEWAY_"
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


class GatewaySettings(ServiceSettings):
    """Every gateway setting: the global ones here, the rest in groups (see the module docstring and README)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", env_file=".env", extra="ignore")

    port: int = 8080
    workers: int = Field(default=1, ge=1)
    """Gateway processes sharing the port (uvicorn workers: one listening socket, the kernel hands
    each new connection to one of them; a call's WebSocket stays in the process that accepted it,
    its state is in Redis and its stream token is an HMAC, so the webhook and the stream may land
    in different workers). More than one turns on Prometheus' multiprocess mode (``/metrics``
    sums every worker) and runs the migrations once before the workers start."""
    blas_threads: int = Field(default=1, ge=1)
    """numpy's BLAS (OpenBLAS) threads in each gateway process, set at start (``shared/threads.py``):
    OpenBLAS's one-per-core threads spin after the Smart Turn features' matrix products (a check cost
    77 ms of CPU with 2 of them, 43 ms with 1, on the 2-core build box)."""
    environment: str = "development"
    """``production`` refuses to start with a placeholder Twilio auth token, admin key or webhook secret."""
    public_url: str | None = None
    """Public base URL (``https://<pod>-8080.proxy.runpod.net``) for the TwiML stream URL and
    signature validation behind proxies; defaults to the request's own host."""
    data_dir: str = str(PROJECT_ROOT / "data")
    """Where the SQLite database and the call recordings (``recordings/<CallSid>.wav``) live."""
    shutdown_timeout_s: float = 8.0
    """On SIGTERM, how long open calls get to finish before uvicorn closes them, seconds."""
    ws_max_message_bytes: int = 1 << 20
    """A WebSocket message larger than this closes the stream (1009) before it is buffered."""

    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    stt: SttSettings = Field(default_factory=SttSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    listening: ListeningSettings = Field(default_factory=ListeningSettings)
    call: CallSettings = Field(default_factory=CallSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    browser: BrowserSettings = Field(default_factory=BrowserSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """init (flat kwargs folded) > env nested > env flat > ``.env`` nested > ``.env`` flat > secrets."""
        return (
            FlatInitSource(init_settings),
            env_settings,
            LegacyEnvSource(settings_cls, env_settings),
            dotenv_settings,
            LegacyEnvSource(settings_cls, dotenv_settings),
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> GatewaySettings:
        """In ``production``, refuse secrets an attacker could guess; development keeps its empty defaults.

        * ``twilio.auth_token``: required, exactly 32 hex characters (the form of every Twilio auth
          token), so ``your_auth_token`` or a shortened token cannot slip through and turn
          signature validation into a check against a known key.
        * ``admin.api_key``: required with the database (the admin API exists then), and whenever
          set at least 16 characters, 6 of them different, no example text.
        * ``webhook.secret``: required when ``webhook.url`` is set with the database on (the
          outbox signs with it; unsigned events would let anyone forge calls to the receiver);
          whenever set, the same floor as the admin key. Without the database the settings-only
          sender does not sign, so the secret is not demanded there.

        Raises:
            ValueError: naming both environment variables (nested and flat) and what is wrong.
        """
        if self.environment.strip().lower() == "production":
            token = self.twilio.auth_token.get_secret_value().strip()
            if not _TWILIO_TOKEN.fullmatch(token) or len(set(token.lower())) < MIN_DISTINCT_CHARS:
                raise ValueError(
                    f"{env_label('twilio', 'auth_token')} must be the real Twilio auth token in production "
                    "(32 hex characters, from the Twilio console)"
                )
            secrets = {
                env_label("admin", "api_key"): (self.admin.api_key.get_secret_value(), self.database.enabled),
                env_label("webhook", "secret"): (
                    self.webhook.secret.get_secret_value(),
                    self.database.enabled and bool(self.webhook.url),
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
        vad_path = self.listening.vad_model_path
        if vad_path is not None and not Path(vad_path).is_file():
            raise ValueError(f"{env_label('listening', 'vad_model_path')} {vad_path!r} does not exist")
        return self

    @property
    def resolved_database_url(self) -> str:
        """``database.url`` or the SQLite file in ``data_dir`` (async driver names filled in)."""
        from gateway.db.engine import normalize_url

        return normalize_url(self.database.url or f"sqlite:///{Path(self.data_dir) / 'switchboard.db'}")


GROUPS: dict[str, type[SettingsGroup]] = {
    name: field.annotation
    for name, field in GatewaySettings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, SettingsGroup)
}
"""Group name → its model, in declaration order."""

EXTRA_LEGACY_ENV: dict[str, tuple[str, str]] = {"DATABASE_URL": ("database", "url")}
"""Flat names outside the ``GATEWAY_`` prefix (read after ``GATEWAY_DATABASE_URL``)."""


@cache
def legacy_fields() -> dict[str, tuple[str, str]]:
    """Every flat field name of the time before the groups → (group, field): ``vad_threshold`` →
    ``("listening", "vad_threshold")``, ``twilio_auth_token`` → ``("twilio", "auth_token")``.

    Built from each group's ``legacy_prefix`` and ``legacy_names`` (:mod:`gateway.config_groups`).
    """
    out: dict[str, tuple[str, str]] = {}
    for group, model in GROUPS.items():
        for field in model.model_fields:
            out[model.legacy_names.get(field, model.legacy_prefix + field)] = (group, field)
    return out


def env_label(group: str, field: str) -> str:
    """``GATEWAY_ADMIN__API_KEY (or GATEWAY_ADMIN_API_KEY)``: both names, for error messages."""
    flat = next(name for name, path in legacy_fields().items() if path == (group, field))
    return f"{ENV_PREFIX}{group.upper()}__{field.upper()} (or {ENV_PREFIX}{flat.upper()})"


def env_names() -> set[str]:
    """Every environment variable the gateway reads (upper case): global, nested, flat and extra."""
    names = {f"{ENV_PREFIX}{name}".upper() for name, f in GatewaySettings.model_fields.items() if name not in GROUPS}
    for group, model in GROUPS.items():
        names.add(f"{ENV_PREFIX}{group}".upper())
        names |= {f"{ENV_PREFIX}{group}__{field}".upper() for field in model.model_fields}
    names |= {f"{ENV_PREFIX}{flat}".upper() for flat in legacy_fields()}
    return names | set(EXTRA_LEGACY_ENV)


def fold_flat(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat keys (``vad_threshold``) moved into their groups (``{"listening": {"vad_threshold": …}}``).

    A group given as a dict keeps its own keys over folded ones (nested beats flat); a group given
    as a model instance is kept whole. Other keys pass unchanged.
    """
    flat = legacy_fields()
    out: dict[str, Any] = {}
    folded: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key in flat and key not in GROUPS:
            group, field = flat[key]
            folded.setdefault(group, {})[field] = value
        else:
            out[key] = value
    for group, fields in folded.items():
        given = out.get(group)
        if given is None:
            out[group] = fields
        elif isinstance(given, Mapping):
            out[group] = {**fields, **given}
    return out


class FlatInitSource(PydanticBaseSettingsSource):
    """The constructor arguments with flat keys folded into their groups (:func:`fold_flat`)."""

    def __init__(self, init_settings: PydanticBaseSettingsSource) -> None:
        super().__init__(init_settings.settings_cls)
        self.init_settings = init_settings

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` returns the whole mapping."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return fold_flat(self.init_settings())


class LegacyEnvSource(PydanticBaseSettingsSource):
    """The flat environment names (``GATEWAY_VAD_THRESHOLD``, ``DATABASE_URL``) as nested values.

    Reads the variables ``source`` loaded (the environment's, or ``.env``'s; none when
    ``_env_file=None``), so it sees exactly what that source sees; placed right after it, its
    nested names win over these. Lists and maps are JSON, as for the nested names.

    Raises:
        SettingsError: a list or map value that is not valid JSON.
    """

    def __init__(self, settings_cls: type[BaseSettings], source: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.env_vars: Mapping[str, str | None] = source.env_vars if isinstance(source, EnvSettingsSource) else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` returns the whole mapping."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        names = {f"{ENV_PREFIX}{flat}": path for flat, path in legacy_fields().items()} | EXTRA_LEGACY_ENV
        out: dict[str, dict[str, Any]] = {}
        for env_name, (group, field) in names.items():
            value = self.env_vars.get(env_name.lower())
            if value is None or field in out.get(group, {}):
                continue
            info = GROUPS[group].model_fields[field]
            if self.field_is_complex(info):
                try:
                    value = json.loads(value)
                except ValueError as exc:
                    raise SettingsError(f"error parsing value for {env_name.upper()} (JSON expected)") from exc
            out.setdefault(group, {})[field] = value
        return out
