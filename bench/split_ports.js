// Preload for relay-load.js (node -r): alternate new WebSocket connections over the ports in
// BENCH_SPLIT_PORTS, so the two peers of every room land on different turnkit processes.
const path = require("path");
const ports = (process.env.BENCH_SPLIT_PORTS || "").split(",").filter(Boolean);
const wsPath = require.resolve("ws", { paths: [path.dirname(process.argv[1])] });
const WebSocket = require(wsPath);
let n = 0;
class SplitWebSocket extends WebSocket {
  constructor(url, ...rest) {
    const u = new URL(url);
    if (ports.length) u.port = ports[n++ % ports.length];
    super(u.toString(), ...rest);
  }
}
require.cache[wsPath].exports = SplitWebSocket;
