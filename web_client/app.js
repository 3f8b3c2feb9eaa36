// voxlane browser client: plain ES module, no dependencies, works offline.
//
// Capture path: WebRTC (sendonly audio transceiver + "control" data channel),
// falling back to raw PCM over the transcript WebSocket. Live messages arrive on
// the WebSocket (and possibly the data channel); finals are de-duplicated by
// segment_id. All server text is rendered with textContent.

// ------------------------------------------------------------------ constants

const API = "/v1/transcripts/";
const PAGE_SIZE = 50;
const ICE_GATHER_TIMEOUT_MS = 3000;
const WEBRTC_CONNECT_TIMEOUT_MS = 8000;
const WS_OPEN_TIMEOUT_MS = 5000;
const STOP_TIMEOUT_MS = 15000;
const STOP_TAIL_MS = 300; // let in-flight audio reach the server before "stop"
const FRAME_MS = 100; // PCM frame length for the WebSocket fallback
const MAX_WS_BUFFERED = 4 * 1024 * 1024;
const MAX_RECONNECTS = 8;
const LIST_POLL_MS = 15000;
const MIC_ERRORS = new Set([
  "NotAllowedError", "PermissionDeniedError", "NotFoundError", "DevicesNotFoundError",
  "NotReadableError", "TrackStartError", "OverconstrainedError", "SecurityError", "InsecureContextError",
]);
const PALETTE = [
  "#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed",
  "#dc2626", "#0891b2", "#65a30d", "#c026d3", "#ea580c",
];
const UNREACHABLE_MSG =
  "Cannot reach the voxlane server. Check that it is running and that you are online, then try again.";

// ------------------------------------------------------------------ state

/** Public, test-readable view of the client (mutated in place). */
const vx = {
  transcriptId: null,
  transcript: null,
  state: "idle", // idle | connecting | live | paused | stopping | error
  mode: null, // null | "webrtc" | "websocket" | "watch"
  finals: [], // final segments in display order
  partial: "",
  lag: null,
  lastStatus: null,
  summary: null,
  pc: null,
  dc: null,
  ws: null,
};
window.voxlane = vx;

const entries = []; // parallel to vx.finals: {seg, el, spkEl, timeEl, textEl}
const finalsById = new Map(); // segment_id (and stored-id aliases) -> entry
const partials = new Map(); // segment_id -> latest partial message data
let session = null; // the active capture (null when not capturing)
let sub = null; // the live WebSocket subscription
let completionWaiters = [];
let stickToBottom = true;
let openToken = 0;
let bannerKey = null;
let bannerTimer = 0;
const list = { items: [], total: 0, page: 1, editingId: null, confirmId: null, loading: false };

class ApiError extends Error {
  constructor(message, { status = 0, code = null, unreachable = false, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.unreachable = unreachable;
    this.retryAfter = retryAfter; // seconds, when the server is busy and says when to ask again
  }
}

/** A refusal for load (the server at capacity, a per-caller cap): wait its retry hint and ask again. */
function busyRetrySeconds(err) {
  if (!err || !(err.code === "OVERLOADED" || err.code === "RATE_LIMITED")) return null;
  const s = Number(err.retryAfter);
  return isFinite(s) && s > 0 ? Math.min(s, 60) : 5;
}

class Cancelled extends Error {
  constructor() {
    super("cancelled");
    this.name = "Cancelled";
  }
}

// ------------------------------------------------------------------ DOM helpers

const $ = (id) => document.getElementById(id);
const ui = {};

/** Create an element; string/number children become text nodes (never HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const enc = encodeURIComponent;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** mm:ss (or h:mm:ss) from seconds. */
function fmtClock(sec) {
  if (typeof sec !== "number" || !isFinite(sec) || sec < 0) sec = 0;
  const s = Math.floor(sec);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${String(mm).padStart(2, "0")}:${ss}`;
}

function fmtDuration(sec) {
  return typeof sec === "number" && isFinite(sec) ? fmtClock(sec) : "—";
}

function fmtDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** FNV-1a hash of the speaker label -> a stable palette colour. */
function speakerColor(speaker) {
  let x = 0x811c9dc5;
  const s = String(speaker);
  for (let i = 0; i < s.length; i++) {
    x ^= s.charCodeAt(i);
    x = Math.imul(x, 0x01000193) >>> 0;
  }
  return PALETTE[x % PALETTE.length];
}

function safeFilename(name, ext) {
  const base = String(name || "transcript").replace(/[\\/:*?"<>|\x00-\x1f]+/g, "_").trim().slice(0, 80);
  return `${base || "transcript"}.${ext}`;
}

// ------------------------------------------------------------------ banner

/** Show a visible message. kind: error | warning | info. key lets a later call clear just this one. */
function showBanner(message, kind = "error", key = null) {
  clearTimeout(bannerTimer);
  bannerKey = key;
  ui.bannerText.textContent = message;
  ui.banner.dataset.kind = kind;
  ui.banner.hidden = false;
  if (kind === "info") bannerTimer = setTimeout(() => clearBanner(), 6000);
}

function clearBanner(key) {
  if (key !== undefined && key !== bannerKey) return;
  clearTimeout(bannerTimer);
  bannerKey = null;
  ui.banner.hidden = true;
  ui.bannerText.textContent = "";
}

function reportError(err, context) {
  if (err instanceof Cancelled) return;
  console.error(context, err);
  if (err && err.unreachable) showBanner(UNREACHABLE_MSG, "error", "unreachable");
  else showBanner(`${context}: ${(err && err.message) || err}`, "error");
}

// ------------------------------------------------------------------ REST

/** JSON request; throws ApiError (unreachable=true when the server cannot be reached). */
async function api(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      cache: "no-store",
      headers: body !== undefined ? { "Content-Type": "application/json", Accept: "application/json" }
        : { Accept: "application/json" },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    throw new ApiError(UNREACHABLE_MSG, { unreachable: true });
  }
  if (res.status === 204) return null;
  const text = await res.text().catch(() => "");
  let payload = null;
  if (text) {
    try { payload = JSON.parse(text); } catch { payload = null; }
  }
  if (!res.ok) {
    const err = payload && payload.error;
    const gateway = res.status === 502 || res.status === 503 || res.status === 504;
    const retryAfter = (err && err.details && err.details.retry_after_s) ?? res.headers.get("Retry-After");
    throw new ApiError((err && err.message) || `${res.status} ${res.statusText || "request failed"}`, {
      status: res.status, code: err && err.code, unreachable: gateway && !err, retryAfter,
    });
  }
  return payload;
}

// ------------------------------------------------------------------ connection state & controls

function setState(state) {
  vx.state = state;
  ui.status.textContent = state;
  ui.status.dataset.state = state;
  updateControls();
}

function setMode(mode) {
  vx.mode = mode;
  const text = {
    webrtc: "Recording via WebRTC.",
    websocket: "Recording via WebSocket (fallback).",
    watch: "Watching a live transcript (read-only, microphone not used).",
  }[mode] || "";
  ui.mode.textContent = text;
  updateControls();
}

function updateControls() {
  const s = vx.state;
  const capturing = session !== null;
  ui.start.disabled = capturing && s !== "error";
  ui.stop.disabled = !capturing || s === "stopping";
  ui.pause.disabled = !capturing || (s !== "live" && s !== "paused");
  ui.pause.textContent = s === "paused" ? "Resume" : "Pause";
  ui.pause.setAttribute("aria-pressed", s === "paused" ? "true" : "false");
  document.body.dataset.state = s;
}

function setLag(value) {
  vx.lag = typeof value === "number" && isFinite(value) ? value : null;
  ui.lag.textContent = vx.lag === null ? "—" : `${vx.lag.toFixed(1)} s`;
  ui.lag.dataset.level = vx.lag === null ? "" : vx.lag > 5 ? "high" : vx.lag > 2 ? "mid" : "ok";
}

// ------------------------------------------------------------------ current transcript header & downloads

function setTranscript(t) {
  vx.transcript = t || null;
  vx.transcriptId = t ? t.id : null;
  if (t) {
    ui.tName.textContent = t.name || "Untitled transcript";
    ui.tStatus.textContent = t.status || "";
    ui.tStatus.className = `badge status-${t.status || "unknown"}`;
    ui.tStatus.hidden = !t.status;
    const parts = [fmtDate(t.created_at)];
    if (typeof t.duration === "number") parts.push(fmtDuration(t.duration));
    ui.tMeta.textContent = parts.filter(Boolean).join(" · ");
    history.replaceState(null, "", `#${enc(t.id)}`);
  } else {
    ui.tName.textContent = "New recording";
    ui.tStatus.hidden = true;
    ui.tMeta.textContent = "Press Start to transcribe your microphone live.";
    history.replaceState(null, "", location.pathname + location.search);
  }
  updateDownloads();
  markActiveRow();
}

