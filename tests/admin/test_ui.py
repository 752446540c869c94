"""Serving the web page: routes, validators, and the security headers on every answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from admin.ui import PAGE_ROUTES

STATIC = Path(__file__).resolve().parents[2] / "src" / "admin" / "static"
ASSETS = ("/ui/assets/app.css", "/ui/assets/js/app.js", "/ui/assets/js/api.js", "/ui/assets/favicon.svg")


def assert_secure(headers) -> None:  # type: ignore[no-untyped-def]
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", PAGE_ROUTES)
async def test_every_page_route_serves_index_without_a_token(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["ETag"] and resp.headers["Last-Modified"]
    assert_secure(resp.headers)
    html = await resp.text()
    assert '<script type="module" src="/ui/assets/js/app.js">' in html


async def test_html_has_no_inline_script_or_style(client: TestClient) -> None:
    html = await (await client.get("/ui/")).text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script> would be blocked by the CSP"
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)


async def test_scripts_never_write_html_or_inline_styles(client: TestClient) -> None:
    for path in sorted(STATIC.rglob("*.js")):
        name = path.relative_to(STATIC).as_posix()
        response = await client.get(f"/ui/assets/{name}")
        assert response.status == 200, name
        source = await response.text()
        assert "innerHTML" not in source and "outerHTML" not in source and "insertAdjacentHTML" not in source, name
        assert 'setAttribute("style"' not in source and "eval(" not in source, name


@pytest.mark.parametrize("path", ASSETS)
async def test_assets_have_types_validators_and_304(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    expected = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}[path.rsplit(".", 1)[1]]
    assert resp.content_type == expected
    assert_secure(resp.headers)
    etag, modified = resp.headers["ETag"], resp.headers["Last-Modified"]

    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["ETag"] == etag
    assert_secure(again.headers)
    assert (await client.get(path, headers={"If-Modified-Since": modified})).status == 304
    changed = await client.get(path, headers={"If-None-Match": '"other"', "If-Modified-Since": modified})
    assert changed.status == 200, "If-None-Match decides when both are present"


async def test_ui_without_slash_redirects(client: TestClient) -> None:
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 308 and resp.headers["Location"] == "/ui/"


async def test_the_root_sends_a_browser_to_the_web_page(client: TestClient) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/ui/"
    followed = await client.get("/")
    assert followed.status == 200 and "<html" in (await followed.text()).lower()


@pytest.mark.parametrize(
    "path", ["/ui/assets/nope.js", "/ui/assets/../ui.py", "/ui/assets/%2e%2e/ui.py", "/ui/assets/index.html", "/ui/other"]
)
async def test_unknown_files_are_404_in_the_error_envelope(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"]["type"] == "not_found_error"


async def test_api_still_needs_a_token(client: TestClient) -> None:
    assert (await client.get("/api/admin/users")).status == 401


def test_browser_tests_fail_rather_than_skip_under_ci_without_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.admin import browser

    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Chromium not found"):
        browser.require_chromium()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        browser.require_chromium()
