"""`turnkit meter run`: the on-node loop — statsdb events in, durable buffer, batches to the store.

Three tasks share one Buffer: `subscribe` (PSUBSCRIBE, reconnecting with backoff — a coturn or
Redis restart only pauses it), `reconcile` (closes sessions coturn forgot) and `ship` (seals and
sends batches; an unreachable store leaves them in the buffer for the next try).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.asyncio as aredis

from turnkit.meter import cost, events, ledger
from turnkit.meter.buffer import Buffer
from turnkit.meter.central import Central
from turnkit.meter.metrics import MeterMetrics

log = logging.getLogger(__name__)

RECONCILE_EVERY = 10.0
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class MeterSettings:
    node: str
    region: str
    statsdb_url: str
    central_url: str
    buffer: Path
    flush_interval: float
    per_gb: float
    budget: float
    ca_file: str | None = None
    grace: float = ledger.GRACE
    statsdb_password: str | None = field(default=None, repr=False)


class Meter:
    def __init__(self, s: MeterSettings, clock: Callable[[], float] = time.time) -> None:
        self.s = s
        self.clock = clock
        self.buffer = Buffer(s.buffer)
        self.sessions = self.buffer.sessions()
        self.central = Central.from_url(s.central_url, s.ca_file)
        self.metrics = MeterMetrics(s.node, s.region, s.budget)
        self._update_gauges()

    def close(self) -> None:
        self.buffer.close()

    # -- the pure core, applied and persisted ------------------------------------------------
    def apply(self, step: ledger.Step) -> None:
        self.buffer.apply(step)
        for key in step.remove:
            self.sessions.pop(key, None)
        for session in step.upsert:
            self.sessions[session.key] = session
        for usage in step.usage:
            self.metrics.count(usage)
        self._update_gauges()

    def handle(self, channel: str, payload: str) -> None:
        try:
            event = events.parse(channel, payload)
        except events.BadEvent as exc:
            log.warning("ignored statsdb message: %s", exc)
            return
        if event is not None:
            self.apply(ledger.step(self.sessions, event, self.clock()))

    def _update_gauges(self) -> None:
        labels = self.metrics.labels
        self.metrics.live.labels(**labels).set(sum(1 for s in self.sessions.values() if not s.deleted))
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        spend = cost.cost(self.buffer.month_egress(now.strftime("%Y-%m")), self.s.per_gb)
        self.metrics.spend.labels(**labels).set(spend)
        self.metrics.projected.labels(**labels).set(cost.projection(spend, now))

    # -- I/O tasks ----------------------------------------------------------------------------
    async def subscribe(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            client = self._statsdb()
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(events.PATTERN)
                    log.info("subscribed to statsdb events")
                    attempt = 0
                    await self.reconcile_once(client)
                    while not stop.is_set():
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if msg and msg["type"] == "pmessage":
                            self.handle(msg["channel"].decode(), msg["data"].decode(errors="replace"))
            except (redis.RedisError, OSError) as exc:
                log.warning("statsdb connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()
            await _sleep(stop, BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1

    def _statsdb(self) -> aredis.Redis:
        return aredis.Redis.from_url(self.s.statsdb_url, password=self.s.statsdb_password, socket_connect_timeout=5)

    async def reconcile_once(self, client: aredis.Redis) -> None:
        live = set()
        async for key in client.scan_iter(match=events.STATUS_KEYS, count=1000):
            found = ledger.live_key(key.decode(errors="replace"))
            if found:
                live.add(found)
        self.apply(ledger.reconcile(list(self.sessions.values()), live, self.clock(), self.s.grace))

    async def reconcile(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep(stop, RECONCILE_EVERY)
            client = self._statsdb()
            try:
                await self.reconcile_once(client)
            except (redis.RedisError, OSError) as exc:
                log.warning("reconcile skipped: statsdb unreachable (%s)", type(exc).__name__)
            finally:
                await client.aclose()

    async def ship_once(self) -> int:
        """Seal pending usage and send every waiting batch in order; how many were sent.

        SQLite stays on the loop's thread; only the network call runs in a worker thread.
        """
        self.buffer.seal()
        sent = 0
        for batch_id, rows in self.buffer.batches():
            try:
                await asyncio.to_thread(self.central.apply, self.s.node, self.s.region, batch_id, rows)
            except (redis.RedisError, OSError) as exc:
                log.warning("central store unreachable (%s); batch %s stays buffered", type(exc).__name__, batch_id)
                break
            self.buffer.ack(batch_id)
            sent += 1
        self.metrics.buffered.labels(**self.metrics.labels).set(len(self.buffer.batches()))
        return sent

    async def ship(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep(stop, self.s.flush_interval)
            await self.ship_once()
        await self.ship_once()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self.subscribe(stop), self.reconcile(stop), self.ship(stop))


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
