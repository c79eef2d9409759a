// The ceiling: the leanest one-process Node.js relay, on the bare `ws` library, speaking turnkit's
// signaling v1 frames (join-room → all-users; offer/answer/ice-candidate relayed with a stamped `from`).
// No auth, no validation, no rate or size limits: a real server is never this bare. PORT picks the port.
"use strict";
const crypto = require("crypto");
const { WebSocketServer } = require("ws");

const wss = new WebSocketServer({ port: Number(process.env.PORT || 4001), perMessageDeflate: false });
const sockets = new Map(); // peer id → WebSocket
const rooms = new Map(); // room → Set of peer ids
const RELAYED = new Set(["offer", "answer", "ice-candidate"]);

wss.on("connection", (ws) => {
  const you = crypto.randomUUID();
  let joined = null;
  sockets.set(you, ws);
  ws.on("message", (raw) => {
    const m = JSON.parse(raw);
    if (m.type === "join-room") {
      joined = String(m.room);
      const members = rooms.get(joined) || new Set();
      ws.send(JSON.stringify({ type: "all-users", room: joined, you, users: [...members], iceServers: [], expiresAt: 0 }));
      members.add(you);
      rooms.set(joined, members);
    } else if (RELAYED.has(m.type)) {
      const to = sockets.get(m.to);
      if (to) to.send(JSON.stringify({ type: m.type, from: you, sdp: m.sdp, candidate: m.candidate }));
    }
  });
  ws.on("close", () => {
    sockets.delete(you);
    const members = joined && rooms.get(joined);
    if (members) {
      members.delete(you);
      if (members.size === 0) rooms.delete(joined);
    }
  });
});
