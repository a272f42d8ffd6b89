// Switchboard softphone: one WebRTC call to the gateway that served this page (no build step).
// Every URL is computed from where the page was served, so a proxy (RunPod) URL just works.
"use strict";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const agent = params.get("agent") || "";
const LOUD_RMS = 0.02;       // a 20 ms window louder than this is speech (caller) or agent audio
const ONSET_QUIET_MS = 400;  // agent audio after this much quiet starts a new utterance
const CALLER_DONE_MS = 150;  // the caller counts as done talking after this much quiet

// What the page measured; tests and curious developers read it (window.phone).
const phone = window.phone = {
  state: "idle", sessionId: null, events: [], remotePeak: 0, voiceToVoiceMs: [], analysis: null,
};
let pc = null, channel = null, audioCtx = null, meterTimer = null, hangupTimer = null;
let lastMicLoud = 0, remoteQuietSince = 0, remoteLoud = false, callerSpokeSinceOnset = false;

function log(text) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
  $("#connlog").appendChild(li);
  li.scrollIntoView({ block: "nearest" });
}

function setState(state) {
  phone.state = state;
  $("#callstate").textContent = state;
  const button = $("button[data-action=call]");
  const live = state !== "idle" && state !== "ended";
  button.textContent = live ? "Hang up" : "Call";
  button.classList.toggle("live", live);
}

// ---- transcript ------------------------------------------------------------------------------
function turnElement(role, replyId) {
  if (replyId) {
    const found = $(`#transcript .turn[data-reply="${CSS.escape(replyId)}"]`);
    if (found) return found;
  }
  const div = document.createElement("div");
  div.className = "turn";
  div.dataset.role = role;
  if (replyId) div.dataset.reply = replyId;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "caller" ? "You" : "Agent";
  const text = document.createElement("span");
  text.className = "text";
  div.append(who, text);
  $("#transcript").appendChild(div);
  div.scrollIntoView({ block: "nearest" });
  return div;
}

const STAGES = [["endpointing_ms", "endpointing"], ["stt_ms", "STT"], ["llm_ttft_ms", "LLM first token"],
  ["tts_first_audio_ms", "TTS first audio"], ["voice_to_voice_ms", "voice-to-voice (server)"]];

function showLatency(div) {
  const lat = JSON.parse(div.dataset.latency || "{}");
  const parts = STAGES.filter(([k]) => lat[k] !== undefined).map(([k, name]) => `${name} ${Math.round(lat[k])} ms`);
  if (div.dataset.heardMs) parts.push(`voice-to-voice (heard here) ${div.dataset.heardMs} ms`);
  if (!parts.length) return;
  let line = div.querySelector(".latency");
  if (!line) { line = document.createElement("div"); line.className = "latency"; div.appendChild(line); }
  line.textContent = parts.join(" · ");
}

function onEvent(msg) {
  phone.events.push(msg);
  switch (msg.type) {
    case "connected":
      phone.sessionId = msg.session_id;
      $("#agentname").textContent = `agent: ${msg.agent}`;
      log(`session ${msg.session_id} with agent "${msg.agent}"`);
      break;
    case "transcript": {
      // The caller went on talking before any answer: the new transcript repeats the turn's words so far.
      const last = $("#transcript").lastElementChild;
      const prev = last && last.dataset.role === "caller" ? last.querySelector(".text") : null;
      if (prev && msg.text.startsWith(prev.textContent)) prev.textContent = msg.text;
      else turnElement("caller").querySelector(".text").textContent = msg.text;
      break;
    }
    case "ai_text": {
      const div = turnElement("agent", msg.reply_id);
      const text = div.querySelector(".text");
      if (msg.is_complete) { text.textContent = msg.text; div.classList.remove("streaming"); }
      else { text.textContent += msg.text; div.classList.add("streaming"); }
      break;
    }
    case "turn_complete": {
      const div = turnElement("agent", msg.reply_id);
      div.classList.remove("streaming");
      div.classList.toggle("interrupted", msg.interrupted);
      if (msg.interrupted) div.querySelector(".text").textContent = msg.text;
      div.dataset.latency = JSON.stringify(msg.latency_ms || {});
      showLatency(div);
      if (msg.interrupted) log(`you interrupted ${msg.reply_id}`);
      break;
    }
    case "analysis":
      phone.analysis = msg;
      $("#analysis").classList.remove("muted");
      $("#analysis").textContent = JSON.stringify(msg, null, 2);
      log(`analysis: ${msg.status}`);
      finish();
      break;
    case "error":
      log(`error: ${msg.message}`);
      break;
    default:
      break;
  }
}

// ---- audio levels: the agent's audio reaching the page, and voice-to-voice as heard here ---------
function rms(analyser, buf) {
  analyser.getFloatTimeDomainData(buf);
  let sum = 0;
  for (const v of buf) sum += v * v;
  return Math.sqrt(sum / buf.length);
}

