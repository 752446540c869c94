"""The web page in real Chromium against a real gateway and a fake OpenAI upstream.

One scenario walks what a user does: sign in, add, test (a good key, then a bad one), set the default, search
and filter, edit without touching the key and prove the key still works, bulk delete, sign out. Another walks
the controls it does not reach: paging, select-all, "Test all", the ?edit= and ?add= links, fallbacks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import expect

from tests.admin.browser import DESKTOP, PHONE, dom_text_and_values, screenshot, watch
from tests.factories import make_user
from tests.fakes.openai_upstream import start_openai_upstream

GOOD_KEY = "sk-ui-good-key-0123456789abcdefXYZ1"
BAD_KEY = "sk-ui-wrong-key-9876543210fedcbaQRS2"
COLD_CATALOG_MS = 90_000
PAGE_ROWS = 50
ACTIVE_ROWS = 3  # "Test all" tests the active ones; the gateway allows 30 tests a minute
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "configurations.png"


# Two shared cores: give a loaded machine room; a broken step still fails within seconds.
expect.set_options(timeout=15_000)


async def open_page(browser: Any, server: TestServer, viewport: dict[str, int] = DESKTOP) -> tuple[Any, Any, Any]:
    """A fresh browser context (its own sessionStorage) on /ui/."""
    context = await browser.new_context(viewport=viewport, base_url=str(server.make_url("/")).rstrip("/"))
    page = await context.new_page()
    page.set_default_timeout(20_000)
    seen = watch(page)
    await page.goto("/ui/")
    return context, page, seen


async def sign_in(page: Any, token: str) -> None:
    """Paste the token and wait for the configurations page."""
    await page.get_by_label("Gateway token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Configurations")).to_be_visible()


async def add_configuration(page: Any, *, name: str, key: str, base_url: str, provider: str = "OpenAI",
                            model: str = "gpt-4o-mini", test_on_save: bool = True) -> None:
    """Fill the add dialog and save it."""
    await page.get_by_role("button", name="Add configuration").click()
    dialog = page.get_by_role("dialog")
    # The first opening waits for the provider catalog, which a cold gateway builds from litellm (seconds).
    await expect(dialog).to_be_visible(timeout=COLD_CATALOG_MS)
    await dialog.get_by_label("Name").fill(name)
    await dialog.get_by_label("Provider").select_option(label=provider)
    await dialog.get_by_label("Model").fill(model)
    await dialog.get_by_label("API key", exact=True).fill(key)
    await dialog.get_by_label("Base URL").fill(base_url)
    await dialog.get_by_label("Test on save").set_checked(test_on_save)
    await dialog.get_by_role("button", name="Add configuration").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator(f'tr[data-name="{name}"]')).to_be_visible()


def row(page: Any, name: str) -> Any:
    return page.locator(f'tr[data-name="{name}"]')


async def test_sign_in_refuses_a_wrong_token_and_shows_why(browser: Any, gateway: tuple[TestServer, TestClient]) -> None:
    server, _ = gateway
    context, page, seen = await open_page(browser, server)
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await screenshot(page, "sign-in")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#token-error")).to_have_text("Paste your gateway token.")
    await page.get_by_label("Gateway token").fill("lgw_" + "x" * 40)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#token-error")).to_contain_text("This token was refused")
    assert await page.evaluate("sessionStorage.length") == 0
    seen.assert_clean()
    await context.close()


async def test_full_scenario(browser: Any, gateway: tuple[TestServer, TestClient], aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    server, client = gateway
    fake = await start_openai_upstream(aiohttp_server, keys=(GOOD_KEY,))
    user = await make_user(client, "ui-alice")
    context, page, seen = await open_page(browser, server)
    await sign_in(page, user.token)
    assert await page.evaluate("Object.values(sessionStorage)") == [user.token]

    # Add a configuration with a working key; "Test on save" tests it at once.
    await add_configuration(page, name="work-gpt", key=GOOD_KEY, base_url=fake.url)
    good = row(page, "work-gpt")
    await expect(good.locator(".status")).to_have_attribute("data-status", "success")
    await expect(good.locator(".cell-default")).to_have_text("Default")
    leak = await dom_text_and_values(page)
    assert GOOD_KEY not in leak and GOOD_KEY[4:-4] not in leak, "the plaintext key is still in the page"

    # Test it from its row: a spinner, then a green check whose tooltip says why and how fast.
    fake.behaviour.delay_s = 0.4
    await good.get_by_role("button", name="Test work-gpt").click()
    await expect(good.locator(".status-running")).to_be_visible()
    await expect(good.locator(".status")).to_have_attribute("data-status", "success")
    fake.behaviour.delay_s = 0.0
    assert " ms)" in (await good.locator(".status").get_attribute("title") or "")

    # A wrong key: the test fails with "Invalid API key" in words.
    await add_configuration(page, name="bad-key", key=BAD_KEY, base_url=fake.url, test_on_save=False)
    bad = row(page, "bad-key")
    await expect(bad.locator(".status")).to_have_attribute("data-status", "untested")
    await bad.get_by_role("button", name="Test bad-key").click()
    await expect(bad.locator(".status")).to_have_attribute("data-status", "failed")
    assert "Invalid API key" in (await bad.locator(".status").get_attribute("title") or "")
    await expect(page.locator('[data-stat="failed"]')).to_have_text("1")

    # A third one on another provider, for the filter.
    await add_configuration(page, name="fast-groq", key=GOOD_KEY, base_url=fake.url, provider="Groq",
                            model="llama-3.1-8b-instant", test_on_save=False)
    await expect(page.locator('[data-stat="total"]')).to_have_text("3")
    await screenshot(page, "configurations", full_page=False)
    if os.environ.get("LLM_GATEWAY_UPDATE_SCREENSHOTS") == "1":
        await page.locator("#toasts").evaluate("area => area.replaceChildren()")
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(README_SCREENSHOT), clip={"x": 0, "y": 0, "width": 1280, "height": 560})

    # An API error is shown next to the field it names: a duplicate name.
    await page.get_by_role("button", name="Add configuration").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Name").fill("work-gpt")
    await dialog.get_by_label("Model").fill("gpt-4o")
    await dialog.get_by_label("API key", exact=True).fill(GOOD_KEY)
    await dialog.get_by_label("Base URL").fill(fake.url)
    await dialog.get_by_role("button", name="Add configuration").click()
    name_error = dialog.locator('[data-error-for="name"]')
    await expect(name_error).to_contain_text("already have a configuration with this name")
    await expect(dialog.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    await screenshot(page, "add-dialog-error")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()

    # Set default from the row.
    await bad.get_by_role("button", name="Make bad-key the default").click()
    await expect(bad.locator(".cell-default")).to_have_text("Default")
    await expect(good.locator(".cell-default")).not_to_have_text("Default")

    # Search and filter.
    await page.get_by_label("Search").fill("groq")
    await expect(page.locator("tbody tr[data-name]")).to_have_count(1)
    await expect(row(page, "fast-groq")).to_be_visible()
    await page.get_by_label("Search").fill("")
    await expect(page.locator("tbody tr[data-name]")).to_have_count(3)
    await page.get_by_label("Provider", exact=True).select_option(label="OpenAI")
    await expect(page.locator("tbody tr[data-name]")).to_have_count(2)
    await expect(row(page, "fast-groq")).to_have_count(0)
    await page.get_by_label("Provider", exact=True).select_option(label="All providers")
    await expect(page.locator("tbody tr[data-name]")).to_have_count(3)

    # Edit without touching the key: the field shows the mask, saving keeps the key, the key still works.
    await good.get_by_role("button", name="Edit work-gpt").click()
    dialog = page.get_by_role("dialog")
    key_field = dialog.get_by_label("API key", exact=True)
    masked = await key_field.input_value()
    assert masked == f"{GOOD_KEY[:4]}...{GOOD_KEY[-4:]}"
    await dialog.get_by_label("Model").fill("gpt-4o")
    await dialog.get_by_label("Test on save").set_checked(False)
    await dialog.get_by_role("button", name="Save changes").click()
    await expect(dialog).to_be_hidden()
    await expect(good.locator(".cell-model")).to_have_text("gpt-4o")
    await good.get_by_role("button", name="Test work-gpt").click()
    await expect(good.locator(".status")).to_have_attribute("data-status", "success")
    assert fake.requests[-1].api_key == GOOD_KEY and fake.requests[-1].body["model"] == "gpt-4o"

    # Settings: the default, its masked key, its live status; switching the default tests the new one.
    await page.get_by_role("link", name="Settings").click()
    await expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    chooser = page.get_by_role("combobox", name="Default configuration")
    await expect(page.locator("[data-masked-key]")).to_have_text(f"{BAD_KEY[:4]}...{BAD_KEY[-4:]}")
    await chooser.select_option(label="work-gpt — OpenAI · gpt-4o")
    await expect(page.locator("[data-masked-key]")).to_have_text(masked)
    await expect(page.locator(".live-status .status")).to_have_attribute("data-status", "success")
    await screenshot(page, "settings")

    # Usage: renders the report, or says quietly that this gateway has none.
    await page.get_by_role("link", name="Usage").click()
    await expect(page.get_by_role("heading", name="Usage")).to_be_visible()
    await expect(page.locator(".usage-output")).not_to_have_text("Loading…")
    await screenshot(page, "usage")

    # Bulk delete two, with confirmation.
    await page.get_by_role("link", name="Configurations").click()
    await row(page, "bad-key").get_by_label("Select bad-key").check()
    await row(page, "fast-groq").get_by_label("Select fast-groq").check()
    await page.get_by_role("button", name="Delete selected (2)").click()
    confirm = page.get_by_role("dialog")
    await expect(confirm).to_contain_text("bad-key, fast-groq")
    await confirm.get_by_role("button", name="Delete 2").click()
    await expect(page.locator("tbody tr[data-name]")).to_have_count(1)
    await expect(page.locator('[data-stat="total"]')).to_have_text("1")
    listed = await (await client.get("/api/llm-configurations", headers=user.headers)).json()
    assert [c["name"] for c in listed["items"]] == ["work-gpt"]

    leak = await dom_text_and_values(page)
    assert GOOD_KEY not in leak and BAD_KEY not in leak
    seen.assert_clean()

    # Sign out forgets the token.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    await context.close()


async def test_narrow_screen_and_keyboard(browser: Any, gateway: tuple[TestServer, TestClient], aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import make_configuration

    server, client = gateway
    fake = await start_openai_upstream(aiohttp_server, keys=(GOOD_KEY,))
    user = await make_user(client, "ui-bob")
    for name in ("phone-one", "phone-two-with-a-rather-long-name"):
        await make_configuration(client, user, name=name, api_key=GOOD_KEY, base_url=fake.url)
    context, page, seen = await open_page(browser, server, viewport=PHONE)
    await sign_in(page, user.token)
    await expect(page.locator("tbody tr[data-name]")).to_have_count(2)
    overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at 375 px"
    await screenshot(page, "configurations-375px")

    # Keyboard only: reach "Add configuration", open the dialog with Enter, close it with Escape.
    add = page.get_by_role("button", name="Add configuration")
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await add.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Add configuration is not reachable with Tab")
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Name")).to_be_focused()
    await screenshot(page, "add-dialog-375px")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(add).to_be_focused()
    seen.assert_clean()
    await context.close()


async def test_paging_selection_test_all_links_and_the_editor(  # type: ignore[no-untyped-def]
    browser: Any, gateway: tuple[TestServer, TestClient], aiohttp_server
) -> None:
    """What the scenario does not reach: paging, select-all, "Test all", ?edit= and ?add=, the key, fallbacks."""
    from tests.factories import make_configuration

    server, client = gateway
    fake = await start_openai_upstream(aiohttp_server, keys=(GOOD_KEY,))
    user = await make_user(client, "ui-carol")
    made = [
        await make_configuration(
            client, user, name=f"cfg-{n:02d}", api_key=GOOD_KEY, base_url=fake.url, is_active=n < ACTIVE_ROWS
        )
        for n in range(PAGE_ROWS + 2)
    ]
    context, page, seen = await open_page(browser, server)
    await sign_in(page, user.token)
    rows = page.locator("tbody tr[data-name]")

    # Fifty a page, with a pager.
    await expect(rows).to_have_count(PAGE_ROWS)
    pager = page.locator(".pager")
    await expect(pager.locator(".muted")).to_have_text("1–50 of 52")
    await expect(pager.get_by_role("button", name="Previous")).to_be_disabled()
    await pager.get_by_role("button", name="Next").click()
    await expect(rows).to_have_count(2)
    await expect(pager.locator(".muted")).to_have_text("51–52 of 52")
    await expect(pager.get_by_role("button", name="Next")).to_be_disabled()

    # Select all, then one less: the bulk button counts, the header box goes indeterminate.
    select_all = page.get_by_label("Select all configurations on this page")
    await select_all.check()
    await expect(page.get_by_role("button", name="Delete selected (2)")).to_be_enabled()
    first = await rows.first.get_attribute("data-name")
    await page.get_by_label(f"Select {first}", exact=True).uncheck()
    await expect(page.get_by_role("button", name="Delete selected (1)")).to_be_enabled()
    assert await select_all.evaluate("box => box.indeterminate && !box.checked")
    await pager.get_by_role("button", name="Previous").click()
    await expect(rows).to_have_count(PAGE_ROWS)
    await expect(page.get_by_role("button", name="Delete selected", exact=True)).to_be_disabled()

    # Test all: every active configuration (the first three, by name), one toast with the count.
    await page.get_by_role("button", name="Test all").click()
    await expect(page.locator("#toasts")).to_contain_text("Tested 3: 3 working, 0 not.")
    await expect(page.locator('tbody .status[data-status="success"]')).to_have_count(ACTIVE_ROWS)
    await expect(page.get_by_role("button", name="Test all")).to_be_enabled()

    # ?edit=<id> opens that configuration; the key shows masked and can be revealed; Cancel closes.
    await page.goto(f"/ui/?edit={made[0]['id']}")
    dialog = page.get_by_role("dialog")
    await expect(dialog.get_by_role("heading", name="Edit cfg-00")).to_be_visible()
    key = dialog.get_by_label("API key", exact=True)
    await expect(key).to_have_attribute("type", "password")
    await dialog.get_by_role("button", name="Show API key").click()
    await expect(key).to_have_attribute("type", "text")
    await expect(dialog.get_by_role("button", name="Hide API key")).to_have_text("Hide")
    await expect(key).to_have_value(f"{GOOD_KEY[:4]}...{GOOD_KEY[-4:]}")

    # Fallbacks: added in order, moved up, removed.
    adder = dialog.get_by_label("Fallbacks, in order")
    await adder.select_option(label="cfg-01 (gpt-4o-mini)")
    await adder.select_option(label="cfg-02 (gpt-4o-mini)")
    order = dialog.locator(".fallback-list .fallback-name")
    await expect(order).to_have_text(["1. cfg-01", "2. cfg-02"])
    await dialog.get_by_role("button", name="Move cfg-02 up").click()
    await expect(order).to_have_text(["1. cfg-02", "2. cfg-01"])
    await dialog.get_by_role("button", name="Remove cfg-02 from fallbacks").click()
    await expect(order).to_have_text(["1. cfg-01"])
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)

    # ?add=1 opens the empty editor.
    await page.goto("/ui/?add=1")
    await expect(page.get_by_role("dialog").get_by_role("heading", name="Add a configuration")).to_be_visible()
    await expect(page.get_by_role("dialog").get_by_label("Test on save")).to_be_checked()
    seen.assert_clean()
    await context.close()
