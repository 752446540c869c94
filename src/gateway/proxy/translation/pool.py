"""The translation workers of one gateway process: N child processes that own litellm (worker.py), each spawned on
first use, replaced when it dies, killed and replaced when it grows past its memory ceiling, and stopped by
close(). Nothing here imports litellm, httpx or openai (import-linter).

The pool is managed on the event loop that first used it (its home: the app's loop in production; the test
suite's session pool lives on a thread of its own and serves every test app). Leases are taken under a lock, so
any loop may ask: a caller's calls are spread over the workers (the least loaded first) and bounded by its share
— at most `user_share` of all call slots, and of the workers — so one user cannot hold every worker while
another user's calls queue behind theirs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import shutil
import site
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

import gateway
from gateway.errors import GatewayError, TranslationUnavailable, WorkerOverloaded
from gateway.proxy.translation import protocol
from gateway.ssrf import UnsafeURLError
from gateway.web.resolver import GuardedResolver

log = logging.getLogger("gateway.translation")

START_TIMEOUT_S = 120.0  # litellm's import takes seconds, more on a busy machine
STOP_TIMEOUT_S = 5.0
MEMORY_POLL_S = 0.2
MIN_CALL_WEIGHT = 64 * 1024  # a small call still occupies its worker: counted as at least this many bytes
# What the worker's Python needs from the gateway's environment; nothing else crosses (no proxy variables, no
# LLM_GATEWAY_* secrets, no credentials of any other tool).
KEPT_ENVIRONMENT = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR"})
T = TypeVar("T")


@dataclass(frozen=True)
class PoolConfig:
    """What a pool's workers are started with; two apps with equal configurations may share one pool."""

    allow_private: bool
    timeout_s: float
    connect_timeout_s: float
    max_body_bytes: int
    max_connections: int
    max_connections_per_host: int
    max_request_bytes: int
    log_level: str
    log_format: str
    workers: int = 1
    max_rss_bytes: int = 0  # 0: no ceiling
    user_share: float = 0.5
    calls_per_worker: int = 64

    def spawn_document(self, secret: str, socket_path: str) -> dict[str, Any]:
        """The worker's first line of stdin."""
        return {"allow_private": self.allow_private, "timeout_s": self.timeout_s,
                "connect_timeout_s": self.connect_timeout_s, "max_body_bytes": self.max_body_bytes,
                "max_connections": self.max_connections, "max_connections_per_host": self.max_connections_per_host,
                "max_request_bytes": self.max_request_bytes, "log_level": self.log_level,
                "log_format": self.log_format, "secret": secret, "socket": socket_path}


def worker_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: only what Python and litellm need, and the package the gateway runs from first
    on its path (a checkout run through sys.path would otherwise give the child an installed copy)."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if name in KEPT_ENVIRONMENT or name.startswith("LC_")}
    # litellm would fetch its price map and send telemetry at import otherwise.
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False")
    root = str(Path(gateway.__file__).resolve().parent.parent)
    installed = {*site.getsitepackages(), site.getusersitepackages()}
    path = [p for p in (source.get("PYTHONPATH") or "").split(os.pathsep) if p]
    if root not in installed:
        path.insert(0, root)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    return env


class Child:
    """One worker process: its pipes, its socket's private directory, its secret."""

    def __init__(self, process: asyncio.subprocess.Process, folder: str, secret: str) -> None:
        self.process = process
        self.folder = folder
        self.secret = secret
        self.socket_path = os.path.join(folder, "worker.sock")
        self.tasks: set[asyncio.Task[Any]] = set()
        self.ended: str | None = None  # why the gateway ended it (memory), for its in-flight calls' error

    @property
    def alive(self) -> bool:
        """Not known to have exited."""
        return self.process.returncode is None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """A task kept until done."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def kill(self) -> None:
        """SIGKILL, when still running."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def failure(self, what: str) -> TranslationUnavailable:
        """The error of a call this worker did not finish."""
        if self.ended is not None:
            return TranslationUnavailable(f"The translation worker was restarted under this call ({self.ended}); "
                                          "the next request goes to a fresh one",
                                          headers={"Retry-After": str(protocol.RETRY_AFTER_S)})
        return protocol.worker_failure(what)


