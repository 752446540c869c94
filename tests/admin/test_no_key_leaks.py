"""No plaintext key in any response body or header, log line (DEBUG and up) or raw database row of the whole
admin test run, and no ciphertext in any response. Each admin test's teardown checks its own responses, logs
and rows (tests/admin/conftest.py); this test runs last and checks the totals, and that the watch can see."""

from __future__ import annotations

import logging

import pytest

from tests.admin.conftest import ADMIN_TESTS, LeakWatch
from tests.leakwatch import KEYS


def test_no_plaintext_key_anywhere(leak_watch: LeakWatch, pytestconfig: pytest.Config) -> None:
    assert leak_watch.findings == []
    # The run really went through the watch: every admin test sent requests, logged and stored rows.
    tests = pytestconfig.stash[ADMIN_TESTS]
    assert leak_watch.counts["responses"] >= 3 * tests
    assert leak_watch.counts["log_lines"] >= 10 * tests
    assert leak_watch.counts["rows"] >= tests
    assert bool(leak_watch.ciphertexts) == (tests > 0)


def test_the_watch_finds_a_key_wherever_it_appears(leak_watch: LeakWatch) -> None:
    key, short = leak_watch.new_key(), leak_watch.new_key(6)
    for planted in (key, short):  # planted on purpose: the suite-wide watch of tests/leakwatch.py looks away
        KEYS.discard(planted)
    before = list(leak_watch.findings)
    logging.getLogger("gateway.test").debug("a careless line with %s", key)
    leak_watch.response(f'{{"api_key": "{short}"}}')
    found = leak_watch.findings[len(before):]
    leak_watch.findings[:] = before
    assert len(found) == 2 and "gateway.test" in found[0]
