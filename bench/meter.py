"""Section 7: usage metering (issue 14) — the meter's events per second per core, and coturn's relay throughput
with redis-statsdb on vs off (goal: at most 5 % lower)."""

from __future__ import annotations

import os
import select
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from aioice import stun
from aioice.turn import UDP_TRANSPORT, make_integrity_key

from bench import turn
from bench.common import Ctx
from bench.probe import on_core, pin_all_threads
from bench.procs import CLIENT_CORE, SERVER_CORE, Procs, core, cpu_seconds, free_port, wait_tcp
from bench.report import Section, Table
from bench.stats import Target, Verdict, fmt, median, ratio
from turnkit import credentials, keyring

#: What one node at 700 Mbit/s of 1000-byte packets produces (docs/capacity.md): the meter must keep up with it.
NODE_EVENTS_PER_S = 45
EVENTS = Target("meter: statsdb events/s per core", ">=", NODE_EVENTS_PER_S, "events/s", "issue 14")
THROUGHPUT = Target("coturn relayed packets/s, statsdb on ÷ off", ">=", 0.95, "×", "issue 14")
CAPACITY = Target("coturn packets per CPU-second, statsdb on (+ its Redis) ÷ off", ">=", 0.95, "×", "issue 14")

ALLOCATIONS = 8
PAYLOAD = 1000  # bytes per relayed packet (an RTP packet of a video call is about this size)
WINDOW = 64  # packets in flight towards the peer (a closed loop: the client never floods coturn's socket buffer)
CHANNEL = 0x4000
STALL = 0.05  # seconds without a delivery after which the in-flight packets count as lost


def measure_events(events: int = 50_000) -> float:
    """statsdb `traffic` events/s through the meter's pure core and its durable SQLite buffer, per CPU-second."""
    from turnkit.meter import events as ev
    from turnkit.meter import ledger
    from turnkit.meter.buffer import Buffer

    with tempfile.TemporaryDirectory() as tmp:
        buf = Buffer(Path(tmp) / "bench.sqlite")
        sessions: dict[str, ledger.Session] = {}
        msgs = [
            (f"turn/realm/r/user/1764003600:user{n % 500}/allocation/{n % 1000:018d}/traffic",
             "rcvp=2048, rcvb=2053500, sentp=3, sentb=228")
            for n in range(events)
        ]  # fmt: skip
        start = time.process_time()
        for channel, payload in msgs:
            event = ev.parse(channel, payload)
            if event is None:
                raise RuntimeError(f"the meter does not parse {channel!r}")
            step = ledger.step(sessions, event, 1_764_000_000.0)
            buf.apply(step)
            sessions.update({s.key: s for s in step.upsert})
        spent = time.process_time() - start
        buf.close()
    return events / spent


# ---- a minimal TURN/UDP client: allocate and bind a channel with aioice's STUN codec, then raw ChannelData ----


def _transact(sock: socket.socket, server: tuple[str, int], request: stun.Message) -> stun.Message:
    sock.sendto(bytes(request), server)
    sock.settimeout(5.0)
    while True:
        data, _ = sock.recvfrom(2048)
        reply = stun.parse_message(data)
        if reply.transaction_id == request.transaction_id:
            return reply


def _authed(method: stun.Method, user: str, realm: str, nonce: bytes) -> stun.Message:
    msg = stun.Message(message_method=method, message_class=stun.Class.REQUEST)
    msg.attributes.update({"USERNAME": user, "REALM": realm, "NONCE": nonce})
    return msg


def _signed(msg: stun.Message, key: bytes) -> stun.Message:
    msg.add_message_integrity(key)
    return msg