@dataclass
class _Slot:
    """One worker's place in the pool and what is leased on it."""

    child: Child | None = None
    starting: asyncio.Task[Child] | None = None
    calls: int = 0
    weight: int = 0
    users: dict[Hashable | None, int] = field(default_factory=dict)


@dataclass
class Lease:
    """One call's hold on a worker slot, given back by release()."""

    slot: int
    user: Hashable | None
    weight: int
    released: bool = False


def _rss_bytes(pid: int) -> int | None:
    """A process's resident memory, from /proc (None where there is none)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class WorkerPool:
    """N translation workers: leased per call, started lazily, replaced when they die or outgrow their memory."""

    def __init__(self, config: PoolConfig, resolver: GuardedResolver, *, owns_resolver: bool = True) -> None:
        self.config = config
        self._resolver = resolver
        self._owns_resolver = owns_resolver
        self._slots = [_Slot() for _ in range(config.workers)]
        self._lock = threading.Lock()
        self.home: asyncio.AbstractEventLoop | None = None  # set on first use, unless its maker chose one
        self._closed = False
        capacity = config.workers * config.calls_per_worker
        self.user_calls = max(1, math.floor(capacity * config.user_share))
        self.user_workers = max(1, math.floor(config.workers * config.user_share))

    # -- leases: any thread ---------------------------------------------------------------------------------------

    def lease(self, user: Hashable | None, size: int) -> Lease:
        """A worker slot for one call of `user`; WorkerOverloaded when the caller's share is in use."""
        weight = max(size, MIN_CALL_WEIGHT)
        with self._lock:
            held = [i for i, slot in enumerate(self._slots) if slot.users.get(user)]
            if sum(self._slots[i].users[user] for i in held) >= self.user_calls:
                raise WorkerOverloaded(
                    f"Too many translated calls in flight for this caller (at most {self.user_calls} at once, its "
                    "share of the translation workers); retry when one has finished", headers={"Retry-After": "1"})
            candidates = held if len(held) >= self.user_workers else range(len(self._slots))
            index = min(candidates, key=lambda i: (self._slots[i].weight, self._slots[i].calls))
            slot = self._slots[index]
            slot.calls += 1
            slot.weight += weight
            slot.users[user] = slot.users.get(user, 0) + 1
        return Lease(index, user, weight)

    def release(self, lease: Lease) -> None:
        """Give a lease back (once)."""
        with self._lock:
            if lease.released:
                return
            lease.released = True
            slot = self._slots[lease.slot]
            slot.calls -= 1
            slot.weight -= lease.weight
            left = slot.users[lease.user] - 1
            if left:
                slot.users[lease.user] = left
            else:
                del slot.users[lease.user]

    # -- management: on the home loop -----------------------------------------------------------------------------

    async def at_home(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a management coroutine on the pool's loop, from whichever loop asks."""
        loop = asyncio.get_running_loop()
        if self.home is None:
            self.home = loop
        if self.home is loop:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), self.home))

    def child(self, index: int) -> Child | None:
        """The running worker of a slot, if any."""
        child = self._slots[index].child
        return child if child is not None and child.alive else None

    async def running(self, index: int) -> Child:
        """The slot's worker, started if needed (concurrent callers share one start)."""
        slot = self._slots[index]
        child = slot.child
        if child is not None and child.alive:
            return child
        if self._closed:
            raise protocol.worker_failure("the gateway is stopping")
        starting = slot.starting
        if starting is None:
            starting = slot.starting = asyncio.ensure_future(self._start(slot))
            starting.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            # Shielded: a caller that leaves does not cancel the start the others wait for.
            return await asyncio.shield(starting)
        finally:
            if starting.done() and slot.starting is starting:
                slot.starting = None

    async def wait_exit(self, child: Child, timeout_s: float) -> None:
        """Wait a moment for a worker to exit (one killed a moment ago is reaped within it); forget it if it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.process.wait()), timeout_s)
        for slot in self._slots:
            if slot.child is child and not child.alive:
                slot.child = None

    async def _start(self, slot: _Slot) -> Child:
        folder = tempfile.mkdtemp(prefix="llmgw-translation-")  # 0700: only this user reaches the socket
        secret = secrets.token_urlsafe(32)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", protocol.WORKER_MODULE, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=worker_environment(), limit=1 << 20)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise protocol.worker_failure(f"it could not be started: {exc.__class__.__name__}") from None
        child = Child(process, folder, secret)
        try:
            assert process.stdin is not None
            process.stdin.write(orjson.dumps(self.config.spawn_document(secret, child.socket_path)) + b"\n")
            await process.stdin.drain()
            await asyncio.wait_for(self._until_ready(child), START_TIMEOUT_S)
        except BaseException as exc:
            child.kill()
            await self._reap(child)
            if isinstance(exc, (ConnectionError, TimeoutError, GatewayError)):
                raise protocol.worker_failure(f"it did not start: {exc.__class__.__name__}") from None
            raise
        child.spawn(self._serve_lines(child))
        child.spawn(self._watch(slot, child))
        if self.config.max_rss_bytes:
            child.spawn(self._watch_memory(slot, child))
        slot.child = child
        log.info("translation worker started: pid=%s", process.pid)
        return child

    @staticmethod
    async def _until_ready(child: Child) -> None:
        assert child.process.stdout is not None
        async for message in protocol.messages(child.process.stdout):
            if message.get("ready"):
                return
        raise protocol.worker_failure(f"it exited while starting (status {await child.process.wait()})")

    async def _serve_lines(self, child: Child) -> None:
        """Answer the worker's name lookups with the gateway's resolver, until its stdout ends."""
        assert child.process.stdout is not None
        async for message in protocol.messages(child.process.stdout):
            if isinstance(message.get("resolve"), str):
                child.spawn(self._lookup(child, message))

    async def _lookup(self, child: Child, message: dict[str, Any]) -> None:
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

    async def _watch(self, slot: _Slot, child: Child) -> None:
        status = await child.process.wait()
        if slot.child is child:
            slot.child = None
        if not self._closed and child.ended is None:
            log.warning("translation worker exited: pid=%s status=%s; the next translated request starts a new one",
                        child.process.pid, status)
        await self._reap(child)

    async def _watch_memory(self, slot: _Slot, child: Child) -> None:
        """Kill the worker when it outgrows its ceiling (its calls fail cleanly) and start its replacement."""
        ceiling = self.config.max_rss_bytes
        while child.alive:
            rss = _rss_bytes(child.process.pid)
            if rss is not None and rss > ceiling:
                child.ended = f"it used {rss >> 20} MiB, over its {ceiling >> 20} MiB ceiling"
                log.warning("translation worker restarted: pid=%s rss_mib=%s ceiling_mib=%s", child.process.pid,
                            rss >> 20, ceiling >> 20)
                if slot.child is child:
                    slot.child = None
                child.kill()
                if not self._closed:
                    with contextlib.suppress(GatewayError):
                        await self.running(self._slots.index(slot))
                return
            await asyncio.sleep(MEMORY_POLL_S)

    @staticmethod
    async def _reap(child: Child) -> None:
        await child.process.wait()
        shutil.rmtree(child.folder, ignore_errors=True)

    async def close(self) -> None:
        """Stop every worker: its stdin ends and SIGTERM, SIGKILL if it is still there after a few seconds."""
        self._closed = True
        await asyncio.gather(*(self._stop(slot) for slot in self._slots))
        if self._owns_resolver:
            await self._resolver.close()

    async def _stop(self, slot: _Slot) -> None:
        if slot.starting is not None:
            slot.starting.cancel()
            with contextlib.suppress(BaseException):
                await slot.starting
        child, slot.child = slot.child, None
        if child is None:
            return
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
