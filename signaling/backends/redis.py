"""Redis backend: several signaling processes behave as one server.

Keys (prefix `turnkit:sig:`): `room:<room>` ZSET peer → join sequence (oldest first); `peers` HASH
peer → "<proc> <room>"; `members:<proc>` SET of that process's peers; `procs` SET of live processes;
`alive:<proc>` heartbeat key with a TTL. Every membership change runs as one Lua script and publishes
its events on `ch:<proc>`, one pub/sub channel per process, so each process sees the changes of its
rooms in one global order. A process whose heartbeat expires is reaped by any other: its members
leave their rooms and the others get `user-left`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling.backends import Events
from signaling.ice import SharedHealth
from signaling.rooms import Joined
from turnkit import health
from turnkit.errors import DaemonError

log = logging.getLogger(__name__)

PREFIX = "turnkit:sig:"
HEARTBEAT = 2.0
HEARTBEAT_TTL_MS = 6000
#: Relays queued for Redis beyond this are dropped (memory stays bounded when Redis is slow).
MAX_PENDING = 50_000
PIPELINE = 512
#: Upper bound of each shutdown step.
STOP_STEP = 2.0

_LIB = """
local P = ARGV[1]
local function owner_of(peer)
  local info = redis.call('HGET', P .. 'peers', peer)
  if not info then return nil, nil end
  local sp = string.find(info, ' ', 1, true)
  return string.sub(info, 1, sp - 1), string.sub(info, sp + 1)
end
local function leave(peer)
  local owner, room = owner_of(peer)
  if not owner then return end
  local rkey = P .. 'room:' .. room
  redis.call('ZREM', rkey, peer)
  redis.call('HDEL', P .. 'peers', peer)
  redis.call('SREM', P .. 'members:' .. owner, peer)
  local targets = {[owner] = true}
  for _, m in ipairs(redis.call('ZRANGE', rkey, 0, -1)) do
    local o = owner_of(m)
    if o then targets[o] = true end
  end
  for t in pairs(targets) do
    redis.call('PUBLISH', P .. 'ch:' .. t, 'L ' .. room .. ' ' .. peer)
  end
end
"""

#: ARGV: prefix, peer, proc, room, capacity → 1 joined (events published), 0 room full.
JOIN = (
    _LIB
    + """
local peer, proc, room, cap = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local rkey = P .. 'room:' .. room
local _, current = owner_of(peer)
local again = current == room
if not again then
  if redis.call('ZCARD', rkey) >= cap then return 0 end
  leave(peer)
end
local event = {'A', room, peer, proc, again and '1' or '0'}
local targets = {}
for _, m in ipairs(redis.call('ZRANGE', rkey, 0, -1)) do
  local o = owner_of(m)
  if o and m ~= peer then
    table.insert(event, m .. ':' .. o)
    if o ~= proc then targets[o] = true end
  end
end
if not again then
  redis.call('ZADD', rkey, redis.call('INCR', P .. 'seq'), peer)
  redis.call('HSET', P .. 'peers', peer, proc .. ' ' .. room)
  redis.call('SADD', P .. 'members:' .. proc, peer)
  for t in pairs(targets) do
    redis.call('PUBLISH', P .. 'ch:' .. t, 'J ' .. room .. ' ' .. peer .. ' ' .. proc)
  end
end
redis.call('PUBLISH', P .. 'ch:' .. proc, table.concat(event, ' '))
return 1
"""
)

#: ARGV: prefix, peer.
LEAVE = _LIB + "leave(ARGV[2])\nreturn 1\n"

#: ARGV: prefix [, proc]: remove the members of processes whose heartbeat expired (or of `proc`).
REAP = (
    _LIB
    + """
local dead = {}
if ARGV[2] then
  dead = {ARGV[2]}
else
  for _, p in ipairs(redis.call('SMEMBERS', P .. 'procs')) do
    if redis.call('EXISTS', P .. 'alive:' .. p) == 0 then table.insert(dead, p) end
  end
end
local n = 0
for _, d in ipairs(dead) do
  for _, peer in ipairs(redis.call('SMEMBERS', P .. 'members:' .. d)) do
    leave(peer)
    n = n + 1
  end
  redis.call('DEL', P .. 'members:' .. d)
  redis.call('SREM', P .. 'procs', d)
  if ARGV[2] then redis.call('DEL', P .. 'alive:' .. d) end