function meter(micAnalyser, remoteAnalyser) {
  const buf = new Float32Array(remoteAnalyser.fftSize);
  meterTimer = setInterval(() => {
    const now = performance.now();
    if (rms(micAnalyser, buf) > LOUD_RMS) { lastMicLoud = now; callerSpokeSinceOnset = true; }
    const level = rms(remoteAnalyser, buf);
    phone.remotePeak = Math.max(phone.remotePeak, level);
    $("#level div").style.width = `${Math.min(100, level * 400)}%`;
    if (level > LOUD_RMS) {
      const callerDone = lastMicLoud && now - lastMicLoud >= CALLER_DONE_MS;
      if (!remoteLoud && now - remoteQuietSince >= ONSET_QUIET_MS && callerSpokeSinceOnset && callerDone) {
        onsetHeard(now - lastMicLoud);
      }
      remoteLoud = true;
    } else if (remoteLoud) {
      remoteLoud = false;
      remoteQuietSince = now;
    }
  }, 20);
}

function onsetHeard(ms) {
  callerSpokeSinceOnset = false;
  const agents = document.querySelectorAll('#transcript .turn[data-role="agent"]');
  const div = agents[agents.length - 1];
  phone.voiceToVoiceMs.push(Math.round(ms));
  if (div && !div.dataset.heardMs) { div.dataset.heardMs = String(Math.round(ms)); showLatency(div); }
  log(`agent audio heard ${Math.round(ms)} ms after you stopped talking`);
}

// ---- the call --------------------------------------------------------------------------------
function adminKey() { return sessionStorage.getItem("switchboard-admin-key") || ""; }

async function call() {
  setState("connecting");
  $("#transcript").replaceChildren();
  const config = await (await fetch("/webrtc/config")).json();
  if (config.requireKey && !adminKey()) {  // GATEWAY_BROWSER__REQUIRE_ADMIN_KEY: the admin page's key, or ask
    const given = prompt("This gateway needs its admin API key for browser calls:");
    if (given) sessionStorage.setItem("switchboard-admin-key", given);
  }
  log(`ICE servers: ${config.iceServers.length ? config.iceServers.map((s) => [].concat(s.urls).join(",")).join(" ") : "none (host candidates)"}`);
  const mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video: false,
  });
  log(`microphone: ${mic.getAudioTracks()[0].label || "default"}`);
  pc = new RTCPeerConnection({ iceServers: config.iceServers, iceTransportPolicy: config.iceTransportPolicy });
  pc.addEventListener("iceconnectionstatechange", () => log(`ICE ${pc.iceConnectionState}`));
  pc.addEventListener("connectionstatechange", () => {
    log(`connection ${pc.connectionState}`);
    if (pc.connectionState === "connected") setState("in call");
    if (pc.connectionState === "failed" || pc.connectionState === "closed") finish();
  });
  audioCtx = new AudioContext();
  const micAnalyser = audioCtx.createAnalyser();
  audioCtx.createMediaStreamSource(mic).connect(micAnalyser);
  const remoteAnalyser = audioCtx.createAnalyser();
  pc.addEventListener("track", (ev) => {
    const stream = ev.streams[0] || new MediaStream([ev.track]);
    $("#remote").srcObject = stream;  // Chrome feeds a remote track to Web Audio only while it plays
    audioCtx.createMediaStreamSource(stream).connect(remoteAnalyser);
    log("agent audio track received");
  });
  meter(micAnalyser, remoteAnalyser);
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  channel = pc.createDataChannel("events");
  channel.addEventListener("open", () => log("event channel open"));
  channel.addEventListener("message", (ev) => onEvent(JSON.parse(ev.data)));
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // non-trickle: send the offer with its candidates
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
  const headers = { "Content-Type": "application/json" };
  if (adminKey()) headers.Authorization = `Bearer ${adminKey()}`;
  const resp = await fetch("/webrtc/offer", {
    method: "POST", headers,
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, agent }),
  });
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    throw new Error(`offer refused (${resp.status}): ${body.detail || resp.statusText}`);
  }
  const answer = await resp.json();
  log(`answer for session ${answer.session_id}`);
  await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
}

function hangUp() {
  setState("hanging up");
  if (channel && channel.readyState === "open") {
    channel.send(JSON.stringify({ type: "end_conversation" }));  // the analysis comes back, then we close
    hangupTimer = setTimeout(finish, 240000);  // the extraction takes a while on a small CPU
  } else {
    finish();
  }
}

function finish() {
  clearTimeout(hangupTimer);
  clearInterval(meterTimer);
  if (pc) { pc.getSenders().forEach((s) => s.track && s.track.stop()); pc.close(); pc = null; }
  if (audioCtx) { audioCtx.close(); audioCtx = null; }
  if (phone.state !== "idle") setState("ended");
}

$("button[data-action=call]").addEventListener("click", () => {
  if (phone.state === "idle" || phone.state === "ended") {
    call().catch((err) => { log(`error: ${err.message}`); finish(); });
  } else {
    hangUp();
  }
});

const wsScheme = location.protocol === "https:" ? "wss:" : "ws:";
$("#wsurl").textContent = `${wsScheme}//${location.host}/ws/conversation${agent ? `?agent=${encodeURIComponent(agent)}` : ""}`;
log(`page served by ${location.host}${agent ? `, agent ${agent}` : ", default agent"}`);
