// Switchboard admin page: plain DOM + fetch against /api (no build step).
// The admin key lives in sessionStorage and goes out as "Authorization: Bearer <key>".
// Every value from the API is written with textContent, never as HTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { agents: [], calls: [], selected: null, audioUrl: null };

function key() { return sessionStorage.getItem("switchboard-admin-key") || ""; }

function status(text, kind) {
  const el = $("#status");
  el.textContent = text || "";
  el.className = kind || "";
}

function errorText(body, resp) {
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  if (body && body.detail) return String(body.detail);
  return `${resp.status} ${resp.statusText}`;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${key()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = new Error(errorText(data, resp));
    err.status = resp.status;
    throw err;
  }
  return data;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

async function guarded(fn) {
  try {
    await fn();
  } catch (err) {
    status(err.status === 401 ? "Unauthorized: enter the admin API key (GATEWAY_ADMIN_API_KEY)." : err.message, "error");
  }
}

// ---- calls ---------------------------------------------------------------------------------
async function loadCalls() {
  const page = await api("GET", "/api/calls?limit=100");
  state.calls = page.items;
  const tbody = $("#calls tbody");
  tbody.replaceChildren();
  for (const c of page.items) {
    const tr = document.createElement("tr");
    tr.className = "clickable";
    tr.dataset.sid = c.call_sid;
    [when(c.started_at), c.call_sid, c.from_number, c.to_number, c.agent_name, c.status,
     c.duration_s === null ? "" : `${c.duration_s.toFixed(1)} s`, c.extraction_status].forEach((v) => cell(tr, v));
    tr.addEventListener("click", () => guarded(() => showCall(c.call_sid)));
    tbody.appendChild(tr);
  }
  status(`${page.total} call(s)`, "ok");
}

async function showCall(sid) {
  const call = await api("GET", `/api/calls/${encodeURIComponent(sid)}`);
  state.selected = sid;
  document.querySelectorAll("#calls tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.sid === sid));
  $("#calldetail").hidden = false;
  $("#cd-title").textContent = `${call.call_sid}: ${call.from_number} → ${call.to_number} (${call.agent_name})`;
  const turns = $("#cd-turns");
  turns.replaceChildren();
  for (const t of call.turns) {
    const div = document.createElement("div");
    div.className = `turn ${t.role}`;
    const who = document.createElement("b");
    who.textContent = t.role === "user" ? "Caller" : "Agent";
    const text = document.createElement("span");
    text.textContent = t.text + (t.raw_text && t.raw_text !== t.text ? `  (heard: ${t.raw_text})` : "");
    div.append(who, text);
    turns.appendChild(div);
  }
  const ext = $("#cd-extraction tbody");
  ext.replaceChildren();
  const data = call.extraction && call.extraction.data;
  if (data) {
    for (const [k, v] of Object.entries(data)) { const tr = document.createElement("tr"); cell(tr, k); cell(tr, v); ext.appendChild(tr); }
  } else {
    const tr = document.createElement("tr");
    cell(tr, call.extraction ? `failed: ${call.extraction.error}` : call.extraction_status);
    ext.appendChild(tr);
  }
  const hooks = $("#cd-webhooks tbody");
  hooks.replaceChildren();
  for (const w of call.webhooks) {
    const tr = document.createElement("tr");
    const last = w.deliveries.length ? w.deliveries[w.deliveries.length - 1] : null;
    [w.event_type, w.url, w.status, w.attempts,
     last ? (last.success ? `HTTP ${last.status_code}` : last.error) : ""].forEach((v) => cell(tr, v));
    hooks.appendChild(tr);
  }
  await loadRecording(call);
}

async function loadRecording(call) {
  const audio = $("#cd-audio");
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = null;
  audio.hidden = true;
  audio.removeAttribute("src");
  if (!call.has_recording) return;
  const resp = await fetch(`/api/calls/${encodeURIComponent(call.call_sid)}/recording`,
    { headers: { Authorization: `Bearer ${key()}` } });
  if (!resp.ok) { status(`recording: ${resp.status}`, "error"); return; }
  state.audioUrl = URL.createObjectURL(await resp.blob());
  audio.src = state.audioUrl;
  audio.hidden = false;
}

// ---- agents --------------------------------------------------------------------------------
function factsText(facts) { return Object.entries(facts || {}).map(([k, v]) => `${k}: ${v}`).join("\n"); }

function parseFacts(text) {
  const facts = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) facts[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return facts;
}

async function loadAgents() {
  state.agents = await api("GET", "/api/agents");
  const tbody = $("#agents tbody");
  tbody.replaceChildren();
  for (const a of state.agents) {
    const tr = document.createElement("tr");
    tr.className = "clickable";
    [a.name, a.numbers.join(", "), a.voice, a.language, a.webhook_url || "", a.is_default ? "yes" : ""].forEach((v) => cell(tr, v));
    const tryIt = document.createElement("a");  // the /phone softphone, calling this agent: no number needed
    tryIt.href = `/phone?agent=${encodeURIComponent(a.id)}`;
    tryIt.target = "_blank";
    tryIt.dataset.action = "try";
    tryIt.textContent = "Try this agent";
    tryIt.addEventListener("click", (ev) => ev.stopPropagation());
    cell(tr, "").appendChild(tryIt);
    tr.addEventListener("click", () => editAgent(a));
    tbody.appendChild(tr);
  }
  document.querySelectorAll("select.agent-select").forEach((sel) => {
    const current = sel.value;
    sel.replaceChildren();
    if (sel.dataset.global) sel.appendChild(new Option("(global)", ""));
    for (const a of state.agents) sel.appendChild(new Option(a.name, String(a.id)));
    if (Array.from(sel.options).some((o) => o.value === current)) sel.value = current;
    else sel.selectedIndex = 0;
  });
}

function editAgent(a) {
  const f = $("#agentform");
  f.hidden = false;
  f.reset();
  f.elements.id.value = a ? a.id : "";
  if (!a) return;
  for (const name of ["name", "greeting", "system_prompt", "voice", "language"]) f.elements[name].value = a[name];
  f.elements.transfer_number.value = a.transfer_number || "";
  f.elements.webhook_url.value = a.webhook_url || "";
  f.elements.facts.value = factsText(a.facts);
  f.elements.ev_started.checked = a.webhook_events.includes("call.started");
  f.elements.ev_completed.checked = a.webhook_events.includes("call.completed");
  f.elements.is_default.checked = a.is_default;
}

async function saveAgent(ev) {
  ev.preventDefault();
  const f = ev.target.elements;
  const body = {
    name: f.name.value, greeting: f.greeting.value, system_prompt: f.system_prompt.value, voice: f.voice.value,
    language: f.language.value, facts: parseFacts(f.facts.value), transfer_number: f.transfer_number.value || null,
    webhook_url: f.webhook_url.value || null, is_default: f.is_default.checked,
    webhook_events: [f.ev_started.checked && "call.started", f.ev_completed.checked && "call.completed"].filter(Boolean),
  };
  if (f.webhook_secret.value) body.webhook_secret = f.webhook_secret.value;
  const saved = f.id.value ? await api("PATCH", `/api/agents/${f.id.value}`, body) : await api("POST", "/api/agents", body);
  await loadAgents();
  editAgent(saved);
  status(`Saved agent ${saved.name}`, "ok");
}

async function deleteAgent() {
  const id = $("#agentform").elements.id.value;
  if (!id || !confirm("Delete this agent, its numbers and corrections?")) return;
  await api("DELETE", `/api/agents/${id}`);
  $("#agentform").hidden = true;
  await loadAgents();
  status("Agent deleted", "ok");
}

// ---- numbers -------------------------------------------------------------------------------
async function loadNumbers() {
  await loadAgents();
  const numbers = await api("GET", "/api/numbers");
  const names = Object.fromEntries(state.agents.map((a) => [a.id, a.name]));
  const tbody = $("#numbers tbody");
  tbody.replaceChildren();
  for (const n of numbers) {
    const tr = document.createElement("tr");
    [n.number, names[n.agent_id] || n.agent_id, n.label || ""].forEach((v) => cell(tr, v));
    tr.appendChild(document.createElement("td")).appendChild(button("Delete", () => guarded(async () => {
      await api("DELETE", `/api/numbers/${n.id}`);
      await loadNumbers();
    })));
    tbody.appendChild(tr);
  }
}

async function addNumber(ev) {
  ev.preventDefault();
  const f = ev.target.elements;
  await api("POST", "/api/numbers", { number: f.number.value.trim(), agent_id: Number(f.agent_id.value), label: f.label.value || null });
  ev.target.reset();
  await loadNumbers();
  status("Number added", "ok");
}

// ---- corrections ---------------------------------------------------------------------------
async function loadCorrections() {
  await loadAgents();
  const rules = await api("GET", "/api/corrections");
  const names = Object.fromEntries(state.agents.map((a) => [a.id, a.name]));
  const tbody = $("#corrections tbody");
  tbody.replaceChildren();
  for (const r of rules) {
    const tr = document.createElement("tr");
    [r.agent_id === null ? "global" : names[r.agent_id] || r.agent_id, r.pattern, r.replacement, r.is_regex ? "yes" : ""]
      .forEach((v) => cell(tr, v));
    tr.appendChild(document.createElement("td")).appendChild(button("Delete", () => guarded(async () => {
      await api("DELETE", `/api/corrections/${r.id}`);
      await loadCorrections();
    })));
    tbody.appendChild(tr);
  }
}

async function addCorrection(ev) {
  ev.preventDefault();
  const f = ev.target.elements;
  await api("POST", "/api/corrections", {
    pattern: f.pattern.value, replacement: f.replacement.value, is_regex: f.is_regex.checked,
    agent_id: f.agent_id.value ? Number(f.agent_id.value) : null,
  });
  ev.target.reset();
  await loadCorrections();
  status("Correction added", "ok");
}

async function tryCorrections(ev) {
  ev.preventDefault();
  const f = ev.target.elements;
  const res = await api("POST", "/api/corrections/test",
    { text: f.text.value, agent_id: f.agent_id.value ? Number(f.agent_id.value) : null });
  $("#correction-result").textContent = res.corrected;
}

// ---- recent events (GET /logs) --------------------------------------------------------------
let logTimer = null;

async function loadLogs() {
  const f = $("#logfilter").elements;
  const query = new URLSearchParams({ level: f.level.value, limit: "300" });
  if (f.call.value.trim()) query.set("call", f.call.value.trim());
  const data = await api("GET", `/logs?${query}`);
  const tbody = $("#logs tbody");
  tbody.replaceChildren();
  for (const r of data.items.slice().reverse()) {  // newest first
    const tr = document.createElement("tr");
    tr.className = `log-${r.level.toLowerCase()}`;
    [new Date(r.at * 1000).toLocaleTimeString(), r.level, r.logger, r.message].forEach((v) => cell(tr, v));
    if (r.call) {
      tr.classList.add("clickable");
      tr.title = "show only this call";
      tr.addEventListener("click", () => { f.call.value = r.call; guarded(loadLogs); });
    }
    tbody.appendChild(tr);
  }
  clearTimeout(logTimer);
  if (!$("#tab-logs").hidden) logTimer = setTimeout(() => guarded(loadLogs), 2000);
}

// ---- wiring --------------------------------------------------------------------------------
const loaders = { calls: loadCalls, agents: loadAgents, numbers: loadNumbers, corrections: loadCorrections, logs: loadLogs };

function showTab(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll("main > section").forEach((s) => { s.hidden = s.id !== `tab-${name}`; });
  return guarded(loaders[name]);
}

document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
$("#keyform").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("switchboard-admin-key", $("#apikey").value);
  $("#apikey").value = "";
  showTab(document.querySelector("nav button.active").dataset.tab);
});
$("#agent-new").addEventListener("click", () => editAgent(null));
$("#agentform").addEventListener("submit", (ev) => guarded(() => saveAgent(ev)));
$("#agent-delete").addEventListener("click", () => guarded(deleteAgent));
$("#numberform").addEventListener("submit", (ev) => guarded(() => addNumber(ev)));
$("#correctionform").addEventListener("submit", (ev) => guarded(() => addCorrection(ev)));
$("#correctiontest").addEventListener("submit", (ev) => guarded(() => tryCorrections(ev)));
$("#logfilter").addEventListener("submit", (ev) => { ev.preventDefault(); guarded(loadLogs); });

if (key()) showTab("calls"); else status("Enter the admin API key to start.", "");
