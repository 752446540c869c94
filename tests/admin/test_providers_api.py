"""GET /api/providers: the catalog with models a form can filter by provider."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient

from tests.admin.conftest import MakeClient
from tests.factories import make_user


async def test_catalog_with_models(client: TestClient) -> None:
    user = await make_user(client)
    resp = await client.get("/api/providers", headers=user.headers)
    assert resp.status == 200
    items = {p["id"]: p for p in (await resp.json())["items"]}
    assert {"openai", "anthropic", "groq", "custom", "ollama", "azure", "gemini"} <= set(items)
    openai = items["openai"]
    assert openai == {**openai, "name": "OpenAI", "base_url": "https://api.openai.com/v1", "wire": "openai",
                      "openai_compatible": True, "requires_base_url": False, "requires_api_key": True}
    assert openai["models"][:2] == ["gpt-4o", "gpt-4o-mini"]  # the catalog's own first
    assert "gpt-3.5-turbo" in openai["models"]  # then litellm's known models
    assert items["anthropic"]["openai_compatible"] is False and items["anthropic"]["wire"] == "anthropic"
    assert any(m.startswith("claude") for m in items["anthropic"]["models"])
    assert items["custom"]["requires_base_url"] is True and items["custom"]["base_url"] is None
    again = await client.get("/api/providers", headers=user.headers)
    assert await again.read() == await resp.read()
    assert (await client.get("/api/providers")).status == 401


async def test_operator_catalog_file_is_served(make_client: MakeClient, tmp_path: Path) -> None:
    extra = tmp_path / "providers.toml"
    extra.write_text('[providers.acme]\nname = "Acme AI"\nbase_url = "https://api.acme.example/v1"\n'
                     'wire = "openai"\nlitellm_provider = "acme"\nmodels = ["acme-1"]\n')
    client = await make_client(providers_file=extra)
    user = await make_user(client)
    items = {p["id"]: p for p in (await (await client.get("/api/providers", headers=user.headers)).json())["items"]}
    assert items["acme"]["models"] == ["acme-1"] and items["acme"]["name"] == "Acme AI"