def open_channel(server: tuple[str, int], user: str, password: str, peer: tuple[str, int]) -> socket.socket:
    """A UDP socket with an allocation on `server` and channel CHANNEL bound to `peer` (RFC 8656 §5, §12)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    first = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
    first.attributes["REQUESTED-TRANSPORT"] = UDP_TRANSPORT
    challenge = _transact(sock, server, first)
    realm, nonce = challenge.attributes["REALM"], challenge.attributes["NONCE"]
    key = make_integrity_key(user, realm, password)
    alloc = _authed(stun.Method.ALLOCATE, user, realm, nonce)
    alloc.attributes["REQUESTED-TRANSPORT"] = UDP_TRANSPORT
    reply = _transact(sock, server, _signed(alloc, key))
    if reply.message_class != stun.Class.RESPONSE:
        raise RuntimeError(f"allocate refused: {reply.attributes.get('ERROR-CODE')}")
    bind = _authed(stun.Method.CHANNEL_BIND, user, realm, nonce)
    bind.attributes.update({"CHANNEL-NUMBER": CHANNEL, "XOR-PEER-ADDRESS": peer})
    reply = _transact(sock, server, _signed(bind, key))
    if reply.message_class != stun.Class.RESPONSE:
        raise RuntimeError(f"channel bind refused: {reply.attributes.get('ERROR-CODE')}")
    sock.connect(server)  # the data phase sends ChannelData with send()
    sock.setblocking(False)
    return sock


@dataclass(frozen=True)
class Blast:
    packets: int  # delivered to the peer in the window
    lost: int
    seconds: float
    server_cpu_s: float  # coturn (and its statsdb Redis, when on)

    @property
    def pps(self) -> float:
        return ratio(self.packets, self.seconds)

    @property
    def us_per_packet(self) -> float:
        return ratio(self.server_cpu_s * 1e6, self.packets)


def blast(clients: list[socket.socket], peer: socket.socket, seconds: float, pids: list[int]) -> Blast:
    """Closed-loop ChannelData through the allocations to `peer` for `seconds`; packets counted where they arrive."""
    frame = CHANNEL.to_bytes(2, "big") + PAYLOAD.to_bytes(2, "big") + os.urandom(PAYLOAD)
    sent = got = lost = 0
    buf = bytearray(2048)
    cpu0 = sum(cpu_seconds(p) for p in pids)
    start = last = time.perf_counter()
    end = start + seconds
    turn_ = 0
    while (now := time.perf_counter()) < end:
        while sent - got - lost < WINDOW:
            try:
                clients[turn_ % len(clients)].send(frame)
            except BlockingIOError:
                break
            sent += 1
            turn_ += 1
        if select.select([peer], [], [], STALL)[0]:
            while True:
                try:
                    peer.recv_into(buf)
                except BlockingIOError:
                    break
                got += 1
            last = now
        elif now - last > STALL:
            lost = sent - got
            last = now
    elapsed = time.perf_counter() - start
    return Blast(got, lost, elapsed, sum(cpu_seconds(p) for p in pids) - cpu0)


@dataclass(frozen=True)
class Relay:
    port: int
    pids: list[int]  # coturn, and its statsdb redis-server when on
    statsdb: tuple[int, str] | None  # that Redis's port and password

    def status_keys(self) -> int:
        """How many allocation status keys coturn keeps in its statsdb (proves statsdb is really on)."""
        if self.statsdb is None:
            return 0
        with redis.Redis(port=self.statsdb[0], password=self.statsdb[1]) as db:
            return len(db.keys("turn/realm/*/user/*/allocation/*/status"))


@contextmanager
def _relay(ctx: Ctx, name: str, secret: str, statsdb: bool, window: tuple[int, int]) -> Iterator[Relay]:
    """A coturn (with its statsdb Redis when `statsdb`) whose threads are pinned to the server core."""
    extra: dict[str, object] = {}
    pids: list[int] = []
    db: tuple[int, str] | None = None
    if statsdb:
        db = (0, "bench-statsdb-" + os.urandom(8).hex())
        port, pid = _start_statsdb(ctx.procs, ctx.workdir / name, db[1])
        db = (port, db[1])
        extra = {"coturn_statsdb_password": db[1], "coturn_statsdb_port": port, "coturn_statsdb_dbname": 0}
        pids.append(pid)
    server = turn.start(ctx.procs, ctx.workdir / name, [secret], extra, relay_ports=window)
    pin_all_threads(server.proc.pid, core(SERVER_CORE))
    try:
        yield Relay(server.port, [server.proc.pid, *pids], db)
    finally:
        ctx.procs.stop(server.proc)


def _start_statsdb(procs: Procs, workdir: Path, password: str) -> tuple[int, int]:
    """redis-server as templates/redis/turnkit-statsdb.conf.j2 sets it up (loopback, password, no persistence)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes"]
    argv += ["--requirepass", password, "--save", "", "--appendonly", "no", "--maxmemory", "64mb"]
    argv += ["--maxmemory-policy", "noeviction", "--dir", str(workdir), "--daemonize", "no"]
    proc = procs.start(f"statsdb-{port}", argv, pin=core(SERVER_CORE))
    wait_tcp(port, proc)
    return port, proc.pid