end
return n
"""
)


class RedisBackend:
    """Membership in Redis, fan-out over pub/sub, liveness by heartbeat; one ordered op queue."""

    def __init__(self, url: str, shared_health: SharedHealth | None = None, prefix: str = PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self.proc = secrets.token_hex(6)
        self.channel = f"{prefix}ch:{self.proc}"
        self.health = shared_health
        self.redis: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2)
        self._join = self.redis.register_script(JOIN)
        self._leave = self.redis.register_script(LEAVE)
        self._reap = self.redis.register_script(REAP)
        self.events: Events | None = None
        self.ops: collections.deque[tuple[str, str, str, int]] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._registered = False
        self._stopping = False
        self._dropped = 0

    async def start(self, events: Events) -> None:
        self.events = events
        try:
            await self.redis.ping()
            self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            await self.pubsub.subscribe(self.channel)
            await self._beat()
        except (RedisError, OSError) as exc:
            await self.redis.aclose()
            raise DaemonError(f"signaling.redis_url: cannot use Redis at {_safe(self.url)}: {exc}") from None
        for name, job in (("worker", self._worker()), ("listener", self._listen()), ("heartbeat", self._heartbeat())):
            self._tasks.append(asyncio.create_task(job, name=f"redis-{name}"))
        log.info("redis backend started as process %s", self.proc)

    # Requests (fire-and-forget, in order)

    def _push(self, op: tuple[str, str, str, int]) -> None:
        self.ops.append(op)
        self._wake.set()

    def join(self, peer: str, room: str, capacity: int) -> None:
        self._push(("join", peer, room, capacity))

    def leave(self, peer: str) -> None:
        self._push(("leave", peer, "", 0))

    def forward(self, owner: str, peer: str, room: str, frame: str) -> None:
        if len(self.ops) >= MAX_PENDING:
            self._dropped += 1
            if self._dropped % 1000 == 1:
                log.warning("redis is not keeping up: dropped %d relayed frames", self._dropped)
            return
        self._push(("pub", f"{self.prefix}ch:{owner}", f"D {peer} {room} {frame}", 0))

    async def _worker(self) -> None:
        # The loop condition, not only cancellation, ends it: redis-py can turn a cancel into an error.
        while not self._stopping:
            if not self.ops:
                self._wake.clear()
                await self._wake.wait()
                continue
            op = self.ops.popleft()
            try:
                if op[0] == "pub":
                    await self._publish_batch(op)
                elif op[0] == "join":
                    if not await self._join(args=[self.prefix, op[1], self.proc, op[2], op[3]]):
                        assert self.events is not None
                        self.events.full(op[1], op[2])
                else:
                    await self._leave(args=[self.prefix, op[1]])
            except (RedisError, OSError) as exc:
                log.error("redis %s failed: %s", op[0], exc)
                if op[0] == "join" and self.events is not None:
                    self.events.failed(op[1], "signaling backend unavailable")

    async def _publish_batch(self, first: tuple[str, str, str, int]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.publish(first[1], first[2])
        n = 1
        while self.ops and self.ops[0][0] == "pub" and n < PIPELINE:
            op = self.ops.popleft()
            pipe.publish(op[1], op[2])
            n += 1
        await pipe.execute()

    # Events from Redis

    async def _listen(self) -> None:
        # A bounded wait: redis-py may swallow a cancellation inside a blocking read.
        while not self._stopping:
            try:
                msg = await self.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("redis pub/sub failed, resubscribing: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if msg is not None and msg.get("type") == "message":
                try:
                    self._dispatch(msg["data"])
                except Exception:
                    log.exception("bad event on %s", self.channel)

    def _dispatch(self, data: str) -> None:
        events = self.events
        assert events is not None
        kind, _, rest = data.partition(" ")
        if kind == "D":
            peer, room, frame = rest.split(" ", 2)
            events.deliver(peer, room, frame)
        elif kind == "L":
            room, peer = rest.split(" ")
            events.left(room, peer)
        elif kind == "J":
            room, peer, owner = rest.split(" ")
            events.joined(Joined(room, peer, owner, ()))
        elif kind == "A":
            room, peer, owner, again, *members = rest.split(" ")
            before = tuple(_pair(m) for m in members)
            events.joined(Joined(room, peer, owner, before, again == "1"))

    # Liveness

    async def _beat(self) -> None:
        """Refresh our heartbeat; if we had been reaped (or Redis lost its data), say so."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}alive:{self.proc}", "1", px=HEARTBEAT_TTL_MS)
            pipe.sadd(f"{self.prefix}procs", self.proc)
            _, added = await pipe.execute()
        if added and self._registered and self.events is not None:
            log.error("this process was presumed dead and its members were removed; closing them")
            self.events.lost()
        self._registered = True

    async def _heartbeat(self) -> None:
        while not self._stopping:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self._beat()
                reaped = await self._reap(args=[self.prefix])
                if reaped:
                    log.warning("removed %d members of dead signaling processes", reaped)
                if self.health is not None:
                    doc = await self.redis.get(health.REDIS_KEY)
                    self.health.health = health.from_json(str(doc)) if doc else {}
            except (RedisError, OSError) as exc:
                log.error("redis heartbeat failed: %s", exc)

    async def ready(self) -> str | None:
        try:
            await asyncio.wait_for(self.redis.ping(), 2.0)
        except (RedisError, OSError, TimeoutError) as exc:
            return f"redis unreachable: {type(exc).__name__}"
        return None

    async def stop(self) -> None:
        """Flush queued requests, remove our remaining members, stop the tasks (every step bounded)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while self.ops:
                    await asyncio.sleep(0.01)
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_STEP)
            if stuck:
                log.warning("redis backend: %s did not stop", ", ".join(t.get_name() for t in stuck))
        steps = (
            ("reap", self._reap(args=[self.prefix, self.proc])),
            ("pubsub close", self.pubsub.aclose()),
            ("client close", self.redis.aclose()),
        )
        for name, step in steps:
            try:
                await asyncio.wait_for(step, STOP_STEP)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("redis backend: %s at shutdown failed: %s", name, type(exc).__name__)


def _pair(member: str) -> tuple[str, str]:
    peer, _, owner = member.partition(":")
    return peer, owner


def _safe(url: str) -> str:
    """The Redis URL without a password."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"
