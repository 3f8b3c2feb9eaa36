// voxlane's built-in meeting room: join with a name, publish the microphone over WebRTC as this participant's
// own stream of the meeting's transcript, and show everyone's live captions under their names.
//
// The room URL carries ?meeting=<id>&key=<key>; POST /v1/meetings/{id}/join turns the key into a short-lived
// token for this meeting only. The server pins every stream the token publishes to the participant it names.
// A viewer key listens over the WebSocket; a host may also end the meeting for everyone.

const ICE_GATHER_TIMEOUT_MS = 3000;
const CONNECT_TIMEOUT_MS = 15000;
const params = new URLSearchParams(location.search);
const room = {
  meetingId: params.get("meeting"), key: params.get("key"), state: "idle", role: null, participantId: null,
  name: null, token: null, pc: null, dc: null, ws: null, mic: null, captions: new Map(), people: new Map(),
  ended: false, left: false, error: null,
};
window.room = room;

const $ = (id) => document.getElementById(id);

function setState(state) {
  room.state = state;
  $("room-state").textContent = state;
}

function banner(text) {
  $("room-banner-text").textContent = text;
  $("room-banner").hidden = !text;
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (room.token) headers.Authorization = `Bearer ${room.token}`;
  const res = await fetch(path, { method, headers, cache: "no-store",
    body: body !== undefined ? JSON.stringify(body) : undefined });
  const payload = await res.json().catch(() => null);
  if (!res.ok) {
    const err = payload && payload.error;
    throw new Error((err && err.message) || `${res.status} ${res.statusText}`);
  }
  return payload;
}

// ------------------------------------------------------------------ captions

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function personName(msg) {
  const known = room.people.get(String(msg.participant_id));
  return msg.speaker || (known && known.name) || "Someone";
}

function showCaption(msg) {
  if (!msg.segment_id || !msg.text) return;
  let li = room.captions.get(msg.segment_id);
  if (!li) {
    li = document.createElement("li");
    li.dataset.segmentId = msg.segment_id;
    li.innerHTML = '<span class="when"></span><span class="who" data-testid="who"></span><span class="text"></span>';
    $("captions").appendChild(li);
    room.captions.set(msg.segment_id, li);
  }
  li.dataset.participant = msg.participant_id == null ? "" : String(msg.participant_id);
  li.dataset.final = msg.is_final ? "true" : "false";
  li.querySelector(".when").textContent = clock(msg.start);
  li.querySelector(".who").textContent = personName(msg);
  li.querySelector(".text").textContent = msg.text;
  $("captions").scrollTop = $("captions").scrollHeight;
  notePerson(msg.participant_id, personName(msg));
}

function notePerson(id, name) {
  if (id == null || room.people.has(String(id))) return;
  room.people.set(String(id), { name });
  const li = document.createElement("li");
  li.dataset.participant = String(id);
  li.textContent = name;
  $("people").appendChild(li);
}

function onServerMessage(text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  const data = msg.data || {};
  if (msg.type === "transcription") showCaption(data);
  else if (msg.type === "error") banner(data.message || "error");
  else if (msg.type === "status" && data.status === "completed" && data.participant_id == null && !room.left) {
    meetingEnded();
  }
}

// ------------------------------------------------------------------ publishing

function waitFor(pc, done, event, ms) {
  return new Promise((resolve, reject) => {
    if (done()) { resolve(); return; }
    const timer = setTimeout(() => { pc.removeEventListener(event, check); reject(new Error(`${event} timed out`)); }, ms);
    function check() {
      if (done()) { clearTimeout(timer); pc.removeEventListener(event, check); resolve(); }
    }
    pc.addEventListener(event, check);
  });
}