function setTranscriptStatus(status) {
  if (!vx.transcript || !status) return;
  vx.transcript.status = status;
  ui.tStatus.textContent = status;
  ui.tStatus.className = `badge status-${status}`;
  ui.tStatus.hidden = false;
}

function updateDownloads() {
  const t = vx.transcript;
  for (const a of ui.downloads.querySelectorAll("a.dl")) {
    if (!t) {
      a.removeAttribute("href");
      a.removeAttribute("download");
      a.setAttribute("aria-disabled", "true");
      continue;
    }
    const fmt = a.dataset.format;
    a.href = fmt === "audio" ? `/v1/transcripts_audio/${enc(t.id)}/download`
      : `${API}${enc(t.id)}?transcript_format=${enc(fmt)}`;
    a.setAttribute("download", safeFilename(t.name || t.id, a.dataset.ext));
    a.removeAttribute("aria-disabled");
  }
}

// ------------------------------------------------------------------ transcript view

function resetView() {
  entries.length = 0;
  vx.finals.length = 0;
  finalsById.clear();
  partials.clear();
  ui.transcript.replaceChildren();
  renderPartial();
  setLag(null);
  vx.lastStatus = null;
  vx.summary = null;
  ui.summary.hidden = true;
  stickToBottom = true;
  ui.jump.hidden = true;
  updateEmpty();
}

function updateEmpty() {
  ui.empty.hidden = entries.length > 0 || partials.size > 0;
}

/** Normalise a live message or stored segment into a final-segment record. */
function toSegment(d, stored = false) {
  const id = d.segment_id ?? d.id;
  return {
    segment_id: id === undefined || id === null ? "" : String(id),
    text: typeof d.text === "string" ? d.text : "",
    speaker: d.speaker === undefined || d.speaker === null || d.speaker === "" ? null : String(d.speaker),
    start: Number(d.start) || 0,
    end: Number(d.end) || 0,
    participant_id: d.participant_id ?? null,
    confidence: typeof d.confidence === "number" ? d.confidence : null,
    words: Array.isArray(d.words) ? d.words : [],
    stored,
  };
}

/** Same segment under another id (stored id vs live segment_id)? */
function findByFingerprint(seg) {
  const text = seg.text.trim();
  for (let i = entries.length - 1; i >= 0; i--) {
    const s = entries[i].seg;
    if (Math.abs(s.start - seg.start) < 0.05 && s.text.trim() === text) return entries[i];
  }
  return null;
}

function buildSegmentEl(seg) {
  const spkEl = h("span", { class: "seg-speaker" });
  const timeEl = h("span", { class: "seg-time" });
  const textEl = h("p", { class: "seg-text" });
  const el = h("div", { class: "seg", "data-segment-id": seg.segment_id },
    h("div", { class: "seg-meta" }, spkEl, timeEl), textEl);
  return { seg, el, spkEl, timeEl, textEl };
}

function fillSegmentEl(entry) {
  const { seg, el, spkEl, timeEl, textEl } = entry;
  if (seg.speaker) {
    spkEl.textContent = seg.speaker;
    spkEl.hidden = false;
    el.style.setProperty("--spk", speakerColor(seg.speaker));
    el.dataset.speaker = seg.speaker;
  } else {
    spkEl.textContent = "";
    spkEl.hidden = true;
    el.style.removeProperty("--spk");
    delete el.dataset.speaker;
  }
  timeEl.textContent = fmtClock(seg.start);
  timeEl.title = `${fmtClock(seg.start)} – ${fmtClock(seg.end)}`;
  textEl.textContent = seg.text;
}