def bench(ctx: Ctx) -> Section:
    events = [measure_events(ctx.count(50_000, 2_000)) for _ in range(ctx.rounds)]
    ring = keyring.init(int(time.time()))
    secret = ring.primary.value
    seconds = ctx.seconds(8.0)
    results: dict[str, list[Blast]] = {"statsdb off": [], "statsdb on": []}
    keys = 0
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    try:
        with (
            _relay(ctx, "coturn-off", secret, False, (50000, 50499)) as off,
            _relay(ctx, "coturn-on", secret, True, (50500, 50999)) as on,
            on_core(core(CLIENT_CORE)),
        ):
            setups = {"statsdb off": off, "statsdb on": on}
            socks = {name: _clients(r.port, secret, peer.getsockname()) for name, r in setups.items()}
            for name, r in setups.items():
                blast(socks[name], peer, ctx.seconds(0.5, 0.2), r.pids)  # warm-up
            for _ in range(ctx.rounds):
                for name, r in setups.items():
                    results[name].append(blast(socks[name], peer, seconds, r.pids))
            keys = on.status_keys()
            if keys < ALLOCATIONS:
                raise RuntimeError(f"statsdb on: coturn wrote {keys} allocation status keys, expected {ALLOCATIONS}")
            for group in socks.values():
                for s in group:
                    s.close()
    finally:
        peer.close()
    return _section(ctx, events, results, seconds, keys)


def _clients(port: int, secret: str, peer: tuple[str, int]) -> list[socket.socket]:
    now = int(time.time())
    creds = [credentials.issue(f"bench-{i}", secret, now, 3600) for i in range(ALLOCATIONS)]
    return [open_channel(("127.0.0.1", port), c.username, c.password, peer) for c in creds]


def _section(ctx: Ctx, events: list[float], results: dict[str, list[Blast]], seconds: float, keys: int) -> Section:
    med = {
        name: (median([b.pps for b in r]), median([b.us_per_packet for b in r]), sum(b.lost for b in r))
        for name, r in results.items()
    }
    (off_pps, off_us, _), (on_pps, on_us, _) = med["statsdb off"], med["statsdb on"]
    rows = tuple(
        (name, fmt(pps), fmt(us), str(lost), " / ".join(fmt(b.pps) for b in results[name]))
        for name, (pps, us, lost) in med.items()
    )
    method = f"""\
**Meter:** `turnkit.meter`'s pure core (`events.parse` → `ledger.step`) and its durable SQLite buffer
(`Buffer.apply`, one transaction per event) fed {ctx.count(50_000, 2_000):,} statsdb `traffic` events of 500 users and
1,000 allocations; events per CPU-second of this process (`time.process_time`), median of {ctx.rounds} rounds. The goal is
what one node at 700 Mbit/s of 1000-byte packets publishes (about {NODE_EVENTS_PER_S}/s, docs/capacity.md).

**coturn with statsdb on vs off:** two coturn 4.6.1 processes from turnkit-rendered config, one with
`redis-statsdb` pointing at its own loopback redis-server (password, no persistence, as
templates/redis/turnkit-statsdb.conf.j2 sets it up), all their threads and that Redis pinned to core 0. A client on
core 1 holds {ALLOCATIONS} UDP allocations per coturn (TURN REST credentials, a channel bound to one loopback peer
socket) and keeps {WINDOW} ChannelData packets of {PAYLOAD} bytes in flight, counting them where they arrive at the peer
(a closed loop: stalls of {STALL * 1000:.0f} ms count the in-flight packets as lost). {ctx.rounds} alternated rounds of
{seconds:g} s, medians. **packets/s** is what the closed loop achieved (bounded by whichever side is busier);
**µs/packet** is coturn's utime+stime (plus its statsdb redis-server when on) from /proc over the window ÷ packets
delivered, so packets per CPU-second (the one-core capacity) is 1e6 ÷ µs/packet. With statsdb on, coturn kept
{keys} allocation status keys in its Redis at the end (checked: statsdb was really on)."""
    return Section(
        "meter",
        "7. Usage metering (issue 14)",
        method,
        tables=[
            Table(
                ("meter", "events/s per core", "per round"),
                (("events → ledger → SQLite buffer", fmt(median(events)), " / ".join(fmt(e) for e in events)),),
            ),
            Table(("coturn", "packets/s", "server µs/packet", "lost", "packets/s per round"), rows),
        ],
        verdicts=[
            Verdict(EVENTS, median(events)),
            Verdict(THROUGHPUT, ratio(on_pps, off_pps), f"{fmt(on_pps)} vs {fmt(off_pps)} packets/s"),
            Verdict(CAPACITY, ratio(off_us, on_us), f"{fmt(on_us)} vs {fmt(off_us)} µs/packet"),
        ],
    )
