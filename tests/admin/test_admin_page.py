"""The /admin page in real headless Chromium against a running gateway (``python -m gateway``):
it loads, takes the key, lists a call with its transcript, extraction and a playable recording,
and manages numbers and corrections through its forms."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from admin_support import ADMIN_KEY, AGENT, TURNS, seed_call
from cdp import Chrome
from dbtest_support import Process, free_port, start_service

from gateway.db.engine import Database
from gateway.db.migrate import upgrade
from gateway.db.repos import CallRepo

pytestmark = pytest.mark.timeout(180)
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real gateway process on a SQLite file with one agent, one number and one finished call."""
    data = tmp_path_factory.mktemp("admin-page")
    url = f"sqlite+aiosqlite:///{data / 'switchboard.db'}"
    upgrade(url)
    port = free_port()
    env = {
        "GATEWAY_PORT": str(port),
        "GATEWAY_DATABASE_URL": url,
        "GATEWAY_DATA_DIR": str(data),
        "GATEWAY_ADMIN_API_KEY": ADMIN_KEY,
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "GATEWAY_EXTRACTION_ENABLED": "false",
        "GATEWAY_TURN_DETECTION": "silence",
    }
    proc: Process = start_service("gateway", env, port, data / "gateway.log", timeout_s=120)
    base = f"http://127.0.0.1:{port}"
    aid = httpx.post(f"{base}/api/agents", json=AGENT, headers=AUTH).json()["id"]
    httpx.post(f"{base}/api/numbers", json={"number": "+15550100002", "agent_id": aid}, headers=AUTH)
    seed_call(url, data, "CApage0001", seconds=3.0)

    async def extraction() -> None:
        db = Database(url)
        async with db.sessions() as s, s.begin():
            call = await CallRepo(s).get("CApage0001")
            assert call is not None
            await CallRepo(s).save_extraction(
                call, status="ok", data={"caller_name": "Maria Lopez", "urgency": "emergency"},
                raw="{}", attempts=1, error=None, model="m", duration_ms=1.0,
            )  # fmt: skip
        await db.dispose()

    asyncio.run(extraction())
    yield base, data
    proc.stop()


@pytest.fixture(scope="module")
def chrome() -> Iterator[Chrome]:
    browser = Chrome()
    yield browser
    browser.close()


def test_admin_page_lists_a_call_and_plays_its_recording(gateway: tuple[str, Path], chrome: Chrome) -> None:
    base, _ = gateway
    chrome.goto(f"{base}/admin")
    assert chrome.eval("document.title") == "Switchboard admin"
    assert "admin API key" in chrome.eval("document.querySelector('#status').textContent")
    chrome.type_into("#apikey", "wrong-key")
    chrome.click("#keysave")
    chrome.wait_for("document.querySelector('#status').textContent.includes('Unauthorized')")
    chrome.type_into("#apikey", ADMIN_KEY)
    chrome.click("#keysave")
    row = "document.querySelector('#calls tr[data-sid=\"CApage0001\"]')"
    chrome.wait_for(f"!!{row}")
    cells = chrome.eval(f"Array.from({row}.cells).map(c => c.textContent)")
    assert cells[1:6] == ["CApage0001", "+15550100001", "+15550100002", "Acme Plumbing", "completed"]
    chrome.click('#calls tr[data-sid="CApage0001"]')
    chrome.wait_for("document.querySelectorAll('#cd-turns .turn').length === 3")
    turns = chrome.eval("Array.from(document.querySelectorAll('#cd-turns .turn')).map(t => t.textContent)")
    assert [t.split(TURNS[i]["text"])[0] for i, t in enumerate(turns)] == ["Agent", "Caller", "Agent"]
    assert TURNS[1]["text"] in turns[1]
    extraction = chrome.eval("document.querySelector('#cd-extraction').textContent")
    assert "Maria Lopez" in extraction and "emergency" in extraction
    webhooks = chrome.eval(
        "Array.from(document.querySelectorAll('#cd-webhooks tbody tr')).map(r => r.cells[0].textContent)"
    )
    assert sorted(webhooks) == ["call.completed", "call.started"]
    # The recording: fetched with the key, decoded by Chromium's media stack, 3 s long.
    chrome.wait_for("document.querySelector('#cd-audio').src.startsWith('blob:')")
    duration = chrome.wait_for(
        "(() => { const a = document.querySelector('#cd-audio'); return a.readyState >= 1 && a.duration; })()"
    )
    assert abs(duration - 3.0) < 0.05
    assert chrome.eval("document.querySelector('#cd-audio').hidden") is False
    assert chrome.errors == []


