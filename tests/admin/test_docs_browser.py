"""/api/docs in real Chromium with every other origin cut off: Swagger UI renders the gateway's own document,
from the files the package ships, under the strict CSP, without a script error."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from playwright.async_api import expect

from gateway.app import create_app
from gateway.settings import Settings
from tests.admin.browser import DESKTOP, launch, screenshot, watch


async def test_api_docs_render_offline(aiohttp_server: Any, settings: Settings) -> None:
    server: TestServer = await aiohttp_server(create_app(settings))
    origin = str(server.make_url("/")).rstrip("/")
    elsewhere: list[str] = []

    async def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(origin + "/"):
            await route.continue_()
        else:  # a CDN, a font, a telemetry call: the gateway must work without any of them
            elsewhere.append(route.request.url)
            await route.abort()

    async with launch() as browser:
        context = await browser.new_context(viewport=DESKTOP, base_url=origin)
        await context.route("**/*", only_the_gateway)
        page = await context.new_page()
        seen = watch(page)
        await page.goto("/api/docs")
        await expect(page.locator(".information-container .title")).to_contain_text("llm-gateway API",
                                                                                    timeout=30_000)
        await expect(page.locator(".opblock-summary-path[data-path='/v1/chat/completions']")).to_be_visible()
        await expect(page.locator(".opblock-summary-path[data-path='/api/llm-configurations']").first).to_be_visible()
        await page.locator(".opblock-summary-path[data-path='/v1/chat/completions']").click()
        await expect(page.get_by_text("X-LLM-Configuration", exact=True).first).to_be_visible()
        await screenshot(page, "api-docs", full_page=False)
        await context.close()
    seen.assert_clean()
    assert elsewhere == []
