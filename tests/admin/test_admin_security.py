"""Admin API security leftovers (issue 11): slow regex rules are refused when stored, a CallSid with
``/`` opens, and every write reaches the gateway's cached number → agent map at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_support import AGENT, AUTH, gateway_settings, seed_call
from fastapi.testclient import TestClient

from gateway.app import create_app


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(gateway_settings(db_url, tmp_path))) as c:
        yield c


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(\w+\s?)*done", r"(a|aa)+$"])
def test_a_catastrophic_regex_correction_is_refused_with_422(client: TestClient, pattern: str) -> None:
    resp = client.post("/api/corrections", json={"pattern": pattern, "replacement": "x", "is_regex": True},
                       headers=AUTH)  # fmt: skip
    assert resp.status_code == 422, resp.text
    message = str(resp.json()["detail"])
    assert "catastrophic" in message or "too slow" in message
    ok = client.post("/api/corrections", json={"pattern": r"plum+ing", "replacement": "plumbing", "is_regex": True},
                     headers=AUTH)  # fmt: skip
    assert ok.status_code == 201, ok.text
    patched = client.patch(f"/api/corrections/{ok.json()['id']}", json={"pattern": pattern}, headers=AUTH)
    assert patched.status_code == 422, patched.text
    assert [r["pattern"] for r in client.get("/api/corrections", headers=AUTH).json()] == [r"plum+ing"]


def test_a_call_sid_with_a_slash_opens(client: TestClient, db_url: str, tmp_path: Path) -> None:
    aid = client.post("/api/agents", json=AGENT, headers=AUTH).json()["id"]
    client.post("/api/numbers", json={"number": "+15550100002", "agent_id": aid}, headers=AUTH)
    sid = "CA12/ab"
    seed_call(db_url, tmp_path, sid)
    seed_call(db_url, tmp_path, "CA12")  # a call whose sid is the first part of the other one's
    quoted = "CA12%2Fab"  # what the page sends (encodeURIComponent)
    detail = client.get(f"/api/calls/{quoted}", headers=AUTH)
    assert detail.status_code == 200, detail.text
    assert detail.json()["call_sid"] == sid and detail.json()["has_recording"]
    assert client.get(f"/api/calls/{quoted}/transcript", headers=AUTH).json() == detail.json()["turns"]
    assert client.get(f"/api/calls/{quoted}/webhooks", headers=AUTH).status_code == 200
    recording = client.get(f"/api/calls/{quoted}/recording", headers=AUTH)
    assert recording.status_code == 200 and recording.headers["content-type"] == "audio/wav"
    assert "/" not in recording.headers["content-disposition"].split("filename=")[1]
    assert client.get(f"/api/calls/{quoted}/extraction", headers=AUTH).status_code == 404  # none yet, not "no call"
    assert "no extraction" in client.get(f"/api/calls/{quoted}/extraction", headers=AUTH).json()["detail"]
    assert client.get("/api/calls/CA12", headers=AUTH).json()["call_sid"] == "CA12"
    assert client.get("/api/calls/CA12%2Fzz", headers=AUTH).status_code == 404
    spec = client.get("/openapi.json").json()
    assert "/api/calls/{call_sid}" in spec["paths"] and "/api/calls/{call_sid}/recording" in spec["paths"]


def test_admin_writes_reach_the_calls_at_once(client: TestClient) -> None:
    """The gateway caches who answers which number; an admin change must not wait for the cache."""
    hooks = client.app.state.db_runtime.hooks  # type: ignore[attr-defined]
    portal = client.portal
    assert portal is not None

    def agent_for(number: str) -> int | None:
        return portal.call(hooks.resolve, number).agent_id  # type: ignore[no-any-return]

    acme = client.post("/api/agents", json=AGENT, headers=AUTH).json()["id"]
    bolt = client.post("/api/agents", json={**AGENT, "name": "Bolt Electric"}, headers=AUTH).json()["id"]
    number = client.post("/api/numbers", json={"number": "+15550100007", "agent_id": acme}, headers=AUTH).json()
    assert agent_for("+15550100007") == acme
    client.patch(f"/api/numbers/{number['id']}", json={"agent_id": bolt}, headers=AUTH)
    assert agent_for("+15550100007") == bolt
    client.patch(f"/api/agents/{bolt}", json={"greeting": "Bolt here."}, headers=AUTH)
    assert portal.call(hooks.resolve, "+15550100007").greeting == "Bolt here."
    client.post("/api/corrections", json={"pattern": "bolt electrics", "replacement": "Bolt Electric",
                                          "agent_id": bolt}, headers=AUTH)  # fmt: skip
    corrections = portal.call(hooks.resolve, "+15550100007").corrections
    assert corrections.apply("call bolt electrics") == "call Bolt Electric"
    client.delete(f"/api/numbers/{number['id']}", headers=AUTH)
    assert agent_for("+15550100007") is None  # unknown now: the settings agent (policy "default")
