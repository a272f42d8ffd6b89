"""Admin REST API on SQLite and PostgreSQL: auth, CRUD, validation, calls with transcript/extraction/
webhooks/recording, OpenAPI. The app is the real gateway app (lifespan migrates the database)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from admin_support import ADMIN_KEY, AGENT, AUTH, TURNS, gateway_settings, seed_call
from dbtest_support import free_port
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.db.engine import Database
from gateway.db.repos import CallRepo, NumberRepo


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(gateway_settings(db_url, tmp_path))) as c:
        yield c


@pytest.fixture(scope="module")
def sqlite_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app on SQLite for the validation-only tests (no database round trip differs)."""
    data = tmp_path_factory.mktemp("validation")
    with TestClient(create_app(gateway_settings(f"sqlite:///{data / 'v.db'}", data))) as c:
        yield c


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every admin API operation, from the OpenAPI document."""
    paths = client.get("/openapi.json").json()["paths"]
    return [(m.upper(), p) for p, ops in paths.items() if p.startswith("/api/") for m in ops]


def test_every_admin_route_needs_the_key(client: TestClient) -> None:
    routes = api_routes(client)
    assert len(routes) >= 20
    for method, path in routes:
        url = path.replace("{agent_id}", "1").replace("{number_id}", "1").replace("{rule_id}", "1")
        url = url.replace("{call_sid}", "CA1").replace("{event_id}", "1")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Admin-Key": "wrong"}, {"Authorization": "Basic x"}):
            resp = client.request(method, url, headers=headers)
            assert resp.status_code == 401, (method, url, headers, resp.status_code)
            assert resp.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/api/agents", headers=AUTH).status_code == 200
    assert client.get("/api/agents", headers={"X-Admin-Key": ADMIN_KEY}).status_code == 200
    pipeline = client.post("/v1/pipeline")  # OpenAI-shaped, like the STT/TTS services
    assert pipeline.status_code == 401 and pipeline.json()["error"]["code"] == "invalid_api_key"


def test_admin_api_is_off_without_a_configured_key(db_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(gateway_settings(db_url, tmp_path, admin_api_key=""))) as c:
        resp = c.get("/api/agents", headers={"Authorization": "Bearer "})
        assert resp.status_code == 401 and "GATEWAY_ADMIN_API_KEY" in resp.json()["detail"]


def test_production_refuses_a_placeholder_admin_key() -> None:
    token = "3f9a1c7e5b2d8f4a6c0e9b1d7a3f5c8e"  # the form of a Twilio auth token (more in tests/unit/test_security.py)
    with pytest.raises(ValueError, match="ADMIN_API_KEY"):
        GatewaySettings(environment="production", twilio_auth_token=token, admin_api_key="changeme")
    with pytest.raises(ValueError, match="ADMIN_API_KEY"):
        GatewaySettings(environment="production", twilio_auth_token=token, admin_api_key="k" * 24)
    GatewaySettings(environment="production", twilio_auth_token=token, admin_api_key="q7Vd2-Lm9xTz4Kp8Rw1s")


def test_agents_crud(client: TestClient) -> None:
    created = client.post("/api/agents", json=AGENT, headers=AUTH)
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["webhook_secret_set"] is True and "webhook_secret" not in agent
    assert agent["webhook_events"] == ["call.started", "call.completed"] and agent["facts"] == AGENT["facts"]
    aid = agent["id"]
    assert client.get(f"/api/agents/{aid}", headers=AUTH).json()["name"] == "Acme Plumbing"
    taken = client.post("/api/agents", json=AGENT, headers=AUTH)
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    bolt = client.post("/api/agents", json={**AGENT, "name": "Bolt"}, headers=AUTH).json()
    clash = client.patch(f"/api/agents/{bolt['id']}", json={"name": "Acme Plumbing", "greeting": "Hi"}, headers=AUTH)
    assert clash.status_code == 409  # and the whole change is rolled back:
    assert client.get(f"/api/agents/{bolt['id']}", headers=AUTH).json()["greeting"] == AGENT["greeting"]
    assert client.delete(f"/api/agents/{bolt['id']}", headers=AUTH).status_code == 204
    assert client.get("/api/agents/999999", headers=AUTH).json()["detail"] == "no agent 999999"
    patched = client.patch(f"/api/agents/{aid}", json={"greeting": "Hello!", "transfer_number": None}, headers=AUTH)
    assert patched.status_code == 200 and patched.json()["greeting"] == "Hello!"
    assert patched.json()["transfer_number"] is None and patched.json()["voice"] == "am_michael"
    assert agent["language"] == "en"  # the default
    spanish = client.patch(f"/api/agents/{aid}", json={"language": "es"}, headers=AUTH)
    assert spanish.status_code == 200 and spanish.json()["language"] == "es"
    assert client.patch(f"/api/agents/{aid}", json={"language": None}, headers=AUTH).status_code == 422
    other = client.post("/api/agents", json={**AGENT, "name": "Bolt", "is_default": True}, headers=AUTH).json()
    client.patch(f"/api/agents/{aid}", json={"is_default": True}, headers=AUTH)
    defaults = [a["name"] for a in client.get("/api/agents", headers=AUTH).json() if a["is_default"]]
    assert defaults == ["Acme Plumbing"]  # only one default agent
    assert client.delete(f"/api/agents/{other['id']}", headers=AUTH).status_code == 204
    assert client.get(f"/api/agents/{other['id']}", headers=AUTH).status_code == 404
    assert client.delete(f"/api/agents/{other['id']}", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {**AGENT, "transfer_number": "555-0100"},
        {**AGENT, "voice": "Heart Voice"},
        {**AGENT, "webhook_url": "not a url"},
        {**AGENT, "webhook_secret": "short"},
        {**AGENT, "webhook_events": ["call.exploded"]},
        {**AGENT, "facts": {"bad key!": "x"}},
        {**AGENT, "unexpected": 1},
        {**AGENT, "name": "   "},
        {**AGENT, "language": "fr"},
    ],
)
def test_agent_validation_errors_are_422(sqlite_client: TestClient, body: dict[str, Any]) -> None:
    resp = sqlite_client.post("/api/agents", json=body, headers=AUTH)
    assert resp.status_code == 422, resp.text
    assert isinstance(resp.json()["detail"], list) and resp.json()["detail"][0]["loc"][0] == "body"


def test_numbers_crud_and_validation(client: TestClient) -> None:
    aid = client.post("/api/agents", json=AGENT, headers=AUTH).json()["id"]
    made = client.post("/api/numbers", json={"number": "+15550100002", "agent_id": aid, "label": "main"}, headers=AUTH)
    assert made.status_code == 201, made.text
    nid = made.json()["id"]
    duplicate = {"number": "+15550100002", "agent_id": aid}
    assert client.post("/api/numbers", json=duplicate, headers=AUTH).status_code == 409
    bad_numbers = [
        {"number": "5550100002", "agent_id": aid},
        {"number": "+0123", "agent_id": aid},
        {"number": "+15550100003", "agent_id": 999},
        {"number": "+15550100003"},
    ]
    for bad in bad_numbers:
        assert client.post("/api/numbers", json=bad, headers=AUTH).status_code == 422, bad
    no_agent = client.post("/api/numbers", json={"number": "+15550100003", "agent_id": 999}, headers=AUTH).json()
    assert no_agent["detail"][0]["loc"] == ["body", "agent_id"] and "no agent 999" in no_agent["detail"][0]["msg"]
    relabelled = client.patch(f"/api/numbers/{nid}", json={"label": "front desk"}, headers=AUTH)
    assert relabelled.json()["label"] == "front desk"
    assert client.patch(f"/api/numbers/{nid}", json={"agent_id": None}, headers=AUTH).status_code == 422
    assert [n["number"] for n in client.get(f"/api/numbers?agent_id={aid}", headers=AUTH).json()] == ["+15550100002"]
    assert client.get(f"/api/agents/{aid}", headers=AUTH).json()["numbers"] == ["+15550100002"]
    assert client.delete(f"/api/numbers/{nid}", headers=AUTH).status_code == 204
    assert client.get(f"/api/numbers/{nid}", headers=AUTH).status_code == 404


def test_corrections_crud_validation_and_per_agent_test(client: TestClient) -> None:
    aid = client.post("/api/agents", json=AGENT, headers=AUTH).json()["id"]
    glob = client.post("/api/corrections", json={"pattern": "plumming", "replacement": "plumbing"}, headers=AUTH)
    assert glob.status_code == 201 and glob.json()["agent_id"] is None
    rule = {"pattern": r"acne( plumbing)?", "replacement": "Acme Plumbing", "is_regex": True, "agent_id": aid}
    own = client.post("/api/corrections", json=rule, headers=AUTH)
    assert own.status_code == 201, own.text
    bad_rules = [
        {"pattern": "(open", "replacement": "x", "is_regex": True},
        {"pattern": "(a)", "replacement": r"\3", "is_regex": True},
        {"pattern": " ", "replacement": "x"},
        {"pattern": "x", "replacement": "y", "agent_id": 999},
    ]
    for bad in bad_rules:
        assert client.post("/api/corrections", json=bad, headers=AUTH).status_code == 422, bad
    assert client.patch(f"/api/corrections/{glob.json()['id']}", json={"is_regex": True, "pattern": "(x"},
                        headers=AUTH).status_code == 422  # fmt: skip
    said = "acne plumbing plumming"
    as_agent = client.post("/api/corrections/test", json={"text": said, "agent_id": aid}, headers=AUTH).json()
    as_global = client.post("/api/corrections/test", json={"text": said}, headers=AUTH).json()
    assert as_agent["corrected"] == "Acme Plumbing plumbing" and as_global["corrected"] == "acne plumbing plumbing"
    assert len(client.get("/api/corrections?scope=global", headers=AUTH).json()) == 1
    assert len(client.get(f"/api/corrections?agent_id={aid}", headers=AUTH).json()) == 1
    assert client.delete(f"/api/agents/{aid}", headers=AUTH).status_code == 204  # its rules go with it
    assert [r["pattern"] for r in client.get("/api/corrections", headers=AUTH).json()] == ["plumming"]


def test_calls_with_transcript_extraction_webhooks_and_recording(client: TestClient, db_url: str,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    aid = client.post("/api/agents", json=AGENT, headers=AUTH).json()["id"]
    client.post("/api/numbers", json={"number": "+15550100002", "agent_id": aid}, headers=AUTH)
    mix = seed_call(db_url, tmp_path, "CA0001")
    seed_call(db_url, tmp_path, "CA0002", to="+15559990000")
    page = client.get("/api/calls", headers=AUTH).json()
    assert page["total"] == 2 and [c["call_sid"] for c in page["items"]] == ["CA0002", "CA0001"]
    assert client.get(f"/api/calls?agent_id={aid}", headers=AUTH).json()["total"] == 1
    assert client.get("/api/calls?number=%2B15559990000", headers=AUTH).json()["items"][0]["call_sid"] == "CA0002"
    assert client.get("/api/calls?limit=0", headers=AUTH).status_code == 422
    detail = client.get("/api/calls/CA0001", headers=AUTH).json()
    assert (detail["agent_name"], detail["status"], detail["has_recording"]) == ("Acme Plumbing", "completed", True)
    assert [t["text"] for t in detail["turns"]] == [t["text"] for t in TURNS]
    assert detail["turns"][1]["raw_text"] == "my kitchen sink is leaking"
    assert {w["event_type"] for w in detail["webhooks"]} == {"call.started", "call.completed"}
    assert client.get("/api/calls/CA0001/transcript", headers=AUTH).json() == detail["turns"]
    assert client.get("/api/calls/CA0001/extraction", headers=AUTH).status_code == 404
    hooks = client.get("/api/calls/CA0001/webhooks", headers=AUTH).json()
    assert all(h["url"] == AGENT["webhook_url"] and h["attempts"] == 0 for h in hooks)

    async def add_extraction() -> None:
        db = Database(db_url)
        async with db.sessions() as s, s.begin():
            call = await CallRepo(s).get("CA0001")
            assert call is not None
            await CallRepo(s).save_extraction(call, status="ok", data={"caller_name": "Bob", "urgency": "low"},
                                              raw="{}", attempts=1, error=None, model="m", duration_ms=5.0)  # fmt: skip
        await db.dispose()

    asyncio.run(add_extraction())
    ext = client.get("/api/calls/CA0001/extraction", headers=AUTH).json()
    assert ext["data"]["caller_name"] == "Bob" and ext["status"] == "ok"
    rec = client.get("/api/calls/CA0001/recording", headers=AUTH)
    assert rec.status_code == 200 and rec.headers["content-type"] == "audio/wav"
    data, rate = sf.read(io.BytesIO(rec.content), dtype="int16")
    assert rate == 8000 and np.array_equal(data, mix)
    assert client.get("/api/calls/CA9/recording", headers=AUTH).status_code == 404
    assert client.get("/api/calls/CA9", headers=AUTH).status_code == 404


def test_recording_path_cannot_escape_the_recordings_dir(client: TestClient, db_url: str, tmp_path: Path) -> None:
    seed_call(db_url, tmp_path, "CA0003")
    (tmp_path / "secret.txt").write_text("not a recording")

    async def tamper() -> None:
        db = Database(db_url)
        async with db.sessions() as s, s.begin():
            call = await CallRepo(s).get("CA0003")
            assert call is not None
            call.recording_path = "recordings/../secret.txt"
        await db.dispose()

    asyncio.run(tamper())
    assert client.get("/api/calls/CA0003/recording", headers=AUTH).status_code == 404


def test_webhook_retry_and_stats(client: TestClient, db_url: str, tmp_path: Path) -> None:
    aid = client.post("/api/agents", json={**AGENT, "webhook_url": f"http://127.0.0.1:{free_port()}/x"},
                      headers=AUTH).json()["id"]  # fmt: skip
    client.post("/api/numbers", json={"number": "+15550100002", "agent_id": aid}, headers=AUTH)
    seed_call(db_url, tmp_path, "CA0004")
    event = client.get("/api/calls/CA0004/webhooks", headers=AUTH).json()[0]
    deadline = time.monotonic() + 20  # the app's dispatcher tries (nothing listens) and records it
    while not client.get("/api/calls/CA0004/webhooks", headers=AUTH).json()[0]["deliveries"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first = client.get("/api/calls/CA0004/webhooks", headers=AUTH).json()[0]["deliveries"][0]
    assert first["success"] is False and first["attempt"] == 1 and first["error"]
    retried = client.post(f"/api/webhooks/{event['id']}/retry", headers=AUTH)
    assert retried.status_code == 202 and retried.json()["status"] == "pending"
    assert client.post("/api/webhooks/999999/retry", headers=AUTH).status_code == 404
    assert sum(client.get("/api/webhooks/stats", headers=AUTH).json().values()) == 2


def test_openapi_documents_the_admin_api(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/agents", "/api/numbers", "/api/corrections", "/api/calls", "/api/calls/{call_sid}",
                 "/api/calls/{call_sid}/recording", "/api/calls/{call_sid}/transcript", "/v1/pipeline"):  # fmt: skip
        assert path in spec["paths"], path
    assert set(spec["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    assert spec["paths"]["/api/agents"]["get"]["security"]
    assert "422" in spec["paths"]["/api/agents"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


def test_numbers_resolve_to_agents_in_the_gateway(client: TestClient, db_url: str) -> None:
    """What the admin API writes is what a call to that number gets."""
    aid = client.post("/api/agents", json=AGENT, headers=AUTH).json()["id"]
    client.post("/api/numbers", json={"number": "+15550100007", "agent_id": aid}, headers=AUTH)

    async def lookup() -> int | None:
        db = Database(db_url)
        async with db.sessions() as s:
            agent = await NumberRepo(s).agent_for("+15550100007")
        await db.dispose()
        return agent.id if agent else None

    assert asyncio.run(lookup()) == aid
