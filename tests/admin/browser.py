"""Real Chromium for the web page's tests: Debian's /usr/bin/chromium driven by Playwright's async API.

`playwright install` cannot download browsers here, so the tests use the system Chromium. Without it they
skip locally and fail under CI=true, so a CI run never counts a skipped browser test as a pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests import parts

CHROMIUM = Path(os.environ.get("LLM_GATEWAY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 780}


def require_chromium() -> None:
    """Skip locally without Chromium; fail under CI, where a skipped browser test would hide a gap."""
    if not CHROMIUM.exists():
        parts.missing("browser", f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium`")


@dataclass
class Watch:
    """What the page did wrong: uncaught errors and Content-Security-Policy violations."""

    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """No script error and nothing the CSP had to block."""
        assert not self.page_errors, self.page_errors
        assert not self.csp_violations, self.csp_violations


@asynccontextmanager
async def launch() -> AsyncIterator[object]:
    """A Chromium browser for one test."""
    from playwright.async_api import async_playwright

    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


def watch(page) -> Watch:  # type: ignore[no-untyped-def]
    """Record the page's uncaught errors and CSP violations."""
    seen = Watch()
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))

    def on_console(message) -> None:  # type: ignore[no-untyped-def]
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            seen.csp_violations.append(message.text)

    page.on("console", on_console)
    return seen


async def screenshot(page, name: str, *, full_page: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """Save a screenshot under test-artifacts/ui/ (gitignored; CI keeps the folder)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def dom_text_and_values(page) -> str:  # type: ignore[no-untyped-def]
    """The serialised DOM plus every form control's live value and the page's storage, for leak checks."""
    return await page.evaluate(
        """() => [
            document.documentElement.outerHTML,
            ...[...document.querySelectorAll('input, textarea, select')].map((el) => el.value),
            ...Object.keys(localStorage).map((k) => localStorage.getItem(k)),
            ...Object.keys(sessionStorage).map((k) => sessionStorage.getItem(k)),
        ].join('\\n')"""
    )
