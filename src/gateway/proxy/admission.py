"""Admission control: how many /v1 requests one process serves at once, and what the rest are told.

A request takes a slot before its body is read and keeps it for its whole upstream work (a stream holds it to
its last byte): a body being read or parsed is work too. With every slot taken,
a request waits in a FIFO queue for at most `QUEUE_TIMEOUT_S`, then gets 503 `gateway_overloaded` with
Retry-After, instead of queueing blindly in the connection pool behind thousands of open streams. A queued
request whose client has left is dropped and never reaches the upstream. One user holds at most
`MAX_CONCURRENT_REQUESTS_PER_USER` slots and queue places (429 `too_many_concurrent_requests` beyond), so one
user's thousand streams cannot starve the others. The bytes of the bodies one user has in flight are capped too
(`MAX_BODY_BYTES_IN_FLIGHT_PER_USER`, 429 `too_many_body_bytes_in_flight` beyond): a parsed body takes up to
~26 times its size, and a user's share of places times MAX_BODY_BYTES is no bound on memory. All of it is per
process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import uuid
from collections import deque
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.errors import GatewayError, RateLimited, ServiceUnavailable
from gateway.proxy.metrics import Histograms
from gateway.settings import Settings

log = logging.getLogger("gateway.admission")

REJECTION_REASONS = ("overloaded", "user_limit", "user_body_bytes", "client_left")
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# How often a queued request looks whether its client is still there: aiohttp (without handler cancellation,
# its default) tells a handler nothing until it writes.
CLIENT_CHECK_S = 0.05
CLIENT_CLOSED = 499  # nginx's "client closed request": what usage and metrics record for a client that left
# Descriptors that are not the streams' (database, listener, log files, the loop's own).
SPARE_FDS = 256


class AdmissionMetrics(Collector):
    """Queue-wait histogram, rejections by reason, and gauges read from the admission at scrape time."""

    def __init__(self, admission: Admission, registry: CollectorRegistry) -> None:
        self.admission = admission
        self.wait = Histograms("llm_gateway_queue_wait_seconds", "Time a /v1 request waited for a slot", [],
                               WAIT_BUCKETS, registry)
        self.waits = self.wait.child()  # its counts: a request let in at once adds 1 to the first bucket
        rejections = Counter("llm_gateway_admission_rejections", "Requests turned away by admission control",
                             ["reason"], registry=registry)
        self.rejected = {reason: rejections.labels(reason) for reason in REJECTION_REASONS}
        registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """In-flight requests, open streams, queued requests and the limit."""
        a = self.admission
        yield GaugeMetricFamily("llm_gateway_inflight_requests", "/v1 requests holding a slot", value=a.in_flight)
        yield GaugeMetricFamily("llm_gateway_open_streams", "Streamed /v1 requests holding a slot",
                                value=a.open_streams)
        yield GaugeMetricFamily("llm_gateway_queued_requests", "/v1 requests waiting for a slot", value=a.queued)
        yield GaugeMetricFamily("llm_gateway_admission_limit", "Slots of this process", value=a.limit)


class Admission:
    """Slots for upstream work, a bounded wait for one, and a per-user cap; see the module docstring."""

    def __init__(self, *, limit: int, per_user: int, body_bytes_per_user: int, queue_timeout_s: float,
                 registry: CollectorRegistry) -> None:
        self.limit = limit
        self.per_user = per_user
        self.body_bytes_per_user = body_bytes_per_user
        self.queue_timeout_s = queue_timeout_s
        self.retry_after = str(max(1, math.ceil(queue_timeout_s)))
        self.in_flight = 0
        self.open_streams = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._by_user: dict[int, int] = {}  # by UUID.int: a UUID's own hash is a Python method
        self._bytes_by_user: dict[int, int] = {}
        self.metrics = AdmissionMetrics(self, registry)

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry) -> Admission:
        """As many slots as the upstream pool has connections: nobody waits blindly in the pool."""
        return cls(limit=settings.upstream_max_connections, per_user=settings.max_concurrent_requests_per_user,
                   queue_timeout_s=settings.queue_timeout_s, registry=registry,
                   body_bytes_per_user=settings.body_bytes_per_user)

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    def overloaded(self) -> str | None:
        """Why this process should get no new traffic (every slot taken and requests queued), else None."""
        if self.in_flight >= self.limit and self._waiters:
            return (f"overloaded: all {self.limit} slots in use and {len(self._waiters)} requests queued "
                    f"(they wait up to {self.queue_timeout_s:g} s)")
        return None

    def enter(self, user_id: uuid.UUID) -> bool:
        """Take one of the user's places (RateLimited when all are held) and, when one is free and nobody
        queues, a slot: True. False: the caller awaits `wait`. Either way it calls `leave` once done. Synchronous,
        so the common case costs no coroutine. Called before the body is read: whether the request streams is
        told later (`streaming`)."""
        key = user_id.int
        held = self._by_user.get(key, 0)
        if held >= self.per_user:
            raise self._user_limit()
        self._by_user[key] = held + 1
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            self.metrics.waits[0] += 1  # observe(0.0): the first bucket, and nothing to the sum
            return True
        return False

    def streaming(self) -> None:
        """The admitted request, its body read, streams: counted among open streams until `leave(stream=True)`."""
        self.open_streams += 1

    def take_body_bytes(self, user_id: uuid.UUID, size: int) -> None:
        """Count SIZE more body bytes of an admitted request against its user's share; RateLimited (nothing
        counted) when they would not fit. The request gives back all it took with `give_body_bytes`."""
        key = user_id.int
        held = self._bytes_by_user.get(key, 0) + size
        if held > self.body_bytes_per_user:
            self.metrics.rejected["user_body_bytes"].inc()
            raise RateLimited(
                f"Too many request body bytes in flight: at most {self.body_bytes_per_user} per user at once on "
                "this gateway process; wait for a request to finish", code="too_many_body_bytes_in_flight",
                headers={"Retry-After": self.retry_after})
        self._bytes_by_user[key] = held

    def give_body_bytes(self, user_id: uuid.UUID, size: int) -> None:
        """Give back body bytes taken with `take_body_bytes`."""
        if not size:
            return
        key = user_id.int
        held = self._bytes_by_user[key] - size
        if held:
            self._bytes_by_user[key] = held
        else:
            del self._bytes_by_user[key]

    async def wait(self, request: web.Request, user_id: uuid.UUID) -> None:
        """Queue for a slot after `enter` said False: a slot, or the error (503 after the queue timeout, the
        client gone), with the user's place given back."""
        try:
            await self._acquire(request)
        except BaseException:
            self._give_user(user_id)
            raise

    def leave(self, user_id: uuid.UUID, *, stream: bool) -> None:
        """Give back the slot (to the oldest waiter, if any) and the user's place."""
        if stream:
            self.open_streams -= 1
        if self._waiters:
            self._release()
        else:
            self.in_flight -= 1
        self._give_user(user_id)

    def _user_limit(self) -> RateLimited:
        self.metrics.rejected["user_limit"].inc()
        return RateLimited(
            f"Too many concurrent requests: at most {self.per_user} per user at once on this gateway process; "
            "wait for one to finish", code="too_many_concurrent_requests", headers={"Retry-After": self.retry_after})

    def _give_user(self, user_id: uuid.UUID) -> None:
        key = user_id.int
        held = self._by_user[key] - 1
        if held:
            self._by_user[key] = held
        else:
            del self._by_user[key]

    async def _acquire(self, request: web.Request) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.queue_timeout_s
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            while not waiter.done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    self.metrics.rejected["overloaded"].inc()
                    raise ServiceUnavailable(
                        f"The gateway is at capacity ({self.limit} requests in flight on this process) and no "
                        f"slot freed within {self.queue_timeout_s:g} s; retry shortly",
                        code="gateway_overloaded", headers={"Retry-After": self.retry_after})
                await asyncio.wait((waiter,), timeout=min(remaining, CLIENT_CHECK_S))
                if not waiter.done() and not _connected(request):
                    self.metrics.rejected["client_left"].inc()
                    raise GatewayError("The client closed the connection while its request was queued",
                                       status=CLIENT_CLOSED, code="client_closed_request")
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):  # with handler cancellation on, a client that left
                self.metrics.rejected["client_left"].inc()
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot on the way out: pass it on
            else:
                waiter.cancel()
                self._waiters.remove(waiter)
            raise
        finally:
            self.metrics.wait.observe(self.metrics.waits, loop.time() - started)

    def _release(self) -> None:
        # Hand the slot straight to the oldest waiter: in_flight stays, nobody can overtake the queue.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


def raise_open_file_limit(slots: int) -> None:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (each open stream takes two descriptors: the client's
    and the upstream's), and warn when even the hard limit cannot hold `slots` streams."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit is refused as a soft one (the kernel's nr_open caps it): leave soft as it is.
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.info("raised the open-file limit (RLIMIT_NOFILE) from %d to %d", soft, hard)
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    needed = 2 * slots + SPARE_FDS
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("the open-file limit (%d) holds about %d concurrent streams, fewer than "
                    "UPSTREAM_MAX_CONNECTIONS=%d: raise `ulimit -n` (hard) to at least %d",
                    soft, max(0, (soft - SPARE_FDS) // 2), slots, needed)
