"""Providers translated by litellm leave through the gateway's guarded session on every attempt. A name whose
first lookup fails and whose next one answers 127.0.0.1 (DNS that changes its answer between calls) makes
litellm retry the connect on a fresh client: that retry, too, is judged by the gateway's resolver. Environment
proxy variables route nothing, and litellm's own switches cannot swap the client under the gateway."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, ClassVar

import aiohttp
import aiohttp.connector
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from tests.factories import make_user
from tests.fakes.anthropic_upstream import start_anthropic_upstream
from tests.fakes.openai_upstream import start_openai_upstream
from tests.security.conftest import MakeClient

CONFIGS = "/api/llm-configurations"
MESSAGES = [{"role": "user", "content": "hi"}]


class ShiftingDNS(AbstractResolver):
    """The world's DNS for one name: the first lookup fails (a hiccup), every later one answers `then`."""

    calls: ClassVar[list[str]] = []
    name = "llm.attacker.test"
    then = "127.0.0.1"  # where the hostile fake listens: reaching it is the leak

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Takes whatever aiohttp passes its default resolver."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        if host != self.name:
            raise OSError(f"no such host {host}")
        ShiftingDNS.calls.append(host)
        if len(ShiftingDNS.calls) == 1:
            raise OSError("temporary failure in name resolution")
        return [ResolveResult(hostname=host, host=self.then, port=port,
                              family=socket.AF_INET6 if ":" in self.then else socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
def world_dns(monkeypatch: pytest.MonkeyPatch) -> type[ShiftingDNS]:
    """Every resolver aiohttp makes — the gateway's and any client litellm would build — asks ShiftingDNS."""
    ShiftingDNS.calls = []
    monkeypatch.setattr(aiohttp, "DefaultResolver", ShiftingDNS)
    monkeypatch.setattr(aiohttp.connector, "DefaultResolver", ShiftingDNS)
    return ShiftingDNS


async def test_a_connect_retry_is_judged_by_the_gateways_resolver(
    make_client: MakeClient, aiohttp_server: Any, new_key: Callable[..., str], world_dns: type[ShiftingDNS]
) -> None:
    key = new_key()
    fake = await start_anthropic_upstream(aiohttp_server, keys=[key])
    client = await make_client()  # private addresses refused; the system lookup is the patched world DNS
    user = await make_user(client)
    base_url = str(URL(fake.url).with_host(world_dns.name))
    resp = await client.post(CONFIGS, headers=user.headers, json={
        "name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": key,
        "base_url": base_url})
    assert resp.status == 201, await resp.text()
    config = await resp.json()
    for stream in (False, True):
        world_dns.calls.clear()
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={"model": "claude", "messages": MESSAGES, "stream": stream})
        assert resp.status >= 500, await resp.text()  # litellm reports a failed connect as its own 500
        assert len(world_dns.calls) >= 2  # the retry did happen, after the first lookup failed
    world_dns.calls.clear()
    verdict = await (await client.post(f"{CONFIGS}/{config['id']}/test", headers=user.headers)).json()
    assert verdict["success"] is False
    assert fake.requests == []  # the refused address never saw the key


class RecordingProxy:
    """A hostile HTTP proxy named by the environment: records whatever reaches it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(dict(request.headers))
        return web.Response(status=502)


@pytest.mark.parametrize("litellm_switch", [None, "DISABLE_AIOHTTP_TRANSPORT", "AIOHTTP_TRUST_ENV"])
async def test_environment_proxies_route_nothing(
    make_client: MakeClient, aiohttp_server: Any, new_key: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
    litellm_switch: str | None,
) -> None:
    proxy = RecordingProxy()
    proxy_url = str((await aiohttp_server(proxy.app)).make_url("/"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy_url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    if litellm_switch is not None:
        monkeypatch.setenv(litellm_switch, "True")
    key, openai_key = new_key(), new_key()
    claude = await start_anthropic_upstream(aiohttp_server, keys=[key])
    gpt = await start_openai_upstream(aiohttp_server, keys=[openai_key])
    client = await make_client(allow_private_base_urls=True)
    user = await make_user(client)
    for name, provider, model, api_key, base_url in (
            ("claude", "anthropic", "claude-sonnet-4-5", key, claude.url),
            ("gpt", "custom", "gpt-4o-mini", openai_key, gpt.url)):
        resp = await client.post(CONFIGS, headers=user.headers, json={
            "name": name, "provider": provider, "model": model, "api_key": api_key, "base_url": base_url})
        assert resp.status == 201, await resp.text()
        config = await resp.json()
        for stream in (False, True):
            resp = await client.post("/v1/chat/completions", headers=user.headers,
                                     json={"model": name, "messages": MESSAGES, "stream": stream})
            assert resp.status == 200, await resp.text()
            await resp.read()
        verdict = await (await client.post(f"{CONFIGS}/{config['id']}/test", headers=user.headers)).json()
        assert verdict["success"] is True, verdict
    assert len(claude.requests) == 3 and len(gpt.requests) == 3  # straight to the upstreams ...
    assert proxy.seen == []  # ... never through the environment's proxy


async def test_translation_refuses_a_client_that_is_not_the_gateways(monkeypatch: pytest.MonkeyPatch) -> None:
    # What litellm would build on its own — around a shared session, under DISABLE_AIOHTTP_TRANSPORT, with
    # proxies from the environment — is refused; the handler the gateway builds passes.
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    from gateway.errors import UpstreamError
    from gateway.proxy.translation import GuardedTransport, check_guarded

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.attacker.test:3128")
    url = "https://api.anthropic.com"
    async with aiohttp.ClientSession(trust_env=False) as http:
        ours = AsyncHTTPHandler(transport=GuardedTransport(http, allow_private=False, max_body_bytes=1 << 20),
                                follow_redirects=False)
        check_guarded(ours, url)
        for switch in (None, "DISABLE_AIOHTTP_TRANSPORT"):
            if switch is not None:
                monkeypatch.setenv(switch, "True")
            theirs = AsyncHTTPHandler(shared_session=http)
            with pytest.raises(UpstreamError) as info:
                check_guarded(theirs, url)
            assert info.value.code == "upstream_transport_unguarded"
            await theirs.close()
        await ours.close()
        assert not http.closed  # closing litellm's handler leaves the gateway's session alone
