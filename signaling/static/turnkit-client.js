// turnkit-client.js: a small client for the turnkit signaling protocol (docs/signaling.md), as an ES module.
//
//   import { TurnkitClient, IceWatchdog } from "/static/turnkit-client.js";
//   const client = new TurnkitClient({ token: () => myJwt });
//   client.addEventListener("all-users", (e) => console.log(e.detail.you, e.detail.users));
//   client.addEventListener("offer", (e) => handleOffer(e.detail.from, e.detail.sdp));
//   client.connect();
//   client.join("standup-42");
//   client.relay("offer", peerId, { sdp: pc.localDescription });
//   client.close(); // hang up: leave the room and stop reconnecting
//
// Every server frame is dispatched as a CustomEvent named after its `type` (detail = the frame). The
// client also dispatches "state" (detail: "connecting" | "open" | "reconnecting" | "closed"),
// "resumed" (the session came back with the same peer id and room) and "rejoined" (the session could
// not be resumed and the room was joined again with a new peer id: start the call over).
//
// Reconnects: any close the client did not ask for is followed by a new connection after an
// exponential backoff with jitter (a random 50–100 % of min(maxDelay, firstDelay · 2^attempt)). While
// in a room it reconnects with `?resume=<token from all-users>`; the server gives back the same peer id
// and room and delivers what was sent to us meanwhile. Relayed messages sent while disconnected wait
// in a bounded outbox and leave once the session is back.

const OUTBOX_LIMIT = 256;

