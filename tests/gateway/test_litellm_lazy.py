"""litellm is not imported by the web page, the provider list or an OpenAI-compatible request (nor httpx, which
only litellm's requests use, nor asyncpg on SQLite), and the rare paths' pydantic validators are not built.

It costs seconds and well over 100 MiB; only translated providers (Anthropic native, Gemini …) need it. The
check runs in a fresh interpreter, since other tests in this process import litellm on purpose.
"""

from __future__ import annotations

from pathlib import Path

from tests.fresh import run_fresh

SCRIPT = """
import asyncio, sys, uuid
from pathlib import Path
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fresh import fresh_gateway

async def main(folder: Path) -> None:
    key = "sk-lazy-" + uuid.uuid4().hex
    async with FakeOpenAI(keys=[key]) as fake:
        async with fresh_gateway(folder, "lazy") as (client, headers):
            resp = await client.post("/api/llm-configurations", headers=headers, json={
                "name": "c", "provider": "openai", "model": "gpt-4o-mini", "api_key": key, "base_url": fake.url})
            assert resp.status == 201, await resp.text()
            providers = await (await client.get("/api/providers", headers=headers)).json()
            assert "gpt-4o" in next(p for p in providers["items"] if p["id"] == "openai")["models"]
            for path in ("/ui/", "/ui/settings", "/ui/usage"):
                assert (await client.get(path)).status == 200, path
            # What the page asks for once loaded (src/admin/static/js).
            for path in ("/api/llm-configurations", "/api/llm-configurations/stats", "/api/migrations/status",
                         "/api/templates", "/api/usage"):
                assert (await client.get(path, headers=headers)).status == 200, path
            resp = await client.post("/v1/chat/completions", headers=headers,
                                     json={"model": "c", "messages": [{"role": "user", "content": "hi"}]})
            assert resp.status == 200, await resp.text()
            resp = await client.post("/v1/chat/completions", headers=headers, json={
                "model": "c", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
            assert resp.status == 200 and b"[DONE]" in await resp.read()
    loaded = sorted(name for name in sys.modules if name == "litellm" or name.startswith("litellm."))
    assert not loaded, f"litellm was imported: {loaded[:5]}"
    # Nor what only litellm (httpx, with its command line's rich) or PostgreSQL (asyncpg) needs.
    heavy = sorted(name for name in ("httpx", "rich", "asyncpg") if name in sys.modules)
    assert not heavy, f"imported on SQLite without a translated request: {heavy}"
    # Validators of the rare paths (export/import, the legacy settings API) are built on first use, not at start.
    from gateway.configurations import backup
    from gateway.legacy import compat
    rare = (backup.ExportDocument, backup.ImportReport, compat.LegacySettings, compat.LegacySettingsUpdate)
    built = [model.__name__ for model in rare if model.__pydantic_complete__]
    assert not built, f"built at start-up or by the web page: {built}"
    print("ok")

asyncio.run(main(Path(sys.argv[1])))
"""


def test_web_page_providers_and_openai_requests_never_import_litellm(tmp_path: Path) -> None:
    run_fresh(SCRIPT, str(tmp_path), timeout=180)
