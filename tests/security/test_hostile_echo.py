"""An upstream that echoes the key back — in a long error message, placed so that a cut at the message limit
would keep the key's first characters, and in relayed headers — never gets it to the client, into a test
verdict or into the database: the key is scrubbed before anything is cut."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.proxy.forward import MAX_ERROR_MESSAGE
from tests.factories import make_user
from tests.security.conftest import MakeClient

CONFIGS = "/api/llm-configurations"


def echoing_upstream(status: int) -> web.Application:
    """Speaks OpenAI's wire format and hands the caller's own key back in every way it can."""

    async def chat(request: web.Request) -> web.Response:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        headers = {"x-request-id": f"req-{key}", "x-ratelimit-remaining-requests": key, "retry-after": "1"}
        if status >= 400:
            # The key starts just before the limit: cut first, the message would end in its first characters.
            message = "x" * (MAX_ERROR_MESSAGE - len(key) // 2) + key + " was refused"
            return web.json_response({"error": {"message": message, "type": "invalid_request_error",
                                                "code": None, "param": None}}, status=status, headers=headers)
        return web.json_response({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                               "finish_reason": "stop"}]}, headers=headers)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def assert_no_part_of(key: str, text: str) -> None:
    # Any eight consecutive characters of the key would be a leak worth a brute force.
    pieces = [key[i:i + 8] for i in range(len(key) - 7)]
    assert not [p for p in pieces if p in text], text[-300:]


@pytest.mark.parametrize("status", [400, 200])
async def test_a_key_echoed_by_the_upstream_never_reaches_the_client(
    make_client: MakeClient, aiohttp_server: Any, new_key: Callable[..., str], status: int
) -> None:
    hostile = await aiohttp_server(echoing_upstream(status))
    client: TestClient = await make_client(allow_private_base_urls=True)
    user = await make_user(client)
    key = new_key()
    base_url = str(hostile.make_url("/v1"))
    resp = await client.post(CONFIGS, headers=user.headers, json={
        "name": "echo", "provider": "custom", "model": "m", "api_key": key, "base_url": base_url})
    assert resp.status == 201
    config = await resp.json()
    seen: list[str] = []
    for stream in (False, True):
        resp = await client.post("/v1/chat/completions", headers=user.headers, json={
            "model": "echo", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        body = await resp.text()
        if not stream or status >= 400:
            assert resp.status == status, body
        seen.append(body + repr(dict(resp.headers)))
    if status >= 400:
        assert "was refused" in seen[0]  # the message itself is relayed, minus the key
    assert "req-[redacted]" in seen[0]  # the header is relayed too, minus the key
    for path, body in ((f"{CONFIGS}/{config['id']}/test", None),
                       (f"{CONFIGS}/test", {"provider": "custom", "model": "m", "api_key": key, "base_url": base_url})):
        resp = await client.post(path, headers=user.headers, json=body)
        seen.append(await resp.text())
    listed = await client.get(f"{CONFIGS}/{config['id']}", headers=user.headers)
    seen.append(await listed.text())  # the stored test message
    for text in seen:
        assert_no_part_of(key, text)