/** Insert or update one final segment (deduplicated by segment_id). */
function upsertFinal(seg) {
  if (!seg.segment_id) seg.segment_id = `local-${seg.start}-${entries.length}`;
  let entry = finalsById.get(seg.segment_id) || findByFingerprint(seg);
  if (entry) {
    finalsById.set(seg.segment_id, entry); // alias (e.g. stored id)
    const keepId = entry.seg.segment_id;
    const keepSpeaker = entry.seg.speaker;
    const relabelled = entry.seg.relabelled; // a diarization relabel outranks a re-sent label
    Object.assign(entry.seg, seg, {
      segment_id: keepId, relabelled,
      speaker: relabelled ? keepSpeaker : (seg.speaker ?? keepSpeaker),
    });
    fillSegmentEl(entry);
    markSpeakerRuns();
    return entry;
  }
  entry = buildSegmentEl(seg);
  fillSegmentEl(entry);
  let idx = entries.length;
  while (idx > 0 && entries[idx - 1].seg.start > seg.start) idx--;
  const before = idx < entries.length ? entries[idx].el : null;
  entries.splice(idx, 0, entry);
  vx.finals.splice(idx, 0, seg);
  ui.transcript.insertBefore(entry.el, before);
  finalsById.set(seg.segment_id, entry);
  markSpeakerRuns();
  updateEmpty();
  return entry;
}

/** Hide the speaker label on consecutive segments by the same speaker. */
function markSpeakerRuns() {
  for (let i = 0; i < entries.length; i++) {
    const prev = i > 0 ? entries[i - 1].seg.speaker : undefined;
    entries[i].el.classList.toggle("cont", i > 0 && prev !== null && prev === entries[i].seg.speaker);
  }
}

function renderPartial() {
  const open = [...partials.values()].sort((a, b) => (Number(a.start) || 0) - (Number(b.start) || 0));
  const text = open.map((p) => (p.text || "").trim()).filter(Boolean).join(" ");
  vx.partial = text;
  ui.partial.textContent = text;
  ui.partial.hidden = !text;
  const spk = open.length === 1 && open[0].speaker ? String(open[0].speaker) : "";
  if (spk) ui.partial.style.setProperty("--spk", speakerColor(spk));
  else ui.partial.style.removeProperty("--spk");
  updateEmpty();
}

function autoScroll() {
  if (stickToBottom) ui.scroller.scrollTop = ui.scroller.scrollHeight;
  else ui.jump.hidden = false;
}

function onScroll() {
  const el = ui.scroller;
  stickToBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 32;
  if (stickToBottom) ui.jump.hidden = true;
}

// ------------------------------------------------------------------ server messages

function handleServerText(text, source) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  if (!msg || typeof msg !== "object" || typeof msg.type !== "string") return;
  handleServerMessage(msg, source);
}

function handleServerMessage(msg, source) {
  const d = msg.data && typeof msg.data === "object" ? msg.data : {};
  switch (msg.type) {
    case "transcription": onTranscription(d); break;
    case "status": onStatus(d, source); break;
    case "diarization": onDiarization(d); break;
    case "error": onServerError(d); break;
    case "summary": onSummary(d); break;
    default: break; // ping and unknown types
  }
}

function onTranscription(d) {
  const id = d.segment_id === undefined || d.segment_id === null ? "" : String(d.segment_id);
  if (d.is_final) {
    partials.delete(id);
    upsertFinal(toSegment(d));
    renderPartial();
  } else {
    if (!id || finalsById.has(id)) return; // late partial for a closed segment
    partials.set(id, d);
    renderPartial();
  }
  autoScroll();
}

function onStatus(d, source) {
  vx.lastStatus = d;
  if (session && session.admission && d.message === "receiving audio") session.admission.resolve();
  if ("lag_seconds" in d) setLag(d.lag_seconds);
  switch (d.status) {
    case "completed":
      resolveCompletion(true);
      setTranscriptStatus("completed");
      if (vx.mode === "watch") finishWatching();
      break;
    case "failed":
      setTranscriptStatus("failed");
      showBanner(`Transcription failed${d.message ? `: ${d.message}` : "."}`, "error");
      resolveCompletion(false);
      if (session || vx.mode === "watch") setState("error");
      break;
    case "paused":
      if (vx.mode === "watch" && vx.state === "live") setState("paused");
      break;
    case "processing":
      if (vx.mode === "watch" && vx.state === "paused") setState("live");
      break;
    default:
      break;
  }
}

/**
 * A speaker turn, or a correction. A message naming `segment_ids` relabels exactly those segments;
 * a turn relabels the segments whose middle falls inside it (a turn grazing a segment's edge does not).
 */
function onDiarization(d) {
  const label = d.speaker ?? d.speaker_id;
  if (label === undefined || label === null) return;
  const from = Number(d.start_time);
  const to = Number(d.end_time);
  const ids = Array.isArray(d.segment_ids) ? d.segment_ids.map(String) : [];
  if (!ids.length && (!isFinite(from) || !isFinite(to))) return;
  for (const entry of entries) {
    const s = entry.seg;
    const mid = (s.start + s.end) / 2;
    const hit = ids.length ? ids.includes(String(s.segment_id)) || ids.some((i) => finalsById.get(i) === entry)
      : mid >= from && mid <= to;
    if (hit) s.relabelled = true;
    if (hit && s.speaker !== String(label)) {
      s.speaker = String(label);
      fillSegmentEl(entry);
    }
  }
  markSpeakerRuns();
}

function onServerError(d) {
  const code = d.code || "ERROR";
  if (session && session.admission && (code === "OVERLOADED" || code === "RATE_LIMITED")) {
    session.admission.reject(new ApiError(d.message || code, { code, retryAfter: d.details && d.details.retry_after_s }));
    return; // startWebSocketPublishing says it is retrying
  }
  if (code === "ALREADY_STARTED" && d.recoverable !== false) return; // harmless (start after WebRTC)
  const recoverable = d.recoverable !== false;
  showBanner(`Server error (${code}): ${d.message || "unknown error"}`, recoverable ? "warning" : "error");
  if (!recoverable && (session || vx.mode === "watch")) {
    resolveCompletion(false);
    setState("error");
  }
}

function onSummary(d) {
  vx.summary = d;
  ui.summaryText.textContent = d.summary || "";
  const lists = [["Topics", d.topics], ["Key points", d.key_points], ["Action items", d.action_items]];
  ui.summaryLists.replaceChildren(...lists
    .filter(([, items]) => Array.isArray(items) && items.length)
    .map(([title, items]) => h("div", { class: "summary-block" },
      h("h3", {}, title), h("ul", {}, items.map((it) => h("li", {}, String(it)))))));
  ui.summary.hidden = false;
}

function waitForCompletion(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      completionWaiters = completionWaiters.filter((w) => w !== waiter);
      resolve(false);
    }, ms);
    const waiter = (ok) => { clearTimeout(timer); resolve(ok); };
    completionWaiters.push(waiter);
  });
}

