"""The gateway's side of translation: a worker process that owns litellm (worker.py), started on the first
translated request, and the calls to it. Nothing here imports litellm, httpx or openai (import-linter).

One worker per gateway process, spawned lazily with asyncio (concurrent first requests share one start) and
ready once litellm is imported. A worker that dies fails its in-flight calls with a clean 503 and is replaced by
the next call; the app's cleanup stops it (its stdin closes, SIGTERM, then SIGKILL), and it exits by itself
when the gateway goes away (its stdin ends). Its stderr is the gateway's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import site
import socket
import sys
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver

import gateway
from gateway.errors import GatewayError
from gateway.proxy.forward import DEFAULT_MAX_UPSTREAM_BODY, Target, UpstreamResult
from gateway.proxy.translation import protocol
from gateway.ssrf import UnsafeURLError, UrlPolicy
from gateway.web.resolver import GuardedResolver

if TYPE_CHECKING:
    from gateway.settings import Settings

log = logging.getLogger("gateway.translation")

JSON_HEADERS = {"Content-Type": "application/json"}
WORKER_URL = "http://translation-worker" + protocol.PATH
START_TIMEOUT_S = 120.0  # litellm's import takes seconds, more on a busy machine
STOP_TIMEOUT_S = 5.0


class _Child:
    """One worker process: its pipes, its socket's private directory, its secret, the session to its socket."""

    def __init__(self, process: asyncio.subprocess.Process, folder: str, secret: str) -> None:
        self.process = process
        self.folder = folder
        self.secret = secret
        # Keep-alive: the client drops idle connections (15 s) before the worker would (75 s), and a call that
        # fails before its headers came back was never taken (call() sends it again).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(os.path.join(folder, "worker.sock"), limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), auto_decompress=False)
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def alive(self) -> bool:
        """Not known to have exited."""
        return self.process.returncode is None

    def spawn(self, coro: Any) -> None:
        """A task kept until done."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def kill(self) -> None:
        """SIGKILL, when still running."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


