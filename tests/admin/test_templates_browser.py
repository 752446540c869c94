"""The "Add from template" page in real Chromium against a real gateway and fake Anthropic and OpenAI upstreams:
a template picked from the gallery, its keys typed, the chain created and each configuration's test shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import expect

from gateway.app import create_app
from gateway.settings import Settings
from tests.admin.browser import dom_text_and_values, screenshot, watch
from tests.factories import make_user
from tests.fakes.anthropic_upstream import start_anthropic_upstream
from tests.fakes.openai_upstream import start_openai_upstream

ANTHROPIC_KEY = "sk-ant-ui-template-key-0123456789abcdef"
OPENAI_KEY = "sk-ui-template-openai-key-fedcba9876543210"

expect.set_options(timeout=15_000)


async def test_apply_a_template_from_the_gallery(browser: Any, aiohttp_server: Any, aiohttp_client: Any,
                                                 settings: Settings, tmp_path: Path) -> None:
    claude = await start_anthropic_upstream(aiohttp_server, keys=(ANTHROPIC_KEY,))
    gpt = await start_openai_upstream(aiohttp_server, keys=(OPENAI_KEY,))
    providers = tmp_path / "providers.toml"
    providers.write_text(f'[providers.anthropic]\nbase_url = "{claude.url}"\n[providers.openai]\nbase_url = "{gpt.url}"\n')
    server: TestServer = await aiohttp_server(create_app(settings.model_copy(update={"providers_file": providers})))
    client: TestClient = await aiohttp_client(server)
    user = await make_user(client, "ui-templates")

    context = await browser.new_context(base_url=str(server.make_url("/")).rstrip("/"))
    page = await context.new_page()
    seen = watch(page)
    await page.goto("/ui/templates")
    await page.get_by_label("Gateway token").fill(user.token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Add from template")).to_be_visible()
    card = page.locator('li[data-template-id="coding-agent"]')
    await expect(card.get_by_role("heading", name="Coding agent")).to_be_visible()
    await expect(card.locator(".tag")).to_have_text(["anthropic", "openai"])
    await screenshot(page, "templates-gallery")

    await card.get_by_role("button", name="Use this template").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading", name="Coding agent")).to_be_visible()
    # Just the inputs: one key per provider (plus the optional prefix and the default switch).
    await expect(dialog.locator('input[type="password"]')).to_have_count(2)

    # A pasted mask is refused by the API, and the form says so at that input; nothing is created.
    await dialog.get_by_label("Anthropic API key").fill("**********")
    await dialog.get_by_label("OpenAI API key").fill(OPENAI_KEY)
    await dialog.get_by_role("button", name="Create and test").click()
    await expect(dialog.locator('[data-error-for="anthropic_api_key"]')).to_contain_text("placeholder")

    await dialog.get_by_label("Anthropic API key").fill(ANTHROPIC_KEY)
    await dialog.get_by_role("button", name="Create and test").click()
    results = dialog.locator(".template-result")
    await expect(results).to_have_count(2)
    await expect(results.nth(0)).to_have_attribute("data-status", "success")
    await expect(results.nth(1)).to_have_attribute("data-status", "success")
    await expect(results.nth(0)).to_contain_text("Coding agent")
    await expect(results.nth(1)).to_contain_text("Coding agent (OpenAI fallback)")
    await expect(results.nth(0)).to_contain_text("LLM responding correctly")
    await screenshot(page, "templates-applied")
    leak = await dom_text_and_values(page)
    assert ANTHROPIC_KEY not in leak and OPENAI_KEY not in leak, "a plaintext key is still in the page"
    assert claude.last_request.api_key == ANTHROPIC_KEY and gpt.last_request.api_key == OPENAI_KEY

    await dialog.get_by_role("button", name="Done").click()
    await page.get_by_role("link", name="Configurations").click()
    await expect(page.locator('tr[data-name="Coding agent"]')).to_be_visible()
    listing = await (await client.get("/api/llm-configurations", headers=user.headers)).json()
    by_name = {c["name"]: c for c in listing["items"]}
    assert by_name["Coding agent"]["fallback_ids"] == [by_name["Coding agent (OpenAI fallback)"]["id"]]
    assert by_name["Coding agent"]["test_status"] == "success"
    seen.assert_clean()
    await context.close()