def test_admin_page_manages_numbers_and_corrections(gateway: tuple[str, Path], chrome: Chrome) -> None:
    base, _ = gateway
    chrome.goto(f"{base}/admin")  # the key stays in sessionStorage
    chrome.click('nav button[data-tab="numbers"]')
    chrome.wait_for("document.querySelectorAll('#numbers tbody tr').length === 1")
    chrome.type_into("#numberform input[name=number]", "+15550100777")
    chrome.type_into("#numberform input[name=label]", "after hours")
    chrome.click("#numberform button[type=submit]")
    chrome.wait_for("document.querySelectorAll('#numbers tbody tr').length === 2")
    numbers = httpx.get(f"{base}/api/numbers", headers=AUTH).json()
    assert {(n["number"], n["label"]) for n in numbers} >= {("+15550100777", "after hours")}
    chrome.type_into("#numberform input[name=number]", "12345")  # not E.164: the API's 422 is shown
    chrome.click("#numberform button[type=submit]")
    chrome.wait_for("document.querySelector('#status').className === 'error'")
    assert "number" in chrome.eval("document.querySelector('#status').textContent")

    chrome.click('nav button[data-tab="corrections"]')
    chrome.wait_for("document.querySelectorAll('#correctionform select option').length >= 2")
    chrome.type_into("#correctionform input[name=pattern]", "acne")
    chrome.type_into("#correctionform input[name=replacement]", "Acme")
    chrome.eval("(() => { const s = document.querySelector('#correctionform select');"
                " s.value = s.options[1].value; })()")  # fmt: skip
    chrome.click("#correctionform button[type=submit]")
    chrome.wait_for("document.querySelectorAll('#corrections tbody tr').length === 1")
    rules = httpx.get(f"{base}/api/corrections", headers=AUTH).json()
    assert [(r["pattern"], r["replacement"], r["agent_id"] is not None) for r in rules] == [("acne", "Acme", True)]
    chrome.type_into("#correctiontest input[name=text]", "I called acne about a leak")
    chrome.eval("(() => { const s = document.querySelector('#correctiontest select');"
                " s.value = s.options[1].value; })()")  # fmt: skip
    chrome.click("#correctiontest button[type=submit]")
    chrome.wait_for("document.querySelector('#correction-result').textContent === 'I called Acme about a leak'")

    chrome.click('nav button[data-tab="agents"]')
    chrome.wait_for("document.querySelectorAll('#agents tbody tr').length === 1")
    agent_id = httpx.get(f"{base}/api/agents", headers=AUTH).json()[0]["id"]
    assert chrome.eval("document.querySelector('#agents a[data-action=try]').getAttribute('href')") == (
        f"/phone?agent={agent_id}"
    ), "the admin's 'try this agent' opens the softphone on that agent"
    chrome.click('nav button[data-tab="logs"]')  # the gateway's recent events (GET /logs)
    chrome.wait_for(
        "[...document.querySelectorAll('#logs tbody td')].some((td) => td.textContent.includes('database'))"
    )
    chrome.click('nav button[data-tab="agents"]')
    chrome.click("#agents tbody tr")
    chrome.wait_for("!document.querySelector('#agentform').hidden")
    facts = chrome.eval("document.querySelector('#agentform [name=facts]').value")
    assert facts == "hours: Mon-Fri 8-6\nprices: call-out 89 dollars"
    chrome.eval("document.querySelector('#agentform [name=greeting]').value = ''")
    chrome.type_into("#agentform [name=greeting]", "Acme here, what's up?")
    assert chrome.eval("document.querySelector('#agentform [name=language]').value") == "en"
    chrome.eval("document.querySelector('#agentform [name=language]').value = 'es'")
    chrome.click("#agentform button[type=submit]")
    chrome.wait_for("document.querySelector('#status').textContent.startsWith('Saved agent')")
    agent = httpx.get(f"{base}/api/agents", headers=AUTH).json()[0]
    assert agent["greeting"] == "Acme here, what's up?" and agent["webhook_secret_set"] is True
    assert agent["facts"] == AGENT["facts"] and agent["language"] == "es"
    assert chrome.errors == []


def test_admin_page_is_served_with_a_strict_policy(gateway: tuple[str, Path]) -> None:
    base, _ = gateway
    page = httpx.get(f"{base}/admin")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert httpx.get(f"{base}/admin/admin.js").headers["content-type"].startswith("text/javascript")
    assert json.loads(httpx.get(f"{base}/api/calls").text)["detail"].startswith("admin API key required")
