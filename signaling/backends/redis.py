"""Redis backend: several signaling processes behave as one server.

Membership lives in Redis and changes only through the atomic scripts of `redis_lua`; each process
subscribes to its own channel `ch:<proc>` and receives there, in one global order, the changes of the
rooms it has members in and the frames relayed to its peers. A process whose heartbeat expires is
reaped by any other: its members leave their rooms and the others get `user-left`.

Requests are typed queued operations (`Join`, `Leave`, `Publish`) run in order by one worker; the
frames relayed in one loop tick leave as one PUBLISH per destination process. The connection is
supervised: when Redis goes away (restart, failover, network), requests queue (relays bounded by
MAX_PENDING), the session task reconnects with exponential backoff and jitter, subscribes again and
re-asserts this process's members (`RESTORE`) before the queue drains, so relays resume. Messages no
process received (its process is still resubscribing) are held and resent in order for HOLD seconds;
a snapshot of our rooms RESYNC_DELAY after the reconnect corrects the view (`redis_events.Reader`).
`epoch` tells a Redis that lost its data (restart without persistence: restore silently) from one that
reaped this process (its members are gone for the others too: `Events.lost`, clients reconnect).
The operator's side of all this is docs/redis.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from signaling.backends import MAX_QUEUED, PARKED, Events
from signaling.backends import redis_lua as lua
from signaling.backends.redis_events import Kind, Reader
from signaling.ice import SharedHealth
from turnkit import health
from turnkit.errors import ConfigError, DaemonError
from turnkit.redisurl import RedisUrlError, connect, safe

log = logging.getLogger(__name__)

PREFIX = "turnkit:sig:"
HEARTBEAT = 2.0
HEARTBEAT_TTL = 6.0
HEALTH_POLL = 2.0
#: Relayed frames queued for Redis beyond this are dropped (memory stays bounded when Redis is away).
MAX_PENDING = 50_000
#: Publishes sent in one pipeline round trip; frames for one process in one publish.
PIPELINE = 512
BATCH = 256
#: Reconnect backoff: first delay, cap (each attempt waits a random 50–100 % of the current delay).
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 1.0
#: Upper bound of one connection attempt, of a Redis command, and of each shutdown step.
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 5.0
STOP_STEP = 2.0
#: Frames for a process that is not subscribed (resubscribing after an outage, or dead) wait this long,
#: retried every HOLD_RETRY, in order, before they are dropped.
HOLD = 5.0
HOLD_RETRY = 0.1
#: After a reconnect, compare this process's rooms with Redis once the others have had the time to
#: come back (a heartbeat TTL); rooms per snapshot script call.
RESYNC_DELAY = HEARTBEAT_TTL
SNAPSHOT_ROOMS = 500
#: How long a pub/sub read blocks; also how fast the session notices a failure another task saw.
LISTEN_POLL = 0.25

#: Errors that mean "the connection is gone", as opposed to a command Redis refused.
LINK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class Join(NamedTuple):
    """Put `peer` in `room` (leaving its previous room) unless the room has `capacity` members."""

    peer: str
    room: str
    capacity: int
    user: str
    token: str


class Leave(NamedTuple):
    """Take `peer` out of its room."""

    peer: str


class Publish(NamedTuple):
    """One message for a process channel; `frames` relayed frames in it (0 for a membership event)."""

    channel: str
    message: str
    frames: int


class Park(NamedTuple):
    """`peer` lost its connection: park it for `window` seconds (session resume)."""

    peer: str
    window: float


class Resume(NamedTuple):
    """Connection `temp` of `user` asks for the peer bound to the resume token hash `token`."""

    temp: str
    token: str
    user: str


class Enqueue(NamedTuple):
    """A frame for a parked member: queue it (or deliver it, if it has resumed meanwhile)."""

    peer: str
    room: str
    frame: str


Op = Join | Leave | Publish | Park | Resume | Enqueue

#: What a RESUME script result means.
RESUME_REFUSED = {0: "unknown or expired resume token", -1: "resume token belongs to another user"}


class Registration(enum.Enum):
    """What re-registering (heartbeat or reconnect) found out about this process in Redis."""

    FIRST = "first"
    KNOWN = "known"
    DATA_LOST = "data lost"
    REAPED = "reaped"


class RedisBackend:
    """Membership in Redis, fan-out over pub/sub, liveness by heartbeat; one ordered op queue."""

    def __init__(
        self, url: str, shared_health: SharedHealth | None = None, prefix: str = PREFIX, window: float = 30.0
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.proc = secrets.token_hex(6)
        self.window_ms = int(window * 1000)
        self.channel = f"{prefix}ch:{self.proc}"
        self.health = shared_health
        try:
            self.redis, self._close_sentinels = connect(
                url,
                decode_responses=True,
                socket_connect_timeout=2,
                socket_timeout=SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 0),  # the session task reconnects, with backoff
            )
        except RedisUrlError as exc:
            raise ConfigError(f"signaling.redis_url: `{safe(url)}`: {exc}") from None
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self._join = self.redis.register_script(lua.JOIN)
        self._leave = self.redis.register_script(lua.LEAVE)
        self._reap = self.redis.register_script(lua.REAP)
        self._restore = self.redis.register_script(lua.RESTORE)
        self._snapshot = self.redis.register_script(lua.SNAPSHOT)
        self._park = self.redis.register_script(lua.PARK)
        self._resume = self.redis.register_script(lua.RESUME)
        self._enqueue = self.redis.register_script(lua.ENQUEUE)
        self.events: Events | None = None
        self.ops: collections.deque[Op] = collections.deque()
        self.members: dict[str, str] = {}  # local peer → room, as Redis confirmed it
        self.dropped = 0
        self._outbox: dict[str, list[str]] = {}
        self._held: dict[str, collections.deque[Publish]] = {}
        self._hold_until: dict[str, float] = {}
        #: peer → (its new process, when it moved), for HOLD seconds: frames for it that find no
        #: receiver after the move (a publish in flight when the move arrived) follow it there.
        self._relocated: dict[str, tuple[str, float]] = {}
        self._retry_at = 0.0
        self._flush_scheduled = False
        self._queued_frames = 0
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._epoch: str | None = None
        self._connected_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._runners: dict[type, Callable[[Op], Awaitable[None]]] = {
            Join: self._run_join,
            Leave: self._run_leave,
            Publish: self._run_publish,
            Park: self._run_park,
            Resume: self._run_resume,
            Enqueue: self._run_enqueue,
        }
        self.reader: Reader | None = None
        self._resync_at = 0.0

    async def start(self, events: Events) -> None:
        self.events = events
        self.reader = Reader(self.proc, events, self)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._open()
        except (RedisError, *LINK_ERRORS) as exc:
            await self._close_clients()
            raise DaemonError(f"signaling.redis_url: cannot use Redis at {safe(self.url)}: {_describe(exc)}") from None
        self._up.set()
        jobs = {"session": self._session(), "worker": self._worker(), "heartbeat": self._heartbeat()}
        if self.health is not None:
            jobs["health"] = self._poll_health(self.health)
        self._tasks = [asyncio.create_task(job, name=f"redis-{name}") for name, job in jobs.items()]
        log.info("redis backend started as process %s", self.proc)

    # Requests (fire-and-forget, in order)

    def join(self, peer: str, room: str, capacity: int, user: str = "", token: str = "") -> None:
        self._push(Join(peer, room, capacity, user, token))

    def leave(self, peer: str) -> None:
        self._push(Leave(peer))

    def park(self, peer: str, window: float) -> None:
        self._push(Park(peer, window))

    def resume(self, temp: str, token: str, user: str) -> None:
        self._push(Resume(temp, token, user))

    def forward(self, owner: str, peer: str, room: str, frame: str) -> None:
        if owner == PARKED:
            self._push(Enqueue(peer, room, frame))
            return
        if self._queued_frames >= MAX_PENDING:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("redis is not keeping up: dropped %d relayed frames", self.dropped)
            return
        self._queued_frames += 1
        lines = self._outbox.setdefault(owner, [])
        lines.append(f"{peer} {room} {frame}")
        if len(lines) >= BATCH:
            self._queue_batch(owner, self._outbox.pop(owner))
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _push(self, op: Op) -> None:
        self._flush()  # frames relayed before a membership change stay before it
        self.ops.append(op)
        self._wake.set()

    def _flush(self) -> None:
        """End of a loop tick: one publish per destination process for the frames relayed in it."""
        self._flush_scheduled = False
        for owner, lines in self._outbox.items():
            self._queue_batch(owner, lines)
        self._outbox.clear()

    def _queue_batch(self, owner: str, lines: list[str]) -> None:
        message = f"{Kind.DELIVER} {lines[0]}" if len(lines) == 1 else f"{Kind.BATCH}\n" + "\n".join(lines)
        self.ops.append(Publish(f"{self.prefix}ch:{owner}", message, len(lines)))
        self._wake.set()

    async def _worker(self) -> None:
        # The loop condition, not only cancellation, ends it: redis-py can turn a cancel into an error.
        while not self._stopping:
            if not self.ops:
                self._wake.clear()
                if not self._held:
                    await self._wake.wait()
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), HOLD_RETRY)
            if not self._up.is_set():
                await self._up.wait()
                continue
            try:
                if self._held and asyncio.get_running_loop().time() >= self._retry_at:
                    await self._retry_held()
                if self.ops:
                    await self._runners[type(self.ops[0])](self.ops[0])
            except LINK_ERRORS as exc:
                self._lost(exc)  # a membership change stays queued and runs again after the reconnect
            except Exception as exc:  # Redis refused a membership script (or a bug): drop it, keep serving
                self._refused(exc)

    def _refused(self, exc: Exception) -> None:
        op = self.ops.popleft() if self.ops and not isinstance(self.ops[0], Publish) else None
        log.error("redis refused %s: %s: %s", type(op).__name__, type(exc).__name__, exc)
        if isinstance(op, Join) and self.events is not None:
            self.events.failed(op.peer, "signaling backend unavailable")

    async def _run_join(self, op: Op) -> None:
        assert isinstance(op, Join) and self.events is not None
        admitted = await self._run(self._join, self.prefix, op.peer, self.proc, op.room, op.capacity, op.user, op.token)
        self.ops.popleft()
        if admitted:
            self.members[op.peer] = op.room
        else:
            self.events.full(op.peer, op.room)

    async def _run_leave(self, op: Op) -> None:
        assert isinstance(op, Leave)
        await self._run(self._leave, self.prefix, op.peer)
        self.ops.popleft()
        self.members.pop(op.peer, None)

    async def _run_park(self, op: Op) -> None:
        assert isinstance(op, Park)
        await self._run(self._park, self.prefix, self.proc, int(op.window * 1000), op.peer)
        self.ops.popleft()
        self.members.pop(op.peer, None)

    async def _run_resume(self, op: Op) -> None:
        assert isinstance(op, Resume) and self.events is not None
        outcome = await self._run(self._resume, self.prefix, op.token, op.user, self.proc, op.temp)
        self.ops.popleft()
        if outcome != 1:
            self.events.resume_failed(op.temp, RESUME_REFUSED.get(outcome, "resume refused"))

    async def _run_enqueue(self, op: Op) -> None:
        assert isinstance(op, Enqueue) and self.events is not None
        outcome = await self._run(self._enqueue, self.prefix, op.peer, op.room, op.frame, MAX_QUEUED)
        self.ops.popleft()
        if outcome == 0:
            self.events.dropped(1)

    # Reader.Owner: what this backend learns from its channel

    def member(self, peer: str, room: str | None) -> None:
        if room is None:
            self.members.pop(peer, None)
        else:
            self.members[peer] = room

    def _follow(self, pub: Publish) -> Publish | None:
        """Send the lines of `pub` for relocated peers to their new process; what is left (or None)."""
        now = asyncio.get_running_loop().time()
        kept: Publish | None = pub
        for peer, (owner, at) in list(self._relocated.items()):
            if now - at > HOLD:
                del self._relocated[peer]
            elif kept is not None and kept.channel != f"{self.prefix}ch:{owner}":
                kept, moved = _split_lines(kept, peer)
                if moved:
                    self._queue_batch(owner, moved)
        return kept

    def rerouted(self, peer: str, owner: str) -> None:
        """Frames held for a process that is gone, for a peer that resumed on `owner`: send them there."""
        self._relocated[peer] = (owner, asyncio.get_running_loop().time())
        target = f"{self.prefix}ch:{owner}"
        for channel, held in self._held.items():
            if channel == target:
                continue
            keep: collections.deque[Publish] = collections.deque()
            for pub in held:
                kept, moved = _split_lines(pub, peer)
                if moved:
                    self._queue_batch(owner, moved)
                if kept is not None:
                    keep.append(kept)
            held.clear()
            held.extend(keep)
        for channel in [c for c, held in self._held.items() if not held]:
            del self._held[channel]
            del self._hold_until[channel]

    async def _run_publish(self, op: Op) -> None:
        """Pipeline the queued publishes; if the link fails mid-way they are dropped (at most once)."""
        batch: list[Publish] = []
        while self.ops and isinstance(self.ops[0], Publish) and len(batch) < PIPELINE:
            pub = self.ops.popleft()
            assert isinstance(pub, Publish)
            if pub.channel in self._held:
                self._hold(pub)  # behind the frames already waiting for that process
            else:
                batch.append(pub)
        if batch:
            await self._publish(batch)

    async def _publish(self, batch: list[Publish]) -> None:
        """Send `batch`; hold the frames no process received (their process is resubscribing, or dead)."""
        pipe = self.redis.pipeline(transaction=False)
        for pub in batch:
            pipe.publish(pub.channel, pub.message)
        try:
            receivers = await pipe.execute()
        except LINK_ERRORS:
            self._drop(batch, "the redis connection was lost while publishing")
            raise
        except RedisError as exc:
            self._drop(batch, f"redis refused them: {exc}")
            return
        for pub, n in zip(batch, receivers, strict=True):
            if n:
                self._queued_frames -= pub.frames
            else:
                self._hold(pub)

    async def _run(self, script: AsyncScript, *args: str | int) -> int:
        """Run a membership script; hold the events it could not deliver. Its result."""
        result, *missed = await script(args=list(args))
        for i in range(0, len(missed), 2):
            self._hold(Publish(missed[i], missed[i + 1], 0))
        return int(result)

    def _hold(self, pub: Publish) -> None:
        """Keep `pub` (no process received it) to send again, behind what is already held for its channel."""
        if self._relocated and pub.frames:
            kept = self._follow(pub)
            if kept is None:
                return
            pub = kept
        held = self._held.get(pub.channel)
        if held is None:
            now = asyncio.get_running_loop().time()
            held = self._held[pub.channel] = collections.deque()
            self._hold_until[pub.channel] = now + HOLD
            if len(self._held) == 1:
                self._retry_at = now + HOLD_RETRY
        held.append(pub)

    async def _retry_held(self) -> None:
        """Send each held channel's oldest frames again; release it once received, drop it past HOLD."""
        now = asyncio.get_running_loop().time()
        self._retry_at = now + HOLD_RETRY
        for channel in list(self._held):
            if now >= self._hold_until[channel]:
                del self._hold_until[channel]
                self._drop(list(self._held.pop(channel)), f"no process subscribed to {channel} within {HOLD:.0f}s")
                continue
            first = self._held[channel][0]
            try:
                received = await self.redis.publish(first.channel, first.message)
            except RedisError as exc:
                if isinstance(exc, LINK_ERRORS):
                    raise
                del self._hold_until[channel]
                self._drop(list(self._held.pop(channel)), f"redis refused them: {exc}")
                continue
            if received:
                held = self._held.pop(channel)
                del self._hold_until[channel]
                held.popleft()
                self._queued_frames -= first.frames
                for pub in reversed(held):
                    self.ops.appendleft(pub)

    def _drop(self, pubs: list[Publish], why: str) -> None:
        frames = sum(pub.frames for pub in pubs)
        self._queued_frames -= frames
        self.dropped += frames
        log.warning("%d messages (%d relayed frames) dropped: %s", len(pubs), frames, why)

    # Events from Redis, and the connection that carries them

    async def _session(self) -> None:
        """Read our channel while connected; reconnect (with backoff) when the link is lost."""
        while not self._stopping:
            if not self._up.is_set():
                await self._reconnect()
                continue
            try:
                msg = await self.pubsub.get_message(timeout=LISTEN_POLL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis-py raises more than its own errors from a dead socket
                self._lost(exc)
                continue
            if msg is not None and msg.get("type") == "message":
                assert self.reader is not None
                self.reader.dispatch(msg["data"])

    def _lost(self, exc: BaseException) -> None:
        if self._up.is_set() and not self._stopping:
            log.warning("redis connection lost (%s: %s); reconnecting", type(exc).__name__, exc)
            self._up.clear()

    async def _reconnect(self) -> None:
        delay, attempts = BACKOFF_FIRST, 0
        loop = asyncio.get_running_loop()
        since = loop.time()
        while not self._stopping:
            attempts += 1
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._open(reconnect=True)
            except (RedisError, *LINK_ERRORS) as exc:
                if attempts == 1 or attempts % 20 == 0:
                    log.warning("redis reconnect attempt %d failed: %s", attempts, type(exc).__name__)
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            log.warning(
                "redis connection restored after %.1fs (%d attempts); %d requests queued",
                loop.time() - since,
                attempts,
                len(self.ops) + len(self._outbox),
            )
            self._up.set()
            self._wake.set()
            return

    async def _open(self, reconnect: bool = False) -> None:
        """Fresh connections, our channel subscribed, this process registered (and its members restored)."""
        old, self.pubsub = self.pubsub, self.redis.pubsub(ignore_subscribe_messages=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.aclose(), STOP_STEP)
        # A Sentinel pool asks the sentinels for the primary again when it opens a connection.
        await self.redis.connection_pool.disconnect()
        await self.redis.ping()
        await self.pubsub.subscribe(self.channel)
        found = await self._register()
        if reconnect and found is not Registration.REAPED and found is not Registration.DATA_LOST:
            await self._restore_members()  # writes lost in a failover
        self._connected_at = asyncio.get_running_loop().time()
        if reconnect:
            # Once every live process has had the time to come back and restore its members.
            self._resync_at = self._connected_at + RESYNC_DELAY

    # Liveness

    async def _register(self) -> Registration:
        """Refresh our heartbeat; notice a Redis that lost its data, or that reaped this process."""
        epoch_key = f"{self.prefix}epoch"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(epoch_key, secrets.token_hex(8), nx=True)
            pipe.get(epoch_key)
            pipe.set(f"{self.prefix}alive:{self.proc}", "1", px=int(HEARTBEAT_TTL * 1000))
            pipe.sadd(f"{self.prefix}procs", self.proc)
            _, epoch, _, added = await pipe.execute()
        previous, self._epoch = self._epoch, str(epoch)
        if previous is None:
            return Registration.FIRST
        if epoch != previous:
            log.warning("redis lost its data (restarted empty?): restoring %d members", len(self.members))
            await self._restore_members()
            return Registration.DATA_LOST
        if added:
            log.error("this process was presumed dead and its members were removed; closing them")
            self.members.clear()
            assert self.events is not None
            self.events.lost()
            return Registration.REAPED
        return Registration.KNOWN

    async def _restore_members(self) -> None:
        args = [self.prefix, self.proc]
        for peer, room in self.members.items():
            args += (peer, room)
        restored = await self._run(self._restore, *args)
        if restored:
            log.warning("re-added %d members Redis had lost", restored)

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await asyncio.sleep(HEARTBEAT)
            if not self._up.is_set():
                continue
            try:
                await self._register()
                # After our own outage, give the others one TTL to come back before reaping them.
                if loop.time() - self._connected_at >= HEARTBEAT_TTL:
                    reaped = await self._run(self._reap, self.prefix, self.window_ms)
                    if reaped:
                        log.warning("removed %d members of dead signaling processes", reaped)
                if self._resync_at and loop.time() >= self._resync_at:
                    self._resync_at = 0.0
                    await self._resync()
            except LINK_ERRORS as exc:
                self._lost(exc)
            except RedisError as exc:
                log.error("redis heartbeat failed: %s", exc)

    async def _resync(self) -> None:
        """Ask Redis for a snapshot of our rooms, delivered in order on our channel (`Reader` compares)."""
        assert self.reader is not None
        rooms = self.reader.rooms()
        for i in range(0, len(rooms), SNAPSHOT_ROOMS):
            await self._run(self._snapshot, self.prefix, self.proc, *rooms[i : i + SNAPSHOT_ROOMS])

    async def _poll_health(self, shared: SharedHealth) -> None:
        """Keep the node health `turnkit probe` publishes (`health.REDIS_KEY`) current."""
        while not self._stopping:
            if self._up.is_set():
                try:
                    doc = await self.redis.get(health.REDIS_KEY)
                    shared.health = health.from_json(str(doc)) if doc else {}
                except LINK_ERRORS as exc:
                    self._lost(exc)
                except (RedisError, ValueError) as exc:
                    log.error("cannot read node health from redis: %s", exc)
            await asyncio.sleep(HEALTH_POLL)

    async def ready(self) -> str | None:
        if not self._up.is_set():
            return "redis unreachable: reconnecting"
        try:
            await asyncio.wait_for(self.redis.ping(), 2.0)
        except (RedisError, *LINK_ERRORS) as exc:
            return f"redis unreachable: {type(exc).__name__}"
        return None

    async def stop(self) -> None:
        """Flush queued requests, remove our remaining members, stop the tasks (every step bounded)."""
        self._flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while self.ops and self._up.is_set():
                    await asyncio.sleep(0.01)
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_STEP)
            if stuck:
                log.warning("redis backend: %s did not stop", ", ".join(t.get_name() for t in stuck))
        try:
            await asyncio.wait_for(self._run(self._reap, self.prefix, self.window_ms, self.proc), STOP_STEP)
        except (RedisError, *LINK_ERRORS) as exc:
            log.warning("redis backend: reap at shutdown failed: %s", type(exc).__name__)
        await self._close_clients()

    async def _close_clients(self) -> None:
        steps = (("pubsub", self.pubsub.aclose), ("client", self.redis.aclose), ("sentinels", self._close_sentinels))
        for name, close in steps:
            try:
                await asyncio.wait_for(close(), STOP_STEP)
            except (RedisError, *LINK_ERRORS) as exc:
                log.warning("redis backend: closing the %s failed: %s", name, type(exc).__name__)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MasterNotFoundError):  # its text embeds the whole client repr
        return "no sentinel answered with a primary for the service"
    return str(exc) or type(exc).__name__


def _split_lines(pub: Publish, peer: str) -> tuple[Publish | None, list[str]]:
    """Split a held publish into what stays (None if nothing) and the relayed lines for `peer`."""
    kind, _, rest = pub.message.partition(" " if pub.message[:1] == Kind.DELIVER else "\n")
    if kind not in (Kind.DELIVER, Kind.BATCH):
        return pub, []
    lines = [rest] if kind == Kind.DELIVER else rest.split("\n")
    mine = [line for line in lines if line.split(" ", 1)[0] == peer]
    if not mine:
        return pub, []
    others = [line for line in lines if line.split(" ", 1)[0] != peer]
    if not others:
        return None, mine
    message = f"{Kind.DELIVER} {others[0]}" if len(others) == 1 else f"{Kind.BATCH}\n" + "\n".join(others)
    return Publish(pub.channel, message, len(others)), mine
