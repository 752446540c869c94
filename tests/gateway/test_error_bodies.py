"""Any upstream error body, however odd its JSON, parses to error fields: never an exception (a 500 on /v1,
a lost verdict in test-all)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import parse_error_body

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(["message", "type", "code", "param", "status", "details", "error", "response"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS, JSON, max_size=6), st.booleans(), st.booleans())
def test_any_json_error_body_parses(error: dict[str, object], nested: bool, as_event: bool) -> None:
    body = orjson.dumps({"error": error} if nested else error)
    raw = b"event: error\ndata: " + body + b"\n\n" if as_event else body
    fields = parse_error_body(raw)
    assert fields.message is None or isinstance(fields.message, str)
    assert all(isinstance(reason, str) for reason in fields.reasons)


def test_details_that_are_not_a_list_are_ignored() -> None:
    for details in (5, True, "x", {"reason": "A"}):
        fields = parse_error_body(orjson.dumps({"error": {"message": "m", "details": details}}))
        assert fields.message == "m" and fields.reasons == frozenset()
