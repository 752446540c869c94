"""The gateway's side of translation: the calls to the translation workers (pool.py owns the processes).
Nothing here imports litellm, httpx or openai (import-linter).

A call is checked first (bounds.py: size, messages, no remote URL), then leased a worker within its caller's
share, sent, and read within its deadline. A worker that dies fails its in-flight calls with a clean 503
(protocol.worker_failure) and is replaced by the next call; a call past its deadline is a 504 (WorkerTimeout),
and leaving it cancels it in the worker. The app's cleanup stops the workers it started (a pool handed in by
its maker, as the test suite's session pool, is the maker's to stop)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Hashable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver

from gateway.errors import WorkerTimeout
from gateway.proxy.forward import DEFAULT_MAX_UPSTREAM_BODY, Target, UpstreamResult, sendable
from gateway.proxy.translation import protocol
from gateway.proxy.translation.bounds import CallBounds
from gateway.proxy.translation.pool import Child, Lease, PoolConfig, WorkerPool
from gateway.ssrf import UrlPolicy
from gateway.web.resolver import GuardedResolver

if TYPE_CHECKING:
    from gateway.settings import Settings

JSON_HEADERS = {"Content-Type": "application/json"}
WORKER_URL = "http://translation-worker" + protocol.PATH
DEFAULT_DEADLINE_S = 600.0


class Translator:
    """An app's handle on the translation workers: bounds, shares and deadlines of its calls, and the sessions to
    the workers' sockets on the app's loop."""

    def __init__(self, *, timeout_s: float, urls: UrlPolicy, max_body_bytes: int = DEFAULT_MAX_UPSTREAM_BODY,
                 connect_timeout_s: float = 10.0, max_connections: int = 100, max_connections_per_host: int = 0,
                 max_request_bytes: int = 64 * 1024 * 1024, log_level: str = "INFO", log_format: str = "text",
                 dns: AbstractResolver | None = None, workers: int = 1, max_rss_bytes: int = 0,
                 user_share: float = 0.5, calls_per_worker: int = 64, deadline_s: float = DEFAULT_DEADLINE_S,
                 max_messages: int = 10_000, pool: WorkerPool | None = None) -> None:
        self.timeout_s = timeout_s
        self.urls = urls
        self.max_body_bytes = max_body_bytes
        self.deadline_s = deadline_s
        self.bounds = CallBounds(max_bytes=max_request_bytes, max_messages=max_messages)
        config = PoolConfig(
            allow_private=urls.allow_private, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
            max_body_bytes=max_body_bytes, max_connections=max_connections,
            max_connections_per_host=max_connections_per_host,
            # The worker reads the whole call document: the client's body and the target around it.
            max_request_bytes=max_request_bytes + (1 << 20), log_level=log_level, log_format=log_format,
            workers=workers, max_rss_bytes=max_rss_bytes, user_share=user_share, calls_per_worker=calls_per_worker)
        # A pool made for the same workers (and the same name lookup) serves this app too; else one of its own.
        self.owns_pool = pool is None or pool.config != config or dns is not None
        if self.owns_pool:
            pool = WorkerPool(config, GuardedResolver(urls, resolver=dns), owns_resolver=dns is None)
        assert pool is not None
        self.pool = pool
        self._sessions: dict[Child, aiohttp.ClientSession] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, urls: UrlPolicy, dns: AbstractResolver | None = None,
                      pool: WorkerPool | None = None) -> Translator:
        """The translator of an app: the gateway's timeouts, limits, logging and address policy."""
        return cls(timeout_s=settings.upstream_timeout_s, urls=urls, max_body_bytes=settings.max_upstream_body_bytes,
                   connect_timeout_s=settings.upstream_connect_timeout_s,
                   max_connections=settings.upstream_max_connections,
                   max_connections_per_host=settings.upstream_max_connections_per_host,
                   max_request_bytes=settings.translation_max_request_bytes,
                   log_level=settings.log_level, log_format=settings.log_format, dns=dns,
                   workers=settings.translation_workers,
                   max_rss_bytes=settings.translation_worker_max_rss_mb << 20,
                   user_share=settings.translation_user_share, calls_per_worker=settings.translation_worker_calls,
                   deadline_s=settings.translation_deadline_s, max_messages=settings.translation_max_messages,
                   pool=pool)

    @property
    def worker_pid(self) -> int | None:
        """The first running worker's process id (None before the first translated request)."""
        pids = self.worker_pids
        return pids[0] if pids else None

    @property
    def worker_pids(self) -> list[int]:
        """The running workers' process ids."""
        children = (self.pool.child(i) for i in range(self.pool.config.workers))
        return [child.process.pid for child in children if child is not None]

    @property
    def socket_path(self) -> str | None:
        """The first running worker's socket, in a directory only the gateway's user may enter."""
        child = self.pool.child(0)
        return child.socket_path if child is not None else None

    async def ready(self) -> None:
        """Start the workers if needed and wait until they have imported litellm."""
        await asyncio.gather(*(self.pool.at_home(functools.partial(self.pool.running, i))
                               for i in range(self.pool.config.workers)))

    async def _session(self, child: Child) -> aiohttp.ClientSession:
        session = self._sessions.get(child)
        if session is None:
            for gone in [c for c in self._sessions if not c.alive]:
                await self._sessions.pop(gone).close()
            # Keep-alive: the client drops idle connections (15 s) before the worker would (75 s), and a call
            # that fails before its headers came back was never taken (call() sends it again).
            session = self._sessions[child] = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(child.socket_path, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), auto_decompress=False)
        return session

    async def call(self, target: Target, body: dict[str, Any], *, stream: bool, user: Hashable | None = None
                   ) -> tuple[aiohttp.ClientResponse, Child, Lease]:
        """Check one call, lease it a worker and send it; the worker's answer (the caller releases the lease and
        the answer: finish())."""
        self.bounds.check(body)
        payload = orjson.dumps({"target": {
            "provider": target.provider, "wire": target.wire, "litellm_provider": target.litellm_provider,
            "base_url": target.base_url, "model": target.model, "api_key": target.api_key, "name": target.name,
        }, "body": body, "stream": stream, "timeout_s": self.timeout_s})
        self.bounds.check_size(len(payload))
        lease = self.pool.lease(user, len(payload))
        try:
            for attempt in range(2):
                child = await self.pool.at_home(functools.partial(self.pool.running, lease.slot))
                session = await self._session(child)
                try:
                    response = await session.post(WORKER_URL, data=sendable(payload),
                                                               headers={protocol.SECRET_HEADER: child.secret})
                    return response, child, lease
                except aiohttp.ClientError as exc:
                    # No headers back: the worker never took the call (it answers them before calling out), so
                    # a new worker may. One killed a moment ago is reaped within this wait; a live one was busy.
                    await self.pool.at_home(functools.partial(self.pool.wait_exit, child, 1.0))
                    if attempt:
                        raise child.failure(exc.__class__.__name__) from None
        except BaseException:
            self.pool.release(lease)
            raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the sessions to the workers (our keep-alive connections first: a worker's shutdown need not wait
        for them), then stop the workers, if this app started them."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
        if self.owns_pool:
            await self.pool.at_home(self.pool.close)


