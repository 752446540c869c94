"""The long-context template against a small fake of Google's Gemini API (generateContent), through litellm's
translation: applied, served by its first configuration, failing over to the second, tested."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.admin.conftest import MakeClient
from tests.factories import make_user

CONTENT = "Hello from the fake Gemini."


@dataclass
class FakeGemini:
    """generateContent on /v1beta/models/{model}:generateContent, the key in `x-goog-api-key`."""

    key: str
    fail_next: list[int] = field(default_factory=list)  # statuses to answer the next requests with
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (path, key) of each request
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("x-goog-api-key")
        self.seen.append((request.path, key))
        if key != self.key:
            return web.json_response({"error": {"code": 400, "message": "API key not valid.",
                                                "status": "INVALID_ARGUMENT"}}, status=400)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response({"error": {"code": status, "message": "The model is overloaded.",
                                                "status": "UNAVAILABLE"}}, status=status)
        model, _, action = request.match_info["target"].partition(":")
        if action != "generateContent":
            return web.json_response({"error": {"code": 404, "message": "no such method"}}, status=404)
        await request.json()
        return web.json_response({
            "candidates": [{"content": {"parts": [{"text": CONTENT}], "role": "model"}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 6, "totalTokenCount": 11},
            "modelVersion": model,
        })


@pytest.fixture
async def gemini(aiohttp_server: Any, new_key: Any) -> FakeGemini:
    fake = FakeGemini(key=new_key())
    app = web.Application()
    app.router.add_post("/v1beta/models/{target}", fake.handle)
    server = await aiohttp_server(app)
    fake.url = str(server.make_url("/v1beta"))
    return fake


@pytest.fixture
async def client(make_client: MakeClient, gemini: FakeGemini, tmp_path: Path) -> TestClient:
    path = tmp_path / "providers.toml"
    path.write_text(f'[providers.gemini]\nbase_url = "{gemini.url}"\n')
    return await make_client(providers_file=path)


async def test_long_context_serves_fails_over_and_tests(client: TestClient, gemini: FakeGemini) -> None:
    user = await make_user(client)
    resp = await client.post("/api/templates/long-context/apply", headers=user.headers,
                             json={"inputs": {"gemini_api_key": gemini.key}, "test": True})
    body = await resp.json()
    assert resp.status == 201, body
    pro, flash = body["configurations"]
    assert pro["fallback_ids"] == [flash["id"]]
    assert [t["status"] for t in body["tests"]] == ["success", "success"]
    assert [path for path, _ in gemini.seen] == ["/v1beta/models/gemini-2.5-pro:generateContent",
                                                 "/v1beta/models/gemini-2.5-flash:generateContent"]

    chat = {"model": "Long context", "messages": [{"role": "user", "content": "hi"}]}
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=chat)
    answer = await resp.json()
    assert resp.status == 200, answer
    assert answer["choices"][0]["message"]["content"] == CONTENT
    assert resp.headers["X-LLM-Configuration-Id"] == pro["id"]
    assert gemini.seen[-1] == ("/v1beta/models/gemini-2.5-pro:generateContent", gemini.key)

    gemini.fail_next = [503]
    resp = await client.post("/v1/chat/completions", headers=user.headers, json=chat)
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-LLM-Configuration-Id"] == flash["id"]
    assert gemini.seen[-1][0] == "/v1beta/models/gemini-2.5-flash:generateContent"