export class TurnkitClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string | (() => string | Promise<string>)} options.token the JWT, or a function returning a fresh one
   * @param {string} [options.url] WebSocket URL of /ws (default: same origin as the page)
   * @param {string} [options.region] `?region=` to ask for
   * @param {number} [options.firstDelay] first reconnect delay in ms (default 250)
   * @param {number} [options.maxDelay] reconnect delay cap in ms (default 5000)
   */
  constructor({ token, url, region, firstDelay = 250, maxDelay = 5000 }) {
    super();
    this.token = token;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.url = url || `${scheme}://${location.host}/ws`;
    this.region = region || null;
    this.firstDelay = firstDelay;
    this.maxDelay = maxDelay;
    this.ws = null;
    this.room = null; // the room we want to be in
    this.you = null; // our peer id, once all-users came
    this.resumeToken = null;
    this.attempt = 0;
    this.timer = null;
    this.closed = false;
    this.outbox = [];
    this.state = "closed";
    this.ready = false; // in the room, as ourselves (all-users came on this connection)
    this.rejoining = false;
  }

  /** Open the connection (and keep it open until close()). */
  connect() {
    this.closed = false;
    this._open();
  }

  /** Join a room; answered by an "all-users" event. */
  join(room) {
    this.room = room;
    this.you = this.resumeToken = null;
    this._send({ type: "join-room", room });
  }

  /** Relay an offer / answer / ice-candidate to `to`; `fields` is {sdp} or {candidate}. */
  relay(type, to, fields) {
    const message = { type, to, ...fields };
    if (this.ready) this._send(message);
    else if (this.outbox.length < OUTBOX_LIMIT) this.outbox.push(message);
  }

  /** Send any other client frame (`leave-room`, `ice-servers`); dropped while disconnected. */
  send(message) {
    this._send(message);
  }

  /** Ask for fresh ICE servers; resolves with {iceServers, expiresAt} from the next "ice-servers" frame. */
  iceServers() {
    return new Promise((resolve) => {
      this.addEventListener("ice-servers", (e) => resolve(e.detail), { once: true });
      this._send({ type: "ice-servers" });
    });
  }

  /** Hang up: leave the room, close with 1000 (the server forgets the session at once), no reconnect. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this._send({ type: "leave-room" });
      this.ws.close(1000, "hang up");
    }
    this.ws = null;
    this.ready = false;
    this.room = this.you = this.resumeToken = null;
    this.outbox = [];
    this._state("closed");
  }

  /** The delay before reconnect attempt `attempt` (0-based), in ms: exponential, capped, jittered. */
  backoff(attempt) {
    const ceiling = Math.min(this.maxDelay, this.firstDelay * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  // ---- internals ------------------------------------------------------------------------------

  async _open() {
    this._state(this.attempt === 0 && this.resumeToken === null ? "connecting" : "reconnecting");
    const token = typeof this.token === "function" ? await this.token() : this.token;
    const query = new URLSearchParams({ token });
    if (this.region) query.set("region", this.region);
    if (this.resumeToken) query.set("resume", this.resumeToken);
    const ws = new WebSocket(`${this.url}?${query}`);
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.attempt = 0;
      this._state("open");
      // Without a session to resume, (re)join the room we want to be in.
      if (this.room !== null && this.resumeToken === null) this._send({ type: "join-room", room: this.room });
    };
    ws.onmessage = (event) => {
      if (ws === this.ws) this._receive(event.data);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.ready = false;
      if (this.closed) return;
      this._state("reconnecting", { code: event.code, reason: event.reason });
      this.timer = setTimeout(() => this._open(), this.backoff(this.attempt++));
    };
  }

  _receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === "all-users") {
      const resumed = message.resumed === true;
      const rejoined = !resumed && this.rejoining;
      this.ready = true;
      this.you = message.you;
      this.room = message.room;
      this.resumeToken = message.resume || null;
      this.rejoining = false;
      this._dispatch("all-users", message);
      if (resumed) this._dispatch("resumed", message);
      if (rejoined) this._dispatch("rejoined", message);
      this._flush();
      return;
    }
    if (message.type === "error" && message.code === "resume-failed") {
      // The session is gone (window passed, or the server lost it): join again as a new peer.
      this.resumeToken = null;
      this.rejoining = true;
      if (this.room !== null) this._send({ type: "join-room", room: this.room });
    }
    this._dispatch(message.type, message);
  }

  _flush() {
    const queued = this.outbox;
    this.outbox = [];
    queued.forEach((m) => this._send(m));
  }

  _send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  _state(state, detail) {
    this.state = state;
    this._dispatch("state", { state, ...(detail || {}) });
  }

  _dispatch(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Moves a call to healthy TURN nodes when its path dies (a TURN node lost): when ICE is "failed", or
 * "disconnected" for longer than `grace` ms, it asks the signaling server for fresh ICE servers (the
 * server leaves out nodes marked failing or draining), applies them and calls `restart()` — which
 * should send an offer made with `createOffer({ iceRestart: true })`. `onIceServers(fresh)` and
 * `onRecovered(ms)` (from the first restart to ICE connected again) are optional callbacks.
 */
export class IceWatchdog {
  constructor(pc, client, { restart, grace = 2000, onRecovered, onIceServers } = {}) {
    this.pc = pc;
    this.client = client;
    this.restart = restart;
    this.grace = grace;
    this.onRecovered = onRecovered || (() => {});
    this.onIceServers = onIceServers || (() => {});
    this.timer = null;
    this.restartedAt = null;
    this.busy = false;
    this.restarts = 0;
    pc.addEventListener("iceconnectionstatechange", () => this._check());
  }

  _check() {
    const state = this.pc.iceConnectionState;
    clearTimeout(this.timer);
    this.timer = null;
    if (state === "failed") this._kick();
    else if (state === "disconnected") this.timer = setTimeout(() => this._kick(), this.grace);
    else if ((state === "connected" || state === "completed") && this.restartedAt !== null) {
      this.onRecovered(Date.now() - this.restartedAt);
      this.restartedAt = null;
    }
  }

  async _kick() {
    if (this.busy || this.pc.signalingState === "closed") return;
    this.busy = true;
    try {
      if (this.restartedAt === null) this.restartedAt = Date.now();
      const fresh = await this.client.iceServers();
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers: fresh.iceServers });
      this.onIceServers(fresh);
      this.restarts += 1;
      await this.restart();
    } finally {
      this.busy = false;
    }
    // Still not up after another grace period: try again (the next node may be failing too).
    this.timer = setTimeout(() => {
      const s = this.pc.iceConnectionState;
      if (s === "failed" || s === "disconnected" || s === "checking") this._kick();
    }, this.grace * 3);
  }
}