def _deadline(translator: Translator) -> WorkerTimeout:
    return WorkerTimeout(f"The translated call took longer than {translator.deadline_s:g} s, the gateway's "
                         "deadline (TRANSLATION_DEADLINE_S)")


async def _frames(response: aiohttp.ClientResponse, child: Child, target: Target) -> AsyncGenerator[bytes, None]:
    """The worker's data frames as they come; its error raised as the in-process translation raised it; a worker
    gone mid-answer as a clean 503 (protocol.worker_failure)."""
    if response.status != 200 or response.content_type != protocol.FRAMES_TYPE:
        raise child.failure(f"HTTP {response.status}")
    content = response.content
    try:
        while True:
            head = await content.readexactly(protocol.HEAD)
            size = int.from_bytes(head[1:], "big")
            payload = await content.readexactly(size) if size else b""
            kind = head[:1]
            if kind == protocol.DATA:
                yield payload
            elif kind == protocol.ERROR:
                raise protocol.error_of(payload, target.base_url)
            else:
                return
    except (asyncio.IncompleteReadError, aiohttp.ClientError) as exc:
        raise child.failure(f"the answer broke off: {exc.__class__.__name__}") from None


async def complete(translator: Translator, target: Target, body: dict[str, Any], *, user: Hashable | None = None
                   ) -> UpstreamResult:
    """A non-streamed chat completion, answered in OpenAI's shape, within the call's deadline."""
    try:
        async with asyncio.timeout(translator.deadline_s):
            response, child, lease = await translator.call(target, body, stream=False, user=user)
            try:
                parts = [part async for part in _frames(response, child, target)]
            finally:
                response.close()
                translator.pool.release(lease)
    except TimeoutError:
        raise _deadline(translator) from None
    return UpstreamResult(200, dict(JSON_HEADERS), b"".join(parts))


async def stream(translator: Translator, target: Target, body: dict[str, Any], *, user: Hashable | None = None
                 ) -> AsyncGenerator[bytes, None]:
    """A streamed chat completion as OpenAI's SSE frames, relayed frame by frame as the worker sends them; the
    deadline runs until the first frame (the stream's own length is the relay's limit)."""
    lease: Lease | None = None
    response: aiohttp.ClientResponse | None = None
    frames: AsyncGenerator[bytes, None] | None = None
    try:
        try:
            async with asyncio.timeout(translator.deadline_s):
                response, child, lease = await translator.call(target, body, stream=True, user=user)
                frames = _frames(response, child, target)
                first = await anext(frames, None)
        except TimeoutError:
            raise _deadline(translator) from None
        if first is None:
            return
        yield first
        async for frame in frames:
            yield frame
    finally:
        if frames is not None:
            await frames.aclose()
        if response is not None:
            response.close()
        if lease is not None:
            translator.pool.release(lease)
