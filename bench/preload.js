// Preload for relay-load.js (`node -r bench/preload.js relay-load.js ...`); changes nothing unless asked:
//   BENCH_SPLIT_PORTS=p1,p2  alternate new WebSocket connections over these ports, so the two peers
//                            of every room land on different turnkit processes;
//   BENCH_ROOM_PREFIX=c3-    prefix every joined room name, so several idle-mode clients (which all
//                            name their rooms idle0, idle2, ...) each fill rooms of two of their own.
const path = require("path");
const here = { paths: [path.dirname(process.argv[1])] };
const ports = (process.env.BENCH_SPLIT_PORTS || "").split(",").filter(Boolean);
const prefix = process.env.BENCH_ROOM_PREFIX || "";

const wsPath = require.resolve("ws", here);
const WebSocket = require(wsPath);
let n = 0;
class BenchWebSocket extends WebSocket {
  constructor(url, ...rest) {
    const u = new URL(url);
    if (ports.length) u.port = ports[n++ % ports.length];
    super(u.toString(), ...rest);
  }
  send(data, ...rest) {
    if (prefix && typeof data === "string" && data.includes('"join-room"')) {
      const m = JSON.parse(data);
      m.room = prefix + m.room;
      data = JSON.stringify(m);
    }
    return super.send(data, ...rest);
  }
}
require.cache[wsPath].exports = BenchWebSocket;

if (prefix) {
  const { Socket } = require(require.resolve("socket.io-client", here));
  const emit = Socket.prototype.emit;
  Socket.prototype.emit = function (ev, ...args) {
    if (ev === "join-room") args[0] = prefix + args[0];
    return emit.call(this, ev, ...args);
  };
}
