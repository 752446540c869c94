"""End to end through the proxy: after an old client posts the mask back to /api/settings, and after a legacy
migration, the stored key still works for a real call with the openai SDK against a fake upstream."""

from __future__ import annotations

from pathlib import Path

import openai
from aiohttp.test_utils import TestClient

from gateway.legacy.migration import run_migration
from gateway.legacy.source import FileSource
from gateway.web.legacy import app_migrator
from tests.factories import ApiUser, make_configuration, make_user
from tests.fakes import DEFAULT_OPENAI_KEY, start_openai_upstream
from tests.legacy_fixtures import write_legacy_files


async def _chat(client: TestClient, user: ApiUser, model: str) -> str:
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=user.token, max_retries=0)
    try:
        reply = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    finally:
        await sdk.close()
    return reply.choices[0].message.content or ""


async def test_mask_posted_back_then_a_real_call_uses_the_kept_key(  # type: ignore[no-untyped-def]
    client: TestClient, aiohttp_server
) -> None:
    fake = await start_openai_upstream(aiohttp_server)
    user = await make_user(client)
    config = await make_configuration(client, user, provider="openai", model="gpt-4o-mini",
                                      api_key=DEFAULT_OPENAI_KEY, base_url=fake.url)
    current = await (await client.get("/api/settings", headers=user.headers)).json()
    # what the original UI did: post everything back, the key as the mask it showed
    resp = await client.post("/api/settings", json={**current, "llm_api_key": "**********", "language": "en"},
                             headers=user.headers)
    assert resp.status == 200, await resp.text()
    assert await _chat(client, user, config["name"]) == "Hello from the fake upstream."
    assert fake.requests[-1].api_key == DEFAULT_OPENAI_KEY and fake.requests[-1].body["model"] == "gpt-4o-mini"


async def test_a_migrated_key_serves_the_users_first_call(  # type: ignore[no-untyped-def]
    client: TestClient, aiohttp_server, tmp_path: Path
) -> None:
    fake = await start_openai_upstream(aiohttp_server)
    settings = {"llm_model": "openai/gpt-4o-mini", "llm_api_key": DEFAULT_OPENAI_KEY, "llm_base_url": fake.url}
    user = await make_user(client, "mallory")
    report = await run_migration(app_migrator(client.server.app),
                                 FileSource(write_legacy_files(tmp_path / "legacy", {"mallory": settings})))
    assert report.migrated == 1
    assert await _chat(client, user, "Migrated Configuration") == "Hello from the fake upstream."
    assert fake.requests[-1].api_key == DEFAULT_OPENAI_KEY


async def test_read_through_migrates_on_the_first_proxied_call(  # type: ignore[no-untyped-def]
    aiohttp_client, aiohttp_server, settings, tmp_path: Path
) -> None:
    from gateway.app import create_app

    fake = await start_openai_upstream(aiohttp_server)
    legacy = {"llm_model": "openai/gpt-4o-mini", "llm_api_key": DEFAULT_OPENAI_KEY, "llm_base_url": fake.url}
    directory = write_legacy_files(tmp_path / "legacy", {"oscar": legacy})
    client = await aiohttp_client(create_app(settings.model_copy(update={"legacy_source_dir": directory})))
    user = await make_user(client, "oscar")
    # no configuration yet: the first call itself migrates the legacy key and is served by it
    assert await _chat(client, user, "gpt-4o-mini") == "Hello from the fake upstream."
    assert fake.requests[-1].api_key == DEFAULT_OPENAI_KEY
