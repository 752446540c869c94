"""The upstream URL is parsed once per (base, path) and is the URL aiohttp would have parsed from the string."""

from __future__ import annotations

import pytest
from yarl import URL

from gateway.proxy.forward import upstream_url

PATHS = ["/chat/completions", "/files/file-abc/content", "/a%2Fb", "/caf\u00e9", "/with space", "/q?x=1&y=%20",
         "/../../etc/passwd", "/%2e%2e/x", "/#fragment"]


@pytest.mark.parametrize("base", ["https://api.openai.com/v1", "http://127.0.0.1:8080/v1", "https://h.example/a/b"])
@pytest.mark.parametrize("path", PATHS)
def test_the_url_is_the_strings_url(base: str, path: str) -> None:
    url = upstream_url(base, path)
    expected = URL(base + path)
    assert url == expected
    assert str(url) == str(expected)
    assert upstream_url(base, path) is url  # parsed once


def test_the_memo_is_bounded() -> None:
    assert upstream_url.cache_info().maxsize == 256