def _environment() -> dict[str, str]:
    """The gateway's environment, with the package the gateway runs from first on the child's path (a
    checkout run through sys.path would otherwise give the child an installed copy)."""
    env = dict(os.environ)
    root = str(Path(gateway.__file__).resolve().parent.parent)
    installed = {*site.getsitepackages(), site.getusersitepackages()}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class Translator:
    """The handle on the translation worker: spawned on first use, replaced when it dies, stopped by close()."""

    def __init__(self, *, timeout_s: float, urls: UrlPolicy, max_body_bytes: int = DEFAULT_MAX_UPSTREAM_BODY,
                 connect_timeout_s: float = 10.0, max_connections: int = 100, max_connections_per_host: int = 0,
                 max_request_bytes: int = 64 * 1024 * 1024, log_level: str = "INFO", log_format: str = "text",
                 dns: AbstractResolver | None = None) -> None:
        self.timeout_s = timeout_s
        self.urls = urls
        self.max_body_bytes = max_body_bytes
        self.dns = dns
        # The child's configuration: the URL policy's inputs and the limits of the gateway's own session.
        self._config: dict[str, Any] = {
            "allow_private": urls.allow_private, "timeout_s": timeout_s, "connect_timeout_s": connect_timeout_s,
            "max_body_bytes": max_body_bytes, "max_connections": max_connections,
            "max_connections_per_host": max_connections_per_host, "max_request_bytes": max_request_bytes,
            "log_level": log_level, "log_format": log_format,
        }
        self._resolver = GuardedResolver(urls, resolver=dns)
        self._child: _Child | None = None
        self._starting: asyncio.Task[_Child] | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, *, urls: UrlPolicy, dns: AbstractResolver | None = None
                      ) -> Translator:
        """The translator of an app: the gateway's timeouts, limits, logging and address policy."""
        return cls(timeout_s=settings.upstream_timeout_s, urls=urls, max_body_bytes=settings.max_upstream_body_bytes,
                   connect_timeout_s=settings.upstream_connect_timeout_s,
                   max_connections=settings.upstream_max_connections,
                   max_connections_per_host=settings.upstream_max_connections_per_host,
                   max_request_bytes=2 * settings.max_body_bytes + (1 << 20), log_level=settings.log_level,
                   log_format=settings.log_format, dns=dns)

    @property
    def worker_pid(self) -> int | None:
        """The running worker's process id (None before the first translated request)."""
        child = self._child
        return child.process.pid if child is not None and child.alive else None

    @property
    def socket_path(self) -> str | None:
        """The running worker's socket, in a directory only the gateway's user may enter."""
        child = self._child
        return os.path.join(child.folder, "worker.sock") if child is not None and child.alive else None

    async def ready(self) -> None:
        """Start the worker if needed and wait until it has imported litellm."""
        await self._running()

    async def _running(self) -> _Child:
        child = self._child
        if child is not None and child.alive:
            return child
        if self._closed:
            raise protocol.worker_failure("the gateway is stopping")
        starting = self._starting
        if starting is None:
            starting = self._starting = asyncio.ensure_future(self._start())
            starting.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            # Shielded: a caller that leaves does not cancel the start the others wait for.
            return await asyncio.shield(starting)
        finally:
            if starting.done() and self._starting is starting:
                self._starting = None

    async def _start(self) -> _Child:
        folder = tempfile.mkdtemp(prefix="llmgw-translation-")  # 0700: only this user reaches the socket
        secret = secrets.token_urlsafe(32)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", protocol.WORKER_MODULE, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=_environment(), limit=1 << 20)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise protocol.worker_failure(f"it could not be started: {exc.__class__.__name__}") from None
        child = _Child(process, folder, secret)
        try:
            assert process.stdin is not None
            config = {**self._config, "secret": secret, "socket": os.path.join(folder, "worker.sock")}
            process.stdin.write(orjson.dumps(config) + b"\n")
            await process.stdin.drain()
            await asyncio.wait_for(self._until_ready(child), START_TIMEOUT_S)
        except BaseException as exc:
            child.kill()
            await self._reap(child)
            if isinstance(exc, (ConnectionError, TimeoutError, GatewayError)):
                raise protocol.worker_failure(f"it did not start: {exc.__class__.__name__}") from None
            raise
        child.spawn(self._serve_lines(child))
        child.spawn(self._watch(child))
        self._child = child
        log.info("translation worker started: pid=%s", process.pid)
        return child

    @staticmethod
    async def _until_ready(child: _Child) -> None:
        assert child.process.stdout is not None
        async for message in protocol.messages(child.process.stdout):
            if message.get("ready"):
                return
        raise protocol.worker_failure(f"it exited while starting (status {await child.process.wait()})")

    async def _serve_lines(self, child: _Child) -> None:
        """Answer the worker's name lookups with the gateway's resolver, until its stdout ends."""
        assert child.process.stdout is not None
        async for message in protocol.messages(child.process.stdout):
            if isinstance(message.get("resolve"), str):
                child.spawn(self._lookup(child, message))

    async def _lookup(self, child: _Child, message: dict[str, Any]) -> None:
        answer: dict[str, Any] = {"resolved": message.get("id")}
        try:
            results = await self._resolver.resolve(str(message["resolve"]), int(message.get("port") or 0),
                                                   socket.AddressFamily(int(message.get("family") or 0)))
            answer["addresses"] = [dict(result) for result in results]
        except UnsafeURLError as exc:
            answer["refused"] = {"reason": exc.reason, "category": exc.category}
        except (OSError, ValueError) as exc:
            answer["error"] = str(exc) or exc.__class__.__name__
        stdin = child.process.stdin
        if stdin is not None and child.alive and not stdin.is_closing():
            stdin.write(orjson.dumps(answer) + b"\n")

    async def _watch(self, child: _Child) -> None:
        status = await child.process.wait()
        if self._child is child:
            self._child = None
        if not self._closed:
            log.warning("translation worker exited: pid=%s status=%s; the next translated request starts a new one",
                        child.process.pid, status)
        await self._reap(child)

    @staticmethod
    async def _reap(child: _Child) -> None:
        await child.process.wait()
        await child.session.close()
        shutil.rmtree(child.folder, ignore_errors=True)

    async def call(self, target: Target, body: dict[str, Any], *, stream: bool) -> aiohttp.ClientResponse:
        """Send one call to the worker; its answer (the caller releases it)."""
        payload = orjson.dumps({"target": {
            "provider": target.provider, "wire": target.wire, "litellm_provider": target.litellm_provider,
            "base_url": target.base_url, "model": target.model, "api_key": target.api_key, "name": target.name,
        }, "body": body, "stream": stream, "timeout_s": self.timeout_s})
        for attempt in range(2):
            child = await self._running()
            try:
                return await child.session.post(WORKER_URL, data=payload,
                                                headers={protocol.SECRET_HEADER: child.secret})
            except aiohttp.ClientError as exc:
                # No headers back: the worker never took the call (it answers them before calling out), so a
                # new worker may. One killed a moment ago is reaped within this wait; a live one was only busy.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(child.process.wait()), 1.0)
                if self._child is child and not child.alive:
                    self._child = None
                if attempt:
                    raise protocol.worker_failure(exc.__class__.__name__) from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Stop the worker: its stdin ends and SIGTERM, SIGKILL if it is still there after a few seconds."""
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        child, self._child = self._child, None
        if child is not None:
            # Our keep-alive connections closed first: the worker's shutdown need not wait for them.
            await child.session.close()
            if child.process.stdin is not None:
                child.process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
            try:
                await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                child.kill()
            await self._reap(child)
            for task in list(child.tasks):
                task.cancel()
            await asyncio.gather(*child.tasks, return_exceptions=True)
        if self.dns is None:
            await self._resolver.close()


async def _frames(response: aiohttp.ClientResponse, target: Target) -> AsyncGenerator[bytes, None]:
    """The worker's data frames as they come; its error raised as the in-process translation raised it; a worker
    gone mid-answer as a clean 503 (protocol.worker_failure)."""
    if response.status != 200 or response.content_type != protocol.FRAMES_TYPE:
        raise protocol.worker_failure(f"HTTP {response.status}")
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
        raise protocol.worker_failure(f"the answer broke off: {exc.__class__.__name__}") from None


async def complete(translator: Translator, target: Target, body: dict[str, Any]) -> UpstreamResult:
    """A non-streamed chat completion, answered in OpenAI's shape."""
    response = await translator.call(target, body, stream=False)
    try:
        parts = [part async for part in _frames(response, target)]
    finally:
        response.close()
    return UpstreamResult(200, dict(JSON_HEADERS), b"".join(parts))


async def stream(translator: Translator, target: Target, body: dict[str, Any]) -> AsyncGenerator[bytes, None]:
    """A streamed chat completion as OpenAI's SSE frames, relayed frame by frame as the worker sends them."""
    response = await translator.call(target, body, stream=True)
    try:
        async for frame in _frames(response, target):
            yield frame
    finally:
        response.close()
