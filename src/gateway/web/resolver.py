"""The shared client session's resolver: hostnames resolve only to addresses the URL policy (gateway.ssrf)
allows, so a connection opens only to a checked address, whatever DNS says by then (rebinding)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.ssrf import UnsafeURLError, UrlPolicy


class GuardedResolver(AbstractResolver):
    """A resolver that only returns addresses the URL policy allows, refusing the lookup when none is left."""

    def __init__(self, policy: UrlPolicy, *, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        # Made lazily: aiohttp's resolvers need the running loop.
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve host and drop every address the policy refuses."""
        self.policy.check_host(host)
        if self._resolver is None:
            self._resolver = aiohttp.DefaultResolver()
        results = await self._resolver.resolve(host, port, family)
        allowed, refusal = _filter(results, self.policy)
        if not allowed:
            # Name the refused category, not the address: internal DNS is none of the caller's business.
            raise refusal or UnsafeURLError("upstream host resolved to no address", category="host")
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        if self._resolver is not None:
            await self._resolver.close()


def _filter(
    results: Iterable[ResolveResult], policy: UrlPolicy
) -> tuple[list[ResolveResult], UnsafeURLError | None]:
    """Split resolver results into the allowed ones and the last refusal."""
    allowed: list[ResolveResult] = []
    refusal: UnsafeURLError | None = None
    for result in results:
        try:
            policy.check_address(result["host"])
        except UnsafeURLError as exc:
            refusal = exc
        else:
            allowed.append(result)
    return allowed, refusal


@asynccontextmanager
async def guarded_session(policy: UrlPolicy, *, lookup: AbstractResolver | None, max_connections: int,
                          max_connections_per_host: int, connect_timeout_s: float, read_timeout_s: float
                          ) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for upstream calls: keep-alive pooling, every connect to an address the policy allows
    (`lookup`: the name lookup under the check, the system's by default), no proxies from the environment (through
    an HTTP(S)_PROXY the resolver would check the proxy, not the upstream). The gateway's and the translation
    worker's sessions."""
    resolver = GuardedResolver(policy, resolver=lookup)
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections_per_host,
                                     ttl_dns_cache=60, resolver=resolver)
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
        yield session
    await resolver.close()
