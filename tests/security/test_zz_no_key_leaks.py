"""Runs last in tests/security (file order): over every attack test, not one byte of a test key in a response,
a log line (DEBUG and up) or a raw row — audit and usage rows included — and no ciphertext in a response.
Each test's teardown checks its own (tests/security/conftest.py); this checks the totals and the exports."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp.test_utils import TestClient

from tests.admin.conftest import LeakWatch
from tests.factories import make_user


async def test_exports_carry_no_key_in_clear(client: TestClient, new_key: Callable[..., str]) -> None:
    user = await make_user(client)
    key = new_key()
    resp = await client.post("/api/llm-configurations", headers=user.headers, json={
        "name": "k", "provider": "openai", "model": "gpt-4o", "api_key": key})
    assert resp.status == 201
    plain = await client.get("/api/llm-configurations/export", headers=user.headers)
    sealed = await client.post("/api/llm-configurations/export", headers=user.headers,
                               json={"passphrase": "correct horse battery staple"})
    for resp in (plain, sealed):
        assert resp.status == 200 and key[-12:] not in await resp.text()
    assert "k" in [c["name"] for c in (await plain.json())["configurations"]]


def test_no_key_anywhere_over_the_attack_suite(leak_watch: LeakWatch) -> None:
    assert leak_watch.findings == []
    # The watch really saw the suite: responses, log lines, rows and stored ciphertexts.
    assert leak_watch.counts["responses"] > 100
    assert leak_watch.counts["log_lines"] > 100
    assert leak_watch.counts["rows"] > 10
    assert leak_watch.ciphertexts
