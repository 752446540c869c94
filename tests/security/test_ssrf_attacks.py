"""SSRF through a configuration's base_url: refused when saved, on every write path, and when connecting —
including a name that looks public when saved and resolves to a private address only at connect time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.factories import make_user
from tests.fakes.openai_upstream import FakeOpenAI
from tests.security.conftest import MakeClient, MapResolver

CONFIGS = "/api/llm-configurations"
MESSAGES = [{"role": "user", "content": "hi"}]

# Every form the policy covers: loopback, private, metadata and link-local in their odd spellings, schemes,
# user-info, zones.
REFUSED_FORMS = [
    "http://127.0.0.1/v1", "http://127.1/v1", "http://2130706433/v1", "http://0x7f000001/v1", "http://0177.0.0.1/v1",
    "http://017700000001/v1", "http://[::1]/v1", "http://[::ffff:127.0.0.1]/v1", "http://[::ffff:7f00:1]/v1",
    "http://localhost:8000/v1", "http://LOCALHOST./v1", "http://api.localhost/v1", "http://0.0.0.0/v1",
    "http://0/v1", "http://10.0.0.1/v1", "http://172.16.5.4/v1", "http://192.168.1.1/v1", "http://100.64.0.1/v1",
    "http://[fc00::1]/v1", "http://[64:ff9b::7f00:1]/v1", "http://[2002:7f00:1::]/v1",
    "http://169.254.169.254/latest/meta-data", "http://0xa9fea9fe/", "http://[fd00:ec2::254]/",
    "http://100.100.100.200/", "http://metadata.google.internal/", "http://[fe80::1]/", "http://224.0.0.1/",
    "http://255.255.255.255/", "http://[fe80::1%25eth0]/", "file:///etc/passwd", "gopher://example.com/",
    "ftp://example.com/", "http://user:pass@example.com/v1", "http://@example.com/v1", "http://example.com#@127.0.0.1/",
    "//example.com/v1", "http://exa mple.com/", "http:\\\\127.0.0.1\\", "http://example.com:0/",
]


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, (resp.status, await resp.text())
    body: dict[str, Any] = (await resp.json())["error"]
    return body


async def test_every_form_is_refused_on_every_write_path(client: TestClient, new_key: Callable[..., str]) -> None:
    user = await make_user(client)
    fields = {"provider": "custom", "model": "m", "api_key": new_key()}
    resp = await client.post(CONFIGS, json={"name": "good", "base_url": "https://llm.example.com/v1", **fields},
                             headers=user.headers)
    assert resp.status == 201
    good = await resp.json()
    accepted: list[tuple[str, str, int]] = []  # (path, url, status): collected so one run names every hole
    for url in REFUSED_FORMS:
        attempts = [("POST", CONFIGS, {"name": "evil", "base_url": url, **fields}),
                    ("PATCH", f"{CONFIGS}/{good['id']}", {"base_url": url}),
                    ("PUT", f"{CONFIGS}/{good['id']}", {"base_url": url}),
                    ("POST", f"{CONFIGS}/test", {"base_url": url, **fields}),
                    ("POST", "/api/settings", {"llm_model": "openai/gpt-4o", "llm_api_key": new_key(),
                                               "llm_base_url": url})]
        for method, path, body in attempts:
            resp = await client.request(method, path, json=body, headers=user.headers)
            text = await resp.text()
            if resp.status != 422 or "base_url" not in text:
                accepted.append((path, url, resp.status))
    assert accepted == []
    listed = await (await client.get(CONFIGS, headers=user.headers)).json()
    assert [c["base_url"] for c in listed["items"]] == ["https://llm.example.com/v1"]  # nothing changed


DNS = {"rebind.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"], "lan.test": ["10.1.2.3"]}


async def saved_behind(client: TestClient, user: Any, host: str, fake: FakeOpenAI, key: str) -> dict[str, Any]:
    """A configuration whose base_url names `host` (public-looking when saved) at the fake's port."""
    url = str(URL(fake.url).with_host(host))
    resp = await client.post(CONFIGS, json={"name": host, "provider": "custom", "model": "gpt-4o-mini",
                                            "api_key": key, "base_url": url}, headers=user.headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("host", ["rebind.test", "metadata.test"])
async def test_name_resolving_to_a_private_address_is_refused_when_connecting(
    make_client: MakeClient, fake: FakeOpenAI, new_key: Callable[..., str], host: str
) -> None:
    dns = MapResolver(DNS)
    client = await make_client(dns=dns)
    user = await make_user(client)
    config = await saved_behind(client, user, host, fake, new_key())
    for stream in (False, True):
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={"model": host, "messages": MESSAGES, "stream": stream})
        error = await error_of(resp, 502)
        assert "base_url points to" in error["message"]
    resp = await client.post(f"{CONFIGS}/{config['id']}/test", headers=user.headers)
    verdict = await resp.json()
    assert resp.status == 200 and verdict["success"] is False, verdict
    assert "base_url points to" in verdict["message"]
    resp = await client.post(f"{CONFIGS}/test", headers=user.headers, json={
        "provider": "custom", "model": "m", "api_key": new_key(), "base_url": config["base_url"]})
    assert (await resp.json())["success"] is False
    assert host in dns.asked  # the lookup happened at connect time ...
    assert fake.requests == []  # ... and nothing reached the private address


async def test_the_same_name_connects_when_private_addresses_are_allowed(
    make_client: MakeClient, fake: FakeOpenAI, new_key: Callable[..., str]
) -> None:
    # The control for the test above: the DNS and the fake do work, so only the policy kept the request away.
    client = await make_client(dns=MapResolver(DNS), allow_private_base_urls=True)
    user = await make_user(client)
    await saved_behind(client, user, "rebind.test", fake, new_key())
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "rebind.test", "messages": MESSAGES})
    assert resp.status == 401  # the fake refused the test key: but it was reached
    assert len(fake.requests) == 1
    # metadata stays refused even then
    await saved_behind(client, user, "metadata.test", fake, new_key())
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": "metadata.test", "messages": MESSAGES})
    assert resp.status == 502 and len(fake.requests) == 1
