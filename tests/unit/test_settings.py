"""GatewaySettings' groups and names: nested ``GATEWAY_<GROUP>__<FIELD>``, the flat aliases, precedence.

Every test runs in an empty directory with no ``GATEWAY_*`` or ``DATABASE_URL`` in the environment,
so a developer's ``.env`` or shell cannot change the result.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from gateway.config import GROUPS, GatewaySettings, env_names, fold_flat, legacy_fields

TOKEN = "3f9a1c7e5b2d8f4a6c0e9b1d7a3f5c8e"  # 32 hex characters, the form of a Twilio auth token
KEY = "q7Vd2-Lm9xTz4Kp8Rw1s"

FLAT_BEFORE_GROUPS = """
twilio_auth_token twilio_account_sid twilio_api_base_url stt_url tts_url llm_url llm_model llm_api_key
llm_max_tokens llm_temperature stt_timeout_s llm_timeout_s tts_timeout_s redis_url webhook_url
webhook_timeout_s webhook_attempts voice greeting system_prompt corrections tools transfer_number
end_call_goodbye debug_audio_dir max_history_turns vad_model_path turn_detection smart_turn_model_path
smart_turn_pause_ms smart_turn_threshold smart_turn_max_silence_ms barge_in_min_ms barge_in_min_words
backchannels reprompt_after_s hangup_after_s reprompt_text goodbye_text trouble_reprompt_text
trouble_goodbye_text vad_threshold endpoint_silence_ms min_speech_ms pre_roll_ms playback_lead_ms
max_call_seconds record_turns_ttl_s redis_socket_timeout_s redis_flush_timeout_s task_close_timeout_s
finish_timeout_s ws_max_message_bytes max_message_chars max_media_payload_bytes stream_token_ttl_s
heartbeat_ttl_s orphan_sweep_interval_s database_enabled database_url database_auto_migrate
admin_api_key unknown_number_policy reject_message recording_enabled extraction_enabled
extraction_json_mode extraction_timeout_s extraction_max_tokens extraction_defer_s webhook_secret
webhook_events outbox_max_attempts outbox_backoff_base_s outbox_backoff_max_s outbox_poll_interval_s
shutdown_timeout_s
""".split()
"""Every field of the flat GatewaySettings, besides host/port/log_level/environment/public_url/data_dir."""
TOP_LEVEL = {"host", "port", "log_level", "environment", "public_url", "data_dir", "shutdown_timeout_s"}
TOP_LEVEL |= {"ws_max_message_bytes", "workers", "blas_threads"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GATEWAY_* / DATABASE_URL from the shell; the working directory has no .env."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_") or name.upper() == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def dotenv(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "test.env"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- the map of names --------------------------------------------------------------------------


def test_every_flat_name_of_before_still_has_a_home() -> None:
    flat = legacy_fields()
    for name in FLAT_BEFORE_GROUPS:
        assert name in flat or name in TOP_LEVEL, f"{name} lost its flat alias"
    for name, (group, field) in flat.items():
        assert field in GROUPS[group].model_fields, f"{name} → {group}.{field} is not a field"
        assert name not in GatewaySettings.model_fields, f"{name} is both a top-level field and a flat alias"
    assert len(flat) == sum(len(m.model_fields) for m in GROUPS.values()), "two group fields share a flat name"
    assert set(GatewaySettings.model_fields) == TOP_LEVEL | set(GROUPS)


def test_env_names_lists_nested_flat_and_global_names() -> None:
    names = env_names()
    assert {"GATEWAY_LISTENING__VAD_THRESHOLD", "GATEWAY_VAD_THRESHOLD", "GATEWAY_LISTENING"} <= names
    assert {"GATEWAY_TWILIO__AUTH_TOKEN", "GATEWAY_TWILIO_AUTH_TOKEN", "GATEWAY_PORT", "DATABASE_URL"} <= names
    assert "GATEWAY_TWILIO__TWILIO_AUTH_TOKEN" not in names and "GATEWAY_NO_SUCH" not in names


# ---- environment -------------------------------------------------------------------------------


def test_nested_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LISTENING__VAD_THRESHOLD", "0.65")
    monkeypatch.setenv("GATEWAY_TWILIO__AUTH_TOKEN", "tok")
    monkeypatch.setenv("GATEWAY_AGENT__TOOLS", '["end_call"]')
    monkeypatch.setenv("GATEWAY_LLM", '{"model": "big", "max_tokens": 120}')
    s = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert s.listening.vad_threshold == 0.65 and s.twilio.auth_token.get_secret_value() == "tok"
    assert s.agent.tools == ["end_call"] and (s.llm.model, s.llm.max_tokens) == ("big", 120)
    assert s.llm.temperature == 0.3  # the rest of the group keeps its defaults


def test_flat_legacy_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_VAD_THRESHOLD", "0.4")
    monkeypatch.setenv("GATEWAY_STT_URL", "http://stt:8001")
    monkeypatch.setenv("GATEWAY_TWILIO_AUTH_TOKEN", "tok")
    monkeypatch.setenv("GATEWAY_CORRECTIONS", '{"acne": "Acme"}')
    monkeypatch.setenv("GATEWAY_WEBHOOK_EVENTS", '["call.started"]')
    monkeypatch.setenv("GATEWAY_RECORD_TURNS_TTL_S", "60")
    monkeypatch.setenv("GATEWAY_DEBUG_AUDIO_DIR", "/tmp/x")
    monkeypatch.setenv("gateway_max_call_seconds", "30")  # case-insensitive, as before
    s = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert s.listening.vad_threshold == 0.4 and s.stt.url == "http://stt:8001" and s.stt.timeout_s == 10.0
    assert s.twilio.auth_token.get_secret_value() == "tok" and s.agent.corrections == {"acne": "Acme"}
    assert s.webhook.events == ["call.started"] and s.redis.record_turns_ttl_s == 60
    assert s.recording.debug_audio_dir == "/tmp/x" and s.call.max_call_seconds == 30


def test_database_url_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///plain.db")
    assert GatewaySettings(_env_file=None).database.url == "sqlite:///plain.db"  # type: ignore[call-arg]
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "sqlite:///flat.db")
    assert GatewaySettings(_env_file=None).database.url == "sqlite:///flat.db"  # type: ignore[call-arg]
    monkeypatch.setenv("GATEWAY_DATABASE__URL", "sqlite:///nested.db")
    s = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert s.resolved_database_url == "sqlite+aiosqlite:///nested.db"


def test_nested_beats_flat_and_both_merge_within_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_VAD_THRESHOLD", "0.4")
    monkeypatch.setenv("GATEWAY_LISTENING__VAD_THRESHOLD", "0.7")
    monkeypatch.setenv("GATEWAY_MIN_SPEECH_MS", "120")
    s = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert s.listening.vad_threshold == 0.7 and s.listening.min_speech_ms == 120


def test_unknown_gateway_variables_are_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GATEWAY_NO_SUCH_THING", "GATEWAY_LISTENING__NO_SUCH_FIELD", "GATEWAY_NOGROUP__X"):
        monkeypatch.setenv(name, "1")
    env_file = dotenv(tmp_path, "GATEWAY_ALSO_UNKNOWN=1", "GATEWAY_AGENT__NOPE=2", "LLM_MODEL=for-the-llm-service")
    s = GatewaySettings(_env_file=env_file)  # type: ignore[call-arg]
    assert s.listening == GatewaySettings(_env_file=None).listening  # type: ignore[call-arg]
    assert s.llm.model != "for-the-llm-service"  # the LLM service's own LLM_MODEL is not the gateway's


def test_a_flat_list_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TOOLS", "end_call")
    with pytest.raises(SettingsError, match="GATEWAY_TOOLS"):
        GatewaySettings(_env_file=None)  # type: ignore[call-arg]


# ---- .env --------------------------------------------------------------------------------------


def test_dotenv_reads_both_names(tmp_path: Path) -> None:
    env_file = dotenv(
        tmp_path,
        "GATEWAY_LISTENING__PRE_ROLL_MS=150",
        "GATEWAY_BARGE_IN_MIN_MS=600",
        "GATEWAY_TWILIO_ACCOUNT_SID=AC123",
        'GATEWAY_BACKCHANNELS=["mm"]',
        "DATABASE_URL=sqlite:///dot.db",
    )
    s = GatewaySettings(_env_file=env_file)  # type: ignore[call-arg]
    assert (s.listening.pre_roll_ms, s.listening.barge_in_min_ms, s.listening.backchannels) == (150, 600, ["mm"])
    assert s.twilio.account_sid == "AC123" and s.database.url == "sqlite:///dot.db"


def test_default_env_file_is_dot_env_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GATEWAY_GREETING=Hi from .env\nGATEWAY_CALL__HANGUP_AFTER_S=9\n")
    s = GatewaySettings()
    assert s.agent.greeting == "Hi from .env" and s.call.hangup_after_s == 9


def test_precedence_init_then_env_then_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """init kwargs > environment > .env > defaults, whichever form each uses; nested > flat within one."""
    env_file = dotenv(
        tmp_path,
        "GATEWAY_LISTENING__VAD_THRESHOLD=0.1",  # .env nested
        "GATEWAY_MIN_SPEECH_MS=111",  # .env flat
        "GATEWAY_LISTENING__MIN_SPEECH_MS=112",  # .env nested beats .env flat
        "GATEWAY_PRE_ROLL_MS=1",  # .env flat, beaten by the environment's flat below
        "GATEWAY_SMART_TURN_PAUSE_MS=2",  # .env flat, beaten by the constructor
    )
    monkeypatch.setenv("GATEWAY_VAD_THRESHOLD", "0.2")  # env flat beats .env nested
    monkeypatch.setenv("GATEWAY_PRE_ROLL_MS", "3")
    monkeypatch.setenv("GATEWAY_LISTENING__SMART_TURN_PAUSE_MS", "4")
    s = GatewaySettings(_env_file=env_file, smart_turn_pause_ms=5)  # type: ignore[call-arg]
    listening = s.listening
    assert (listening.vad_threshold, listening.min_speech_ms, listening.pre_roll_ms) == (0.2, 112, 3)
    assert listening.smart_turn_pause_ms == 5 and listening.endpoint_silence_ms == 500


# ---- constructor -------------------------------------------------------------------------------


def test_flat_and_nested_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LISTENING__VAD_THRESHOLD", "0.9")
    s = GatewaySettings(vad_threshold=0.3, twilio_auth_token="t", webhook_url=None, agent={"voice": "am_adam"})
    assert s.listening.vad_threshold == 0.3 and s.twilio.auth_token.get_secret_value() == "t"
    assert s.webhook.url is None and s.agent.voice == "am_adam"
    both = GatewaySettings(voice="af_bella", agent={"voice": "am_adam"}, greeting="Hello")
    assert (both.agent.voice, both.agent.greeting) == ("am_adam", "Hello")  # nested beats flat, both merge


def test_fold_flat() -> None:
    assert fold_flat({"vad_threshold": 0.3, "port": 1, "listening": {"pre_roll_ms": 9}}) == {
        "port": 1,
        "listening": {"vad_threshold": 0.3, "pre_roll_ms": 9},
    }
    assert fold_flat({"unknown": 1}) == {"unknown": 1}


# ---- production --------------------------------------------------------------------------------


def test_production_refuses_placeholders_by_either_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ENVIRONMENT", "production")
    monkeypatch.setenv("GATEWAY_TWILIO_AUTH_TOKEN", "your_auth_token")
    with pytest.raises(ValidationError, match=r"GATEWAY_TWILIO__AUTH_TOKEN \(or GATEWAY_TWILIO_AUTH_TOKEN\)"):
        GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("GATEWAY_TWILIO__AUTH_TOKEN", TOKEN)  # nested wins over the flat placeholder
    monkeypatch.setenv("GATEWAY_ADMIN__API_KEY", "changeme")
    with pytest.raises(ValidationError, match="GATEWAY_ADMIN_API_KEY"):
        GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("GATEWAY_ADMIN_API_KEY", KEY)  # a flat real key does not beat the nested placeholder
    with pytest.raises(ValidationError, match="GATEWAY_ADMIN__API_KEY"):
        GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.delenv("GATEWAY_ADMIN__API_KEY")
    s = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert s.environment == "production" and s.admin.api_key.get_secret_value() == KEY


def test_missing_vad_model_is_named_by_both_names(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_LISTENING__VAD_MODEL_PATH"):
        GatewaySettings(_env_file=None, vad_model_path=str(tmp_path / "nope.onnx"))  # type: ignore[call-arg]