async function publish(joined) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  room.pc = pc;
  const transceiver = pc.addTransceiver("audio", { direction: "sendonly" });
  const dc = pc.createDataChannel("control");
  room.dc = dc;
  dc.onmessage = (ev) => { if (typeof ev.data === "string") onServerMessage(ev.data); };
  dc.onopen = () => dc.send(JSON.stringify({ action: "start", params: {} }));
  pc.addEventListener("connectionstatechange", () => {
    if (["failed", "closed"].includes(pc.connectionState) && !room.left && !room.ended) meetingEnded();
  });
  await pc.setLocalDescription(await pc.createOffer());
  await waitFor(pc, () => pc.iceGatheringState === "complete", "icegatheringstatechange", ICE_GATHER_TIMEOUT_MS)
    .catch(() => {});
  const answer = await call("POST", new URL(joined.webrtc_offer_url).pathname,
    { type: "offer", sdp: pc.localDescription.sdp });
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  await waitFor(pc, () => pc.connectionState === "connected", "connectionstatechange", CONNECT_TIMEOUT_MS);
  // the microphone opens once the connection is up: nothing it captures is lost while connecting
  room.mic = await navigator.mediaDevices.getUserMedia({ audio: {
    echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  await transceiver.sender.replaceTrack(room.mic.getAudioTracks()[0]);
  room.micOpenedAt = performance.now();
}

function listen(joined) {
  const ws = new WebSocket(`${joined.websocket_url.replace(/^wss?:\/\/[^/]+/, location.origin.replace(/^http/, "ws"))}`
    + `?token=${encodeURIComponent(joined.token)}`);
  room.ws = ws;
  ws.onmessage = (ev) => { if (typeof ev.data === "string") onServerMessage(ev.data); };
}

// ------------------------------------------------------------------ join, leave, end

async function join(name) {
  setState("joining");
  banner("");
  const joined = await call("POST", `/v1/meetings/${encodeURIComponent(room.meetingId)}/join`,
    { name, key: room.key });
  Object.assign(room, { token: joined.token, role: joined.role, participantId: joined.participant_id, name });
  $("me").textContent = name;
  $("role").textContent = joined.role;
  $("end").hidden = joined.role !== "host";
  $("leave").hidden = joined.role === "viewer";
  $("join-panel").hidden = true;
  $("live-panel").hidden = false;
  notePerson(joined.participant_id, name);
  if (joined.role === "viewer") listen(joined);
  else await publish(joined);
  setState("live");
}

function release() {
  if (room.mic) room.mic.getTracks().forEach((t) => t.stop());
  room.mic = null;
}

async function leave() {
  if (room.left || !room.dc) return;
  room.left = true;
  setState("leaving");
  release();
  const finished = new Promise((resolve) => {
    const done = (ev) => {
      try {
        const msg = JSON.parse(ev.data);
        if (msg.type === "status" && msg.data.status === "completed"
          && String(msg.data.participant_id) === String(room.participantId)) resolve();
      } catch { /* not JSON */ }
    };
    room.dc.addEventListener("message", done);
    setTimeout(resolve, 20000);
  });
  if (room.dc.readyState === "open") room.dc.send(JSON.stringify({ action: "stop", params: {} }));
  await finished;  // this participant's last words are final and stored
  try { room.pc.close(); } catch { /* already closed */ }
  setState("left");
}

async function endMeeting() {
  setState("ending");
  await call("POST", `/v1/meetings/${encodeURIComponent(room.meetingId)}/end`);
  meetingEnded();
}

function meetingEnded() {
  if (room.ended) return;
  room.ended = true;
  release();
  setState("ended");
  banner("The meeting has ended.");
  $("leave").disabled = true;
  $("end").disabled = true;
}

function fail(e) {
  room.error = e.message || String(e);
  setState("error");
  banner(room.error);
}

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  join($("name").value.trim()).catch(fail);
});
$("leave").addEventListener("click", () => leave().catch(fail));
$("end").addEventListener("click", () => endMeeting().catch(fail));
if (!room.meetingId || !room.key) banner("This link is not a meeting's room URL.");