function resolveCompletion(ok) {
  const waiters = completionWaiters;
  completionWaiters = [];
  for (const w of waiters) w(ok);
}

// ------------------------------------------------------------------ WebSocket subscription

function wsUrl(id) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/v1/transcripts_websocket/${enc(id)}`;
}

/** Subscribe to a transcript's live messages; resolves true once open. */
function connectSubscriber(id) {
  closeSubscriber();
  const s = { id, ws: null, closedByUs: false, retries: 0, everOpened: false, timer: 0 };
  sub = s;
  return openSubscriberSocket(s);
}

function openSubscriberSocket(s) {
  return new Promise((resolve) => {
    let settled = false;
    let timer = 0;
    const done = (ok) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(ok);
    };
    let ws;
    try {
      ws = new WebSocket(wsUrl(s.id));
    } catch (e) {
      done(false);
      return;
    }
    ws.binaryType = "arraybuffer";
    s.ws = ws;
    vx.ws = ws;
    timer = setTimeout(() => {
      if (ws.readyState !== WebSocket.OPEN) {
        try { ws.close(); } catch { /* ignore */ }
        done(false);
      }
    }, WS_OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      const reconnected = s.everOpened;
      s.everOpened = true;
      s.retries = 0;
      done(true);
      onSubscriberOpen(s, reconnected);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") handleServerText(ev.data, "ws");
    };
    ws.onclose = () => {
      done(false);
      if (sub !== s || s.closedByUs || s.ws !== ws || !s.everOpened) return;
      onSubscriberLost(s);
    };
  });
}

function closeSubscriber() {
  const s = sub;
  sub = null;
  if (!s) return;
  s.closedByUs = true;
  clearTimeout(s.timer);
  if (s.ws) {
    try { s.ws.close(1000); } catch { /* ignore */ }
  }
  if (vx.ws === s.ws) vx.ws = null;
}

function subscriberOpen() {
  return !!(sub && sub.ws && sub.ws.readyState === WebSocket.OPEN);
}

/** Called on every (re)open: a WebSocket publisher re-declares its audio after a reconnect. */
function onSubscriberOpen(s, reconnected) {
  if (!reconnected) return;
  clearBanner("reconnect");
  if (session && session.mode === "websocket" && session.startParams && !session.stopping) {
    sendWs({ action: "start", params: session.startParams });
    if (vx.state === "paused") sendWs({ action: "pause", params: {} });
  }
}

/** The live socket dropped unexpectedly: reconnect with backoff while it is still needed. */
function onSubscriberLost(s) {
  const needed = session !== null || (vx.mode === "watch" && vx.state !== "idle");
  if (!needed) return;
  if (s.retries >= MAX_RECONNECTS) {
    showBanner(UNREACHABLE_MSG, "error", "unreachable");
    setState("error");
    resolveCompletion(false);
    return;
  }
  const delay = Math.min(10000, 500 * 2 ** s.retries);
  s.retries += 1;
  showBanner("Lost the live connection to the server — reconnecting…", "warning", "reconnect");
  s.timer = setTimeout(async () => {
    if (sub !== s || s.closedByUs) return;
    const ok = await openSubscriberSocket(s);
    if (!ok && sub === s && !s.closedByUs) onSubscriberLost(s);
  }, delay);
}

function sendWs(obj) {
  if (!subscriberOpen()) return false;
  sub.ws.send(JSON.stringify(obj));
  return true;
}

// ------------------------------------------------------------------ microphone & level meter

function micConstraints() {
  const vp = ui.vp.checked;
  return { echoCancellation: vp, noiseSuppression: vp, autoGainControl: vp, channelCount: { ideal: 1 } };
}

/** getUserMedia + level meter. Throws DOMException-like errors (NotAllowedError, ...). */
async function acquireMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    const e = new Error("Microphone access needs a secure page (https:// or localhost).");
    e.name = "InsecureContextError";
    throw e;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraints(), video: false });
  const track = stream.getAudioTracks()[0];
  const mic = { stream, track, ctx: null, source: null, analyser: null, raf: 0, released: false };
  track.addEventListener("ended", () => {
    if (!mic.released && session && session.mic === mic && !session.stopping) {
      showBanner("The microphone was disconnected. Press Stop, then Start again.", "error");
    }
  });
  startMeter(mic);
  return mic;
}

function startMeter(mic) {
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    mic.ctx = new Ctx();
    mic.ctx.resume().catch(() => {});
    mic.source = mic.ctx.createMediaStreamSource(mic.stream);
    mic.analyser = mic.ctx.createAnalyser();
    mic.analyser.fftSize = 1024;
    mic.source.connect(mic.analyser);
  } catch (e) {
    console.warn("level meter unavailable", e);
    return;
  }
  const buf = new Float32Array(mic.analyser.fftSize);
  let shown = 0;
  const tick = () => {
    if (mic.released) return;
    mic.analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    const rms = Math.sqrt(sum / buf.length);
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    const level = Math.max(0, Math.min(1, (db + 60) / 60));
    shown = level > shown ? level : shown * 0.9 + level * 0.1; // fast attack, slow release
    setLevel(shown);
    mic.raf = requestAnimationFrame(tick);
  };
  mic.raf = requestAnimationFrame(tick);
}

function setLevel(level) {
  const pct = Math.round(level * 100);
  ui.levelFill.style.clipPath = `inset(0 ${100 - level * 100}% 0 0)`;
  ui.level.dataset.level = String(pct);
  ui.level.setAttribute("aria-valuenow", String(pct));
  ui.level.classList.toggle("hot", level > 0.9);
}

function releaseMic(mic) {
  if (!mic || mic.released) return;
  mic.released = true;
  cancelAnimationFrame(mic.raf);
  for (const t of mic.stream.getTracks()) t.stop();
  if (mic.ctx) mic.ctx.close().catch(() => {});
  setLevel(0);
}

function micErrorMessage(e) {
  switch (e && e.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "Microphone permission was denied. Allow microphone access for this site " +
        "(the icon in the address bar), then press Start again.";
    case "NotFoundError":
    case "DevicesNotFoundError":
      return "No microphone was found. Connect one and press Start again.";
    case "NotReadableError":
    case "TrackStartError":
      return "The microphone could not be opened — another application may be using it.";
    case "OverconstrainedError":
      return "The microphone does not support the requested settings. Try toggling Voice processing.";
    case "InsecureContextError":
      return e.message;
    default:
      return `Could not open the microphone: ${(e && e.message) || e}`;
  }
}

// ------------------------------------------------------------------ PCM capture (WebSocket fallback)

/** Float32 -> Int16 LE frames, decimating by an integer factor k. Also inlined into the worklet. */
function createPcmEncoder(k, frameSamples, emit) {
  let out = new DataView(new ArrayBuffer(frameSamples * 2));
  let n = 0;
  let acc = 0;
  let accN = 0;
  return function push(samples) {
    for (let i = 0; i < samples.length; i++) {
      acc += samples[i];
      if (++accN < k) continue;
      let s = acc / k;
      acc = 0;
      accN = 0;
      s = s < -1 ? -1 : s > 1 ? 1 : s;
      out.setInt16(n * 2, Math.round(s < 0 ? s * 0x8000 : s * 0x7fff), true);
      if (++n === frameSamples) {
        emit(out.buffer);
        out = new DataView(new ArrayBuffer(frameSamples * 2));
        n = 0;
      }
    }
  };
}

const WORKLET_SRC = `
const createPcmEncoder = ${createPcmEncoder.toString()};
class VoxlanePcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.push = createPcmEncoder(o.decimate || 1, o.frameSamples || 1600,
      (buf) => this.port.postMessage(buf, [buf]));
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input[0]) this.push(input[0]);
    return true;
  }
}
registerProcessor("voxlane-pcm-capture", VoxlanePcmCapture);
`;

/** Wire mic -> (AudioWorklet | ScriptProcessor) -> 100 ms Int16 frames -> sendPcm. */
async function startPcmCapture(sess) {
  const mic = sess.mic;
  if (!mic.ctx) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    mic.ctx = new Ctx();
  }
  const ctx = mic.ctx;
  await ctx.resume().catch(() => {});
  if (!mic.source) mic.source = ctx.createMediaStreamSource(mic.stream);
  const k = Math.max(1, Math.ceil(ctx.sampleRate / 48000));
  const rate = Math.round(ctx.sampleRate / k);
  const frameSamples = Math.round((rate * FRAME_MS) / 1000);
  const sink = ctx.createGain();
  sink.gain.value = 0;
  sink.connect(ctx.destination);
  let node = null;
  if (ctx.audioWorklet && typeof AudioWorkletNode === "function") {
    try {
      const url = URL.createObjectURL(new Blob([WORKLET_SRC], { type: "application/javascript" }));
      try { await ctx.audioWorklet.addModule(url); } finally { URL.revokeObjectURL(url); }
      node = new AudioWorkletNode(ctx, "voxlane-pcm-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
        channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers",
        processorOptions: { decimate: k, frameSamples },
      });
      node.port.onmessage = (ev) => sendPcm(sess, ev.data);
    } catch (e) {
      console.warn("AudioWorklet unavailable, using ScriptProcessor", e);
      node = null;
    }
  }
  if (!node) {
    node = ctx.createScriptProcessor(4096, 1, 1);
    const push = createPcmEncoder(k, frameSamples, (buf) => sendPcm(sess, buf));
    node.onaudioprocess = (ev) => push(ev.inputBuffer.getChannelData(0));
  }
  mic.source.connect(node);
  node.connect(sink);
  sess.pcm = { node, sink, rate };
  return rate;
}

function stopPcmCapture(sess) {
  const p = sess.pcm;
  if (!p) return;
  sess.pcm = null;
  try { p.node.disconnect(); } catch { /* ignore */ }
  try { p.sink.disconnect(); } catch { /* ignore */ }
  if (p.node.port) p.node.port.onmessage = null;
  p.node.onaudioprocess = null;
}

/** Send one binary PCM frame on the WebSocket (buffered until "start" was sent). */
function sendPcm(sess, buf) {
  if (session !== sess || sess.stopping || sess.cancelled) return;
  if (vx.state === "paused") return;
  if (!sess.publishing) {
    sess.pending.push(buf);
    if (sess.pending.length > 50) sess.pending.shift();
    return;
  }
  if (!subscriberOpen()) return;
  if (sub.ws.bufferedAmount > MAX_WS_BUFFERED) {
    if (!sess.warnedBackpressure) {
      sess.warnedBackpressure = true;
      showBanner("The network is too slow for live audio; some audio is being dropped.", "warning");
    }
    return;
  }
  sub.ws.send(buf);
}

async function startWebSocketPublishing(sess) {
  setMode("websocket");
  sess.mode = "websocket";
  sess.publishing = false;
  if (!subscriberOpen() || sub.id !== sess.transcriptId) {
    const ok = await connectSubscriber(sess.transcriptId);
    checkCancelled(sess);
    if (!ok) throw new ApiError(UNREACHABLE_MSG, { unreachable: true });
  }
  if (!sess.mic) {
    sess.mic = await acquireMic();
    checkCancelled(sess);
  }
  const rate = await startPcmCapture(sess);
  checkCancelled(sess);
  sess.startParams = { format: "pcm_s16le", sample_rate: rate, channels: 1 };
  // audio waits (buffered) until the server admits the stream: a refused start would drop it
  for (;;) {
    const admitted = new Promise((resolve, reject) => { sess.admission = { resolve, reject }; });
    if (!sendWs({ action: "start", params: sess.startParams })) {
      sess.admission = null;
      throw new ApiError(UNREACHABLE_MSG, { unreachable: true });
    }
    try {
      await withTimeout(admitted, WEBRTC_CONNECT_TIMEOUT_MS, "the server's answer to start");
      break;
    } catch (e) {
      const wait = busyRetrySeconds(e);
      if (wait === null) throw e;
      showBanner(`The server is busy (${e.message}). Trying again in ${Math.round(wait)} s…`, "info", "busy");
      await sleepUnlessCancelled(sess, wait * 1000);
    } finally {
      sess.admission = null;
    }
  }
  clearBanner("busy");
  sess.publishing = true;
  const pending = sess.pending.splice(0);
  for (const buf of pending) sendPcm(sess, buf);
}

// ------------------------------------------------------------------ WebRTC

function waitIceGathering(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(finish, ms);
    function finish() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") finish();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function isPcConnected(pc) {
  if (pc.connectionState) return pc.connectionState === "connected";
  return pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed";
}

function isPcFailed(pc) {
  return pc.connectionState === "failed" || pc.connectionState === "closed" ||
    pc.iceConnectionState === "failed" || pc.iceConnectionState === "closed";
}

function waitPcConnected(pc, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error("connection timed out")); }, Math.max(0, ms));
    function cleanup() {
      clearTimeout(timer);
      pc.removeEventListener("connectionstatechange", check);
      pc.removeEventListener("iceconnectionstatechange", check);
    }
    function check() {
      if (isPcConnected(pc)) { cleanup(); resolve(); } else if (isPcFailed(pc)) {
        cleanup();
        reject(new Error(`connection ${pc.connectionState || pc.iceConnectionState}`));
      }
    }
    pc.addEventListener("connectionstatechange", check);
    pc.addEventListener("iceconnectionstatechange", check);
    check();
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Connect an empty sendonly transceiver + control channel; the mic is attached later. */
async function connectPeer(sess) {
  if (typeof RTCPeerConnection !== "function") throw new Error("this browser does not support WebRTC");
  const pc = new RTCPeerConnection({ iceServers: [] });
  sess.pc = pc;
  vx.pc = pc;
  sess.transceiver = pc.addTransceiver("audio", { direction: "sendonly" });
  const dc = pc.createDataChannel("control");
  sess.dc = dc;
  vx.dc = dc;
  dc.onopen = () => {
    if (sess.wantStart && !sess.startSent) sendStartOnChannel(sess);
  };
  dc.onmessage = (ev) => {
    if (typeof ev.data === "string") handleServerText(ev.data, "dc");
  };
  pc.addEventListener("connectionstatechange", () => onPeerStateChange(sess));

  await pc.setLocalDescription(await pc.createOffer());
  await waitIceGathering(pc, ICE_GATHER_TIMEOUT_MS);
  checkCancelled(sess);
  const answer = await api("POST", `/v1/transcripts_webrtc/${enc(sess.transcriptId)}/offer`,
    { sdp: pc.localDescription.sdp, type: "offer" });
  checkCancelled(sess);
  if (!answer || !answer.sdp) throw new Error("the server sent no SDP answer");
  await pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp });
  await waitPcConnected(pc, WEBRTC_CONNECT_TIMEOUT_MS);
}

/**
 * Offer until the server admits the stream: a server at capacity refuses the offer with a retry hint, and
 * the microphone is not opened (nothing is captured, so nothing is lost) until it is admitted.
 */
async function connectPeerWhenAdmitted(sess) {
  for (;;) {
    try {
      await withTimeout(connectPeer(sess), WEBRTC_CONNECT_TIMEOUT_MS, "WebRTC connection");
      clearBanner("busy");
      return;
    } catch (e) {
      const wait = busyRetrySeconds(e);
      if (wait === null) throw e;
      teardownPeer(sess);
      showBanner(`The server is busy (${e.message}). Trying again in ${Math.round(wait)} s…`, "info", "busy");
      await sleepUnlessCancelled(sess, wait * 1000);
    }
  }
}

function sleepUnlessCancelled(sess, ms) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      if (sess.cancelled) reject(new Cancelled());
      else if (Date.now() - started >= ms) resolve();
      else setTimeout(tick, 200);
    };
    tick();
  });
}

function sendStartOnChannel(sess) {
  if (sess.dc && sess.dc.readyState === "open") {
    sess.dc.send(JSON.stringify({ action: "start", params: {} }));
    sess.startSent = true;
  }
}

/** A live WebRTC session that fails mid-way continues over the WebSocket. */
function onPeerStateChange(sess) {
  const pc = sess.pc;
  if (!pc || session !== sess || sess.mode !== "webrtc" || !sess.established) return;
  if (pc.connectionState !== "failed") return;
  if (sess.stopping) { resolveCompletion(false); return; }
  showBanner("The WebRTC connection was lost — continuing over the WebSocket.", "warning");
  teardownPeer(sess);
  startWebSocketPublishing(sess).catch((e) => failSession(sess, e));
}

function teardownPeer(sess) {
  if (sess.dc) {
    sess.dc.onopen = null;
    sess.dc.onmessage = null;
    try { sess.dc.close(); } catch { /* ignore */ }
  }
  if (sess.pc) {
    try { sess.pc.close(); } catch { /* ignore */ }
  }
  sess.dc = null;
  sess.pc = null;
  sess.transceiver = null;
  vx.pc = null;
  vx.dc = null;
}

// ------------------------------------------------------------------ capture session

function checkCancelled(sess) {
  if (sess.cancelled || session !== sess) throw new Cancelled();
}

function defaultName() {
  const d = new Date();
  return `Recording ${d.toLocaleDateString(undefined, { dateStyle: "medium" })} ${
    d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}`;
}

/** Reuse the open transcript if it was never started, else create a new one. */
async function ensureFreshTranscript() {
  const t = vx.transcript;
  if (t && t.status === "created" && entries.length === 0) return t;
  const created = await api("POST", API, { name: defaultName() });
  resetView();
  return created;
}

async function startCapture() {
  if (session && vx.state !== "error") return;
  if (session) teardownSession(session);
  clearBanner();
  if (vx.mode === "watch") { closeSubscriber(); setMode(null); }
  const sess = {
    transcriptId: null, mode: null, pc: null, dc: null, transceiver: null, mic: null, pcm: null,
    pending: [], publishing: false, startParams: null, cancelled: false, stopping: false,
    established: false, wantStart: false, startSent: false,
  };
  session = sess;
  setState("connecting");
  try {
    const t = await ensureFreshTranscript();
    checkCancelled(sess);
    sess.transcriptId = t.id;
    setTranscript(t);
    refreshList();
    const subReady = connectSubscriber(t.id); // in parallel with WebRTC
    try {
      setMode("webrtc");
      sess.mode = "webrtc";
      await connectPeerWhenAdmitted(sess);
      checkCancelled(sess);
      sess.mic = await acquireMic();
      checkCancelled(sess);
      await sess.transceiver.sender.replaceTrack(sess.mic.track);
      checkCancelled(sess);
      sess.established = true;
      sess.wantStart = true;
      sendStartOnChannel(sess);
      subReady.then((ok) => {
        if (!ok && session === sess && !sess.stopping) {
          showBanner("The live updates socket could not connect; showing results from the WebRTC channel only.",
            "warning");
        }
      });
    } catch (e) {
      if (e instanceof Cancelled || MIC_ERRORS.has(e && e.name)) throw e;
      console.warn("WebRTC failed, falling back to WebSocket", e);
      teardownPeer(sess);
      checkCancelled(sess);
      showBanner(`WebRTC could not connect (${(e && e.message) || e}). ` +
        "Falling back to WebSocket streaming — transcription continues.", "warning", "fallback");
      await subReady;
      checkCancelled(sess);
      await startWebSocketPublishing(sess);
    }
    checkCancelled(sess);
    setTranscriptStatus("live");
    setState("live");
    refreshList();
  } catch (e) {
    if (e instanceof Cancelled) {
      teardownSession(sess); // releases a mic that was granted after Stop was pressed
      return;
    }
    failSession(sess, e);
  }
}

/** Tear everything down after an unrecoverable start/stream error, with a clear message. */
function failSession(sess, e) {
  if (session !== sess) return;
  console.error(e);
  teardownSession(sess);
  session = null;
  if (MIC_ERRORS.has(e && e.name)) showBanner(micErrorMessage(e), "error", "mic");
  else if (e && e.unreachable) showBanner(UNREACHABLE_MSG, "error", "unreachable");
  else showBanner(`Could not start transcription: ${(e && e.message) || e}`, "error");
  setMode(null);
  setState("error");
  refreshList();
}

function teardownSession(sess) {
  sess.cancelled = true;
  stopPcmCapture(sess);
  teardownPeer(sess);
  releaseMic(sess.mic);
  sess.mic = null;
}

function togglePause() {
  const sess = session;
  if (!sess) return;
  const controlParams = sess.mode === "websocket" ? sess.startParams : {};
  if (vx.state === "live") {
    sendControl(sess, { action: "pause", params: {} });
    if (sess.mic) sess.mic.track.enabled = false; // nothing leaves the mic while paused
    setState("paused");
  } else if (vx.state === "paused") {
    if (sess.mic) sess.mic.track.enabled = true;
    sendControl(sess, { action: "start", params: controlParams || {} });
    setState("live");
  }
}

/** Control actions go on the data channel (WebRTC) or the WebSocket (fallback). */
function sendControl(sess, msg) {
  if (sess.mode === "webrtc") {
    if (sess.dc && sess.dc.readyState === "open") {
      sess.dc.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }
  return sendWs(msg);
}

/** Stop: cancel while connecting, else flush (stop -> wait for "completed" or timeout) and close. */
async function stopCapture() {
  const sess = session;
  if (!sess || sess.stopping) return;
  if (vx.state === "connecting" || vx.state === "error" || !sess.established && sess.mode !== "websocket") {
    teardownSession(sess);
    session = null;
    setMode(null);
    setState("idle");
    refreshList();
    return;
  }
  sess.stopping = true;
  setState("stopping");
  const completed = waitForCompletion(STOP_TIMEOUT_MS);
  // Stop the audio first so nothing follows "stop"; give in-flight RTP a moment.
  stopPcmCapture(sess);
  releaseMic(sess.mic);
  if (sess.mode === "webrtc") await sleep(STOP_TAIL_MS);
  const sent = sendControl(sess, { action: "stop", params: {} });
  const ok = sent ? await completed : (resolveCompletion(false), false);
  teardownPeer(sess);
  sess.mic = null;
  sess.cancelled = true;
  if (session === sess) session = null;
  partials.clear();
  renderPartial();
  setMode(null);
  setState(vx.state === "error" ? "error" : "idle");
  if (!ok && vx.state !== "error") {
    showBanner("The server did not confirm the end of the transcript in time; the last words may be missing.",
      "warning");
  }
  await reloadTranscript(sess.transcriptId);
  refreshList();
}

// ------------------------------------------------------------------ opening / watching transcripts

/** Re-fetch a transcript's metadata and merge its stored segments into the view. */
async function reloadTranscript(id) {
  if (!id || vx.transcriptId !== id) return;
  try {
    const t = await api("GET", `${API}${enc(id)}`);
    if (vx.transcriptId !== id) return;
    setTranscript(t);
    for (const seg of t.segments || []) upsertFinal(toSegment(seg, true));
  } catch (e) {
    console.warn("reload failed", e);
  }
}

async function openTranscript(id) {
  if (session) {
    showBanner("Stop the current recording before opening another transcript.", "info");
    return;
  }
  const token = ++openToken;
  let t;
  try {
    t = await api("GET", `${API}${enc(id)}`);
  } catch (e) {
    if (token === openToken) reportError(e, "Could not open the transcript");
    return;
  }
  if (token !== openToken || session) return;
  closeSubscriber();
  resetView();
  setMode(null);
  setTranscript(t);
  for (const seg of t.segments || []) upsertFinal(toSegment(seg, true));
  autoScroll();
  if (t.status === "live") {
    setMode("watch");
    setState("connecting");
    const ok = await connectSubscriber(t.id);
    if (token !== openToken || vx.mode !== "watch") return;
    if (ok) {
      setState("live");
    } else {
      showBanner(UNREACHABLE_MSG, "error", "unreachable");
      setState("error");
    }
  } else {
    setState("idle");
  }
}

/** The watched transcript completed: stop watching, refresh metadata. */
function finishWatching() {
  partials.clear();
  renderPartial();
  setMode(null);
  setState("idle");
  const id = vx.transcriptId;
  reloadTranscript(id).then(() => refreshList());
}

function clearCurrent() {
  openToken++;
  closeSubscriber();
  resetView();
  setMode(null);
  setTranscript(null);
  setState("idle");
}

// ------------------------------------------------------------------ transcripts list

async function refreshList({ force = false } = {}) {
  if (!force && (list.editingId || list.confirmId)) return;
  if (list.loading) return;
  list.loading = true;
  try {
    const items = [];
    let total = 0;
    for (let p = 1; p <= list.page; p++) {
      const data = await api("GET", `${API}?page=${p}&size=${PAGE_SIZE}`);
      const pageItems = (data && Array.isArray(data.items)) ? data.items : [];
      items.push(...pageItems);
      total = data && typeof data.total === "number" ? data.total : items.length;
      if (pageItems.length < PAGE_SIZE) break;
    }
    list.items = items;
    list.total = total;
    clearBanner("unreachable");
    renderList();
  } catch (e) {
    // Don't let background polling hide a more specific message.
    if (ui.banner.hidden || bannerKey === "unreachable") reportError(e, "Could not load the transcripts");
  } finally {
    list.loading = false;
  }
}

function renderList() {
  if (list.editingId && !list.items.some((t) => t.id === list.editingId)) list.editingId = null;
  if (list.confirmId && !list.items.some((t) => t.id === list.confirmId)) list.confirmId = null;
  ui.list.replaceChildren(...list.items.map(renderRow));
  ui.listEmpty.hidden = list.items.length > 0;
  ui.loadMore.hidden = list.items.length >= list.total;
  // Keep the open transcript's header in sync with the list.
  const cur = vx.transcript && list.items.find((t) => t.id === vx.transcriptId);
  if (cur && !session) {
    if (cur.name !== vx.transcript.name) { vx.transcript.name = cur.name; ui.tName.textContent = cur.name; }
  }
}

function renderRow(t) {
  const li = h("li", { class: "titem", "data-id": t.id });
  if (t.id === vx.transcriptId) li.classList.add("active");
  const name = t.name || "Untitled transcript";

  if (list.editingId === t.id) {
    const input = h("input", { class: "rename-input", type: "text", value: name, maxlength: 200,
      "aria-label": "New name" });
    const form = h("form", { class: "rename-form" }, input,
      h("div", { class: "row-actions" },
        h("button", { type: "submit", class: "btn small primary" }, "Save"),
        h("button", { type: "button", class: "btn small", onclick: () => { list.editingId = null; renderList(); } },
          "Cancel")));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); renameTranscript(t.id, input.value); });
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") { list.editingId = null; renderList(); }
    });
    li.append(form);
    requestAnimationFrame(() => { input.focus(); input.select(); });
    return li;
  }

  if (list.confirmId === t.id) {
    li.classList.add("confirming");
    li.append(
      h("p", { class: "confirm-text" }, "Delete “", h("strong", {}, name), "”? This cannot be undone."),
      h("div", { class: "row-actions" },
        h("button", { type: "button", class: "btn small danger", onclick: () => deleteTranscript(t.id) },
          "Delete"),
        h("button", { type: "button", class: "btn small", onclick: () => { list.confirmId = null; renderList(); } },
          "Cancel")));
    return li;
  }

  const status = t.status || "unknown";
  li.append(
    h("button", { type: "button", class: "titem-open", title: `Open “${name}”`, onclick: () => openTranscript(t.id) },
      h("span", { class: "titem-name" }, name),
      h("span", { class: "titem-meta" },
        h("span", {}, fmtDate(t.created_at)),
        h("span", { class: "sep", "aria-hidden": "true" }, "·"),
        h("span", {}, fmtDuration(t.duration)),
        h("span", { class: `badge status-${status}` }, status))),
    h("div", { class: "row-actions" },
      h("button", { type: "button", class: "icon-btn", title: "Rename", "aria-label": `Rename “${name}”`,
        onclick: () => { list.editingId = t.id; list.confirmId = null; renderList(); } }, "✎"),
      h("button", { type: "button", class: "icon-btn danger", title: "Delete", "aria-label": `Delete “${name}”`,
        onclick: () => { list.confirmId = t.id; list.editingId = null; renderList(); } }, "✕")));
  return li;
}

function markActiveRow() {
  for (const li of ui.list.children) li.classList.toggle("active", li.dataset.id === vx.transcriptId);
}

async function renameTranscript(id, value) {
  const name = value.trim();
  if (!name) return;
  try {
    const t = await api("PATCH", `${API}${enc(id)}`, { name });
    list.editingId = null;
    if (vx.transcriptId === id) {
      vx.transcript.name = (t && t.name) || name;
      ui.tName.textContent = vx.transcript.name;
      updateDownloads();
    }
    await refreshList({ force: true });
  } catch (e) {
    reportError(e, "Could not rename the transcript");
  }
}

async function deleteTranscript(id) {
  if (session && session.transcriptId === id) {
    list.confirmId = null;
    renderList();
    showBanner("Stop the recording before deleting this transcript.", "info");
    return;
  }
  try {
    await api("DELETE", `${API}${enc(id)}`);
    list.confirmId = null;
    if (vx.transcriptId === id) clearCurrent();
    await refreshList({ force: true });
  } catch (e) {
    list.confirmId = null;
    renderList();
    reportError(e, "Could not delete the transcript");
  }
}

// ------------------------------------------------------------------ startup

function init() {
  Object.assign(ui, {
    status: $("status"), lag: $("lag"), banner: $("banner"), bannerText: $("banner-text"),
    tName: $("t-name"), tStatus: $("t-status"), tMeta: $("t-meta"), mode: $("mode"),
    start: $("start"), pause: $("pause"), stop: $("stop"), level: $("level"), levelFill: $("level-fill"),
    vp: $("voice-processing"), downloads: $("downloads"), scroller: $("scroller"), empty: $("empty"),
    transcript: $("transcript"), partial: $("partial"), jump: $("jump"), summary: $("summary"),
    summaryText: $("summary-text"), summaryLists: $("summary-lists"), list: $("transcript-list"),
    listEmpty: $("list-empty"), loadMore: $("load-more"), refresh: $("refresh"),
  });

  try { ui.vp.checked = localStorage.getItem("voxlane.voiceProcessing") === "1"; } catch { /* ignore */ }
  ui.vp.addEventListener("change", () => {
    try { localStorage.setItem("voxlane.voiceProcessing", ui.vp.checked ? "1" : "0"); } catch { /* ignore */ }
    if (session) showBanner("Voice processing changes take effect the next time you press Start.", "info");
  });

  ui.start.addEventListener("click", () => startCapture());
  ui.stop.addEventListener("click", () => stopCapture());
  ui.pause.addEventListener("click", () => togglePause());
  ui.bannerClose = $("banner-close");
  ui.bannerClose.addEventListener("click", () => clearBanner());
  ui.scroller.addEventListener("scroll", onScroll, { passive: true });
  ui.jump.addEventListener("click", () => {
    stickToBottom = true;
    ui.jump.hidden = true;
    ui.scroller.scrollTop = ui.scroller.scrollHeight;
  });
  ui.refresh.addEventListener("click", () => refreshList({ force: true }));
  ui.loadMore.addEventListener("click", () => { list.page += 1; refreshList({ force: true }); });
  for (const a of ui.downloads.querySelectorAll("a.dl")) {
    a.addEventListener("click", (ev) => { if (!vx.transcript) ev.preventDefault(); });
  }

  window.addEventListener("beforeunload", (ev) => {
    if (session && !session.stopping) { ev.preventDefault(); ev.returnValue = ""; }
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshList(); });
  setInterval(() => { if (!document.hidden) refreshList(); }, LIST_POLL_MS);

  let hashId = "";
  try { hashId = decodeURIComponent(location.hash.slice(1)); } catch { hashId = ""; }
  setState("idle");
  setTranscript(null);
  resetView();
  refreshList();
  if (hashId) openTranscript(hashId);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
