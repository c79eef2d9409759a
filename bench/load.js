// The load client for every signaling server in the benchmark (one client, so the servers are compared alike).
//
//   node load.js PROTO URL [PAIRS] [SECONDS]   relay: PAIRS rooms of two peers; in each, B sends A an offer
//                                              with a ~1.2 KB SDP, A answers with it, B offers again on receipt
//                                              (a closed loop per room). After a short warm-up it prints
//                                              {"event":"start"}, measures for SECONDS, prints {"event":"stop"}
//                                              and then one result line (relayed messages, msgs/s, round-trip
//                                              p50/p99 in ms, its own CPU seconds in the window).
//   node load.js PROTO URL idle N              opens N connections joined in rooms of two, prints
//                                              {"idle_connections":N} and holds them until killed.
//
// PROTO is `socketio` (the reference's events) or `turnkit` (signaling v1 frames; also the bare ws ceiling).
// Environment: TURNKIT_JWT_SECRET signs the HS256 JWT each turnkit connection carries; BENCH_PORTS=p1,p2,…
// spreads connections round-robin over these ports (the two peers of a room land on different servers);
// BENCH_ROOM_PREFIX prefixes room names (several idle clients against one server keep to their own rooms).
"use strict";
const crypto = require("crypto");
const { performance } = require("perf_hooks");

const [proto, url, third = "50", fourth = "8"] = process.argv.slice(2);
const PORTS = (process.env.BENCH_PORTS || "").split(",").filter(Boolean);
const PREFIX = process.env.BENCH_ROOM_PREFIX || "";
const SECRET = process.env.TURNKIT_JWT_SECRET || "bench-secret";
const WARMUP_MS = 500;
// An SDP-sized body (~1.2 KB) of host candidates in the benchmark range 198.18.0.0/15 (text only, never dialled).
const SDP = "v=0\r\n" + "a=candidate:1 1 udp 2122260223 198.18.0.5 54321 typ host\r\n".repeat(20);

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function endpoint(i) {
  if (!PORTS.length) return url;
  const u = new URL(url);
  u.port = PORTS[i % PORTS.length];
  return u.toString();
}

function token(sub) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${signed}.${crypto.createHmac("sha256", SECRET).update(signed).digest("base64url")}`;
}

// Each peer: join(room) → {you, users}; send(kind, to, sdp); onRelay(kind, fn(from, sdp)).
function turnkitPeer(i) {
  const WebSocket = require("ws");
  return new Promise((resolve, reject) => {
    // One user per connection, unique across load.js processes (turnkit caps connections per user).
    const ws = new WebSocket(`${endpoint(i)}?token=${token(`bench-${process.pid}-${i}`)}`, { perMessageDeflate: false });
    const handlers = {};
    ws.on("message", (raw) => {
      const m = JSON.parse(raw);
      if (handlers[m.type]) handlers[m.type](m);
    });
    ws.once("error", reject);
    ws.once("open", () =>
      resolve({
        join: (room) =>
          new Promise((done) => {
            handlers["all-users"] = (m) => done({ you: m.you, users: m.users });
            ws.send(JSON.stringify({ type: "join-room", room: PREFIX + room }));
          }),
        send: (type, to, sdp) => ws.send(JSON.stringify({ type, to, sdp })),
        onRelay: (type, fn) => {
          handlers[type] = (m) => fn(m.from, m.sdp);
        },
      }),
    );
  });
}

function socketioPeer(i) {
  const { io } = require("socket.io-client");
  return new Promise((resolve, reject) => {
    const s = io(endpoint(i), { transports: ["websocket"], forceNew: true, reconnection: false });
    s.once("connect_error", reject);
    s.once("connect", () =>
      resolve({
        join: (room) =>
          new Promise((done) => {
            s.once("all-users", (users) => done({ you: s.id, users }));
            s.emit("join-room", PREFIX + room);
          }),
        send: (type, to, sdp) => s.emit(type, type === "offer" ? { userToCall: to, sdp } : { callerID: to, sdp }),
        onRelay: (type, fn) => s.on(type, (p) => fn(type === "offer" ? p.callerID : p.id, p.sdp)),
      }),
    );
  });
}

const connect = { socketio: socketioPeer, turnkit: turnkitPeer }[proto];
if (!connect) {
  console.error(`load.js: unknown protocol ${JSON.stringify(proto)} (socketio | turnkit)`);
  process.exit(2);
}

async function room(r, name) {
  const a = await connect(2 * r);
  const b = await connect(2 * r + 1);
  const { you } = await a.join(name);
  await b.join(name);
  return { a, b, aId: you };
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  const value = sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  return Math.round(value * 100) / 100;
}

async function relay(pairs, seconds) {
  const rooms = [];
  for (let r = 0; r < pairs; r++) rooms.push(await room(r, `room${r}`));
  let running = true;
  let measuring = false;
  let relayed = 0;
  const rtts = [];
  const offer = () => ({ type: "offer", sdp: SDP, t: performance.now() });
  for (const { a, b, aId } of rooms) {
    a.onRelay("offer", (from, sdp) => {
      if (measuring) relayed++;
      a.send("answer", from, sdp);
    });
    b.onRelay("answer", (_, sdp) => {
      if (measuring) {
        relayed++;
        rtts.push(performance.now() - sdp.t);
      }
      if (running) b.send("offer", aId, offer());
    });
    b.send("offer", aId, offer());
  }
  await new Promise((done) => setTimeout(done, WARMUP_MS));
  print({ event: "start" });
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await new Promise((done) => setTimeout(done, seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  const used = process.cpuUsage(cpu);
  print({ event: "stop" });
  running = false;
  rtts.sort((x, y) => x - y);
  print({
    proto,
    url,
    pairs,
    seconds: Math.round(elapsed * 1000) / 1000,
    messages: relayed,
    msgs_per_s: Math.round(relayed / elapsed),
    rtt_p50_ms: quantile(rtts, 0.5),
    rtt_p99_ms: quantile(rtts, 0.99),
    client_cpu_s: (used.user + used.system) / 1e6,
  });
  process.exit(0);
}

async function idle(n) {
  for (let r = 0; r < n / 2; r++) await room(r, `idle${r}`);
  print({ proto, idle_connections: n });
  setInterval(() => {}, 1 << 30);
}

(third === "idle" ? idle(Number(fourth)) : relay(Number(third), Number(fourth))).catch((err) => {
  console.error(`load.js: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
