// turnkit demo call page: a 1:1 WebRTC call over the turnkit signaling protocol v1.
// The newcomer (who sees a non-empty `users` list in `all-users`) makes the offer; the other side answers.
// Signaling goes through /static/turnkit-client.js: it reconnects and resumes the session by itself (the
// call keeps going while it does), and an IceWatchdog moves the call to healthy TURN nodes with an ICE
// restart when its path dies.
import { IceWatchdog, TurnkitClient } from "./turnkit-client.js";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    token: $("token"), room: $("room"), newRoom: $("new-room"), relayOnly: $("relay-only"), join: $("join"),
    share: $("share"), shareRoom: $("share-room"), error: $("error"), status: $("status"), statusText: $("status-text"),
    localVideo: $("local-video"), remoteVideo: $("remote-video"), placeholder: $("remote-placeholder"),
    mute: $("mute"), camera: $("camera"), hangup: $("hangup"),
    statIce: $("stat-ice"), statLocal: $("stat-local"), statRemote: $("stat-remote"), statRtt: $("stat-rtt"),
    statVideo: $("stat-video"), statExpiry: $("stat-expiry"),
  };

  const STATUS_TEXT = {
    idle: "Not connected",
    connecting: "Connecting…",
    waiting: "Waiting for someone to join",
    calling: "Setting up the call…",
    connected: "Connected",
    error: "Error",
  };
  const PLACEHOLDER_TEXT = {
    idle: "Join a room to start a call",
    connecting: "Connecting…",
    waiting: "Waiting for someone to join…",
    calling: "Connecting to the other side…",
    connected: "",
    error: "Not in a call",
  };
  const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
  const STATS_INTERVAL_MS = 1000;

  // Read-only view of the call for people and tests (no DOM scraping needed).
  const demo = {
    state: "idle", you: null, room: null, peer: null, relayOnly: false,
    iceServers: [], expiresAt: null, iceState: null, stats: null, errors: [], pc: null, queuedCandidates: 0,
    signaling: "closed", resumes: 0, iceRestarts: 0, recoveries: [], offerer: false,
  };
  window.turnkitDemo = demo;

  let client = null;
  let watchdog = null;
  let pc = null;
  let localStream = null;
  let pending = []; // ICE candidates that arrived before the remote description: {from, candidate}
  let statsTimer = null;
  let inbox = Promise.resolve(); // serialises message handling so async steps never interleave

  function setState(state, text) {
    demo.state = state;
    ui.status.dataset.state = state;
    ui.statusText.textContent = text || STATUS_TEXT[state];
    ui.placeholder.textContent = PLACEHOLDER_TEXT[state];
    const inCall = state !== "idle" && state !== "error";
    ui.join.disabled = inCall;
    ui.token.disabled = ui.room.disabled = ui.newRoom.disabled = ui.relayOnly.disabled = inCall;
    ui.mute.disabled = ui.camera.disabled = ui.hangup.disabled = !inCall;
  }

  function showError(message) {
    demo.errors.push(message);
    ui.error.textContent = message;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.hidden = true;
    ui.error.textContent = "";
  }

  const RELAYED = { offer: "sdp", answer: "sdp", "ice-candidate": "candidate" };

  function send(message) {
    if (!client) return;
    const field = RELAYED[message.type];
    // Relayed messages wait in the client's outbox while it reconnects; others need a live connection.
    if (field) client.relay(message.type, message.to, { [field]: message[field] });
    else client.send(message);
  }

  function rtcConfig() {
    return { iceServers: demo.iceServers, iceTransportPolicy: demo.relayOnly ? "relay" : "all" };
  }

  async function ensureMedia() {
    if (!localStream) {
      localStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      ui.localVideo.srcObject = localStream;
      syncToggles();
    }
    return localStream;
  }

  function stopMedia() {
    if (localStream) localStream.getTracks().forEach((t) => t.stop());
    localStream = null;
    ui.localVideo.srcObject = null;
  }

  // ---- peer connection -------------------------------------------------------------------------

  function createPeer(peerId) {
    const early = pending.filter((p) => p.from === peerId);
    closePeer();
    pending = early;
    demo.peer = peerId;
    pc = new RTCPeerConnection(rtcConfig());
    demo.pc = pc;
    const conn = pc;
    localStream.getTracks().forEach((track) => conn.addTrack(track, localStream));
    conn.onicecandidate = (e) => {
      send({ type: "ice-candidate", to: peerId, candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    conn.ontrack = (e) => {
      ui.remoteVideo.srcObject = e.streams[0] || new MediaStream([e.track]);
      ui.placeholder.hidden = true;
    };
    conn.oniceconnectionstatechange = () => {
      demo.iceState = conn.iceConnectionState;
      ui.statIce.textContent = conn.iceConnectionState;
    };
    conn.onconnectionstatechange = () => {
      if (conn !== pc) return;
      const s = conn.connectionState;
      if (s === "connected") setState("connected");
      else if (s === "failed" && watchdog && watchdog.restarts < 3) {
        // The watchdog asks for fresh ICE servers and restarts ICE (a TURN node may have died).
        setState("calling", "Connection lost; moving the call to another relay…");
      } else if (s === "failed") {
        showError(demo.relayOnly
          ? "Call failed: no relay path. Are the TURN servers reachable and the credentials valid?"
          : "Call failed: no network path between the peers (try again with TURN relays reachable).");
        setState("waiting", "Call failed");
      }
    };
    statsTimer = setInterval(() => collectStats(conn).catch(() => {}), STATS_INTERVAL_MS);
    watchdog = new IceWatchdog(conn, client, {
      // The side that made the first offer makes the restart offer (no glare); the other side only
      // refreshes its ICE servers, and answers the restart offer with them.
      restart: async () => {
        if (conn !== pc) return;
        demo.iceRestarts += 1;
        if (!demo.offerer) return;
        const offer = await conn.createOffer({ iceRestart: true });
        await conn.setLocalDescription(offer);
        send({ type: "offer", to: peerId, sdp: description(conn.localDescription) });
      },
      onRecovered: (ms) => demo.recoveries.push(ms),
      onIceServers: (fresh) => applyIceServers(fresh.iceServers, fresh.expiresAt),
    });
    return conn;
  }

  function closePeer() {
    watchdog = null;
    if (statsTimer) clearInterval(statsTimer);
    statsTimer = null;
    if (pc) pc.close();
    pc = demo.pc = null;
    demo.peer = null;
    demo.iceState = null;
    demo.stats = null;
    pending = [];
    ui.remoteVideo.srcObject = null;
    ui.placeholder.hidden = false;
    [ui.statIce, ui.statLocal, ui.statRemote, ui.statRtt, ui.statVideo].forEach((el) => { el.textContent = "–"; });
  }

  async function addCandidate(candidate) {
    try {
      await pc.addIceCandidate(candidate === null ? undefined : candidate);
    } catch (err) {
      if (candidate !== null) showError(`Could not use a remote ICE candidate: ${err.message}`);
    }
  }

  async function flushCandidates() {
    const queued = pending.filter((p) => p.from === demo.peer);
    pending = [];
    for (const p of queued) await addCandidate(p.candidate);
  }

  function description(d) {
    return { type: d.type, sdp: d.sdp };
  }

  // ---- signaling messages (server -> client), one handler per type -----------------------------

  const handlers = {
    "all-users": async (m) => {
      if (m.resumed && pc) {
        // Same peer id and room after a signaling reconnect: the call never stopped.
        demo.resumes += 1;
        applyIceServers(m.iceServers, m.expiresAt);
        return;
      }
      if (pc) closePeer(); // a fresh session (the old one could not be resumed): start over
      demo.offerer = m.users.length > 0;
      demo.you = m.you;
      demo.room = m.room;
      applyIceServers(m.iceServers, m.expiresAt);
      ui.shareRoom.textContent = m.room;
      ui.share.hidden = false;
      setState("waiting");
      if (m.users.length > 0) {
        const conn = createPeer(m.users[0]);
        setState("calling");
        const offer = await conn.createOffer();
        await conn.setLocalDescription(offer);
        send({ type: "offer", to: demo.peer, sdp: description(conn.localDescription) });
      }
    },
    "user-joined": async (m) => {
      setState("calling", "Someone joined, setting up the call…");
      demo.peer = demo.peer || m.id;
    },
    offer: async (m) => {
      if (!pc || demo.peer !== m.from) createPeer(m.from);
      else if (["disconnected", "failed"].includes(pc.iceConnectionState)) {
        // An ICE restart offer: answer it with fresh ICE servers (healthy nodes only).
        const fresh = await client.iceServers();
        applyIceServers(fresh.iceServers, fresh.expiresAt);
      }
      if (demo.state !== "connected") setState("calling");
      await pc.setRemoteDescription(m.sdp);
      await flushCandidates();
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      send({ type: "answer", to: m.from, sdp: description(pc.localDescription) });
    },
    answer: async (m) => {
      if (!pc || demo.peer !== m.from) return;
      await pc.setRemoteDescription(m.sdp);
      await flushCandidates();
    },
    "ice-candidate": async (m) => {
      if (pc && demo.peer === m.from && pc.remoteDescription) await addCandidate(m.candidate);
      else {
        pending.push({ from: m.from, candidate: m.candidate });
        demo.queuedCandidates += 1;
      }
    },
    "user-left": async (m) => {
      if (m.id !== demo.peer) return;
      closePeer();
      setState("waiting", "The other side left; waiting for someone to join");
    },
    "ice-servers": async (m) => {
      applyIceServers(m.iceServers, m.expiresAt);
    },
    error: async (m) => {
      if (m.code === "resume-failed") return; // the client joins again by itself ("rejoined")
      showError(`Server: ${m.message} (${m.code}${m.ref ? `, in ${m.ref}` : ""})`);
      if (m.code === "room-full" && demo.state === "connecting") {
        hangUp();
        setState("error", "Room is full");
      }
    },
  };

  function applyIceServers(servers, expiresAt) {
    demo.iceServers = servers || [];
    demo.expiresAt = expiresAt || null;
    ui.statExpiry.textContent = expiresAt ? `valid until ${new Date(expiresAt * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}` : "–";
    if (pc) pc.setConfiguration(rtcConfig());
  }

  function onMessage(message) {
    const handler = handlers[message.type];
    if (!handler) return; // newer server, unknown event: ignore
    inbox = inbox.then(() => handler(message)).catch((err) => showError(`${message.type}: ${err.message || err}`));
  }

  // ---- user actions ----------------------------------------------------------------------------

  async function explainRefusal(token) {
    // Browsers hide the HTTP 401 body of a refused WebSocket upgrade; the HTTP API shares the auth check.
    try {
      const r = await fetch("/api/ice-servers", { headers: { Authorization: `Bearer ${token}` } });
      if (!r.ok) {
        const body = await r.json().catch(() => ({}));
        return body.error ? `Signaling refused the token: ${body.error}` : `Signaling refused the connection (HTTP ${r.status})`;
      }
    } catch {
      // fall through to the generic message
    }
    return "Could not reach the signaling server";
  }

  async function join() {
    clearError();
    const token = ui.token.value.trim();
    const room = ui.room.value.trim();
    if (!token) return showError("Paste an access token (JWT) first");
    if (!ROOM_RE.test(room)) return showError("Room names are 1–64 letters, digits, '-' or '_'");
    demo.relayOnly = ui.relayOnly.checked;
    setState("connecting");
    try {
      await ensureMedia();
    } catch (err) {
      setState("error", "No camera or microphone");
      return showError(`Camera/microphone: ${err.message || err.name}`);
    }
    const current = new TurnkitClient({ token });
    client = current;
    let joined = false;
    for (const type of Object.keys(handlers)) {
      current.addEventListener(type, (e) => {
        if (current === client) onMessage(e.detail);
      });
    }
    current.addEventListener("all-users", () => { joined = true; });
    current.addEventListener("state", async (e) => {
      if (current !== client) return;
      demo.signaling = e.detail.state;
      if (e.detail.state === "reconnecting" && !joined) {
        // Never got in: a refused token or no server. Say why instead of retrying forever.
        current.close();
        client = null;
        closePeer();
        stopMedia();
        setState("error", "Disconnected");
        showError(await explainRefusal(token));
      } else if (e.detail.state === "reconnecting") {
        ui.statusText.textContent = "Signaling reconnecting…";
      } else if (e.detail.state === "open" && demo.state !== "idle") {
        ui.statusText.textContent = STATUS_TEXT[demo.state];
      }
    });
    current.connect();
    current.join(room);
  }

  function hangUp() {
    closePeer();
    const current = client;
    client = null;
    if (current) current.close(); // leave-room, then close 1000: the server forgets the session
    stopMedia();
    demo.you = demo.room = null;
    ui.share.hidden = true;
    setState("idle");
  }

  function syncToggles() {
    const audio = localStream ? localStream.getAudioTracks() : [];
    const video = localStream ? localStream.getVideoTracks() : [];
    const muted = audio.length > 0 && !audio[0].enabled;
    const camOff = video.length > 0 && !video[0].enabled;
    ui.mute.textContent = muted ? "Unmute" : "Mute";
    ui.mute.classList.toggle("active", muted);
    ui.camera.textContent = camOff ? "Camera on" : "Camera off";
    ui.camera.classList.toggle("active", camOff);
    demo.muted = muted;
    demo.cameraOff = camOff;
  }

  function toggle(kind) {
    if (!localStream) return;
    const tracks = kind === "audio" ? localStream.getAudioTracks() : localStream.getVideoTracks();
    tracks.forEach((t) => { t.enabled = !t.enabled; });
    syncToggles();
  }

  function newRoomName() {
    const bytes = crypto.getRandomValues(new Uint8Array(4));
    ui.room.value = `room-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  }

  // ---- stats -----------------------------------------------------------------------------------

  async function collectStats(conn) {
    const report = await conn.getStats();
    if (conn !== pc) return; // hung up while getStats() was pending: the call's stats are gone
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) || pair;
    });
    if (!pair) {
      report.forEach((s) => {
        if (!pair && s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
      });
    }
    let video = null;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") video = s;
    });
    const local = pair ? byId.get(pair.localCandidateId) : null;
    const remote = pair ? byId.get(pair.remoteCandidateId) : null;
    demo.stats = {
      at: Date.now(),
      localCandidateType: local ? local.candidateType : null,
      localProtocol: local ? local.protocol : null,
      relayProtocol: local ? local.relayProtocol || null : null,
      remoteCandidateType: remote ? remote.candidateType : null,
      rtt: pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime : null,
      bytesSent: pair ? pair.bytesSent : 0,
      bytesReceived: pair ? pair.bytesReceived : 0,
      framesDecoded: video ? video.framesDecoded || 0 : 0,
      frameWidth: video ? video.frameWidth || 0 : 0,
      frameHeight: video ? video.frameHeight || 0 : 0,
    };
    renderStats(demo.stats);
  }

  function renderStats(s) {
    const kind = (type, proto) => (type ? `${type}${proto ? ` (${proto})` : ""}` : "–");
    ui.statLocal.textContent = kind(s.localCandidateType, s.relayProtocol || s.localProtocol);
    ui.statRemote.textContent = kind(s.remoteCandidateType, null);
    ui.statRtt.textContent = s.rtt === null ? "–" : `${(s.rtt * 1000).toFixed(1)} ms`;
    ui.statVideo.textContent = s.framesDecoded ? `${s.frameWidth}×${s.frameHeight}, ${s.framesDecoded} frames` : "–";
  }

  // ---- wiring ----------------------------------------------------------------------------------

  function prefill() {
    const params = new URLSearchParams(location.search);
    if (params.get("token")) ui.token.value = params.get("token");
    if (params.get("room")) ui.room.value = params.get("room");
    if (params.get("relay") === "1") ui.relayOnly.checked = true;
    if (params.has("token")) {
      // Keep the bearer token out of the address bar, history and screenshots.
      params.delete("token");
      const rest = params.toString();
      history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}`);
    }
    if (!ui.room.value) newRoomName();
  }

  ui.join.addEventListener("click", () => { join(); });
  ui.room.addEventListener("keydown", (e) => { if (e.key === "Enter" && !ui.join.disabled) join(); });
  ui.newRoom.addEventListener("click", newRoomName);
  ui.hangup.addEventListener("click", hangUp);
  ui.mute.addEventListener("click", () => toggle("audio"));
  ui.camera.addEventListener("click", () => toggle("video"));
  window.addEventListener("beforeunload", () => send({ type: "leave-room" }));

  prefill();
  setState("idle");
})();
