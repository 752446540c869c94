"""The test request and the verdicts: every class of answer and failure, reset headers, key scrubbing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import orjson
import pytest

from gateway.checks.probe import (
    STORED_STATUS,
    classify_error,
    classify_reply,
    classify_upstream_error,
    is_embedding_model,
    probe_request,
    retry_after_seconds,
)
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.ssrf import UnsafeURLError

KEY = "sk-proj-SECRETSECRET0123456789"
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def openai_error(code: str | None, message: str = "error", type_: str = "invalid_request_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def anthropic_error(type_: str, message: str = "error") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


def verdict(status: int, body: bytes = b"{}", headers: dict[str, str] | None = None, model: str = "gpt-4o-mini"):
    return classify_reply(status, headers or {}, body, model=model, api_key=KEY, latency_ms=120)


def test_chat_probe_is_the_smallest_request() -> None:
    probe = probe_request("gpt-4o-mini")
    assert probe.path == "/chat/completions"
    assert probe.body["max_tokens"] == 5
    assert len(probe.body["messages"]) == 1 and probe.body["messages"][0]["role"] == "user"


@pytest.mark.parametrize("model", ["text-embedding-3-small", "mistral-embed", "nomic-embed-text", "bge-m3",
                                   "BAAI/bge-large-en-v1.5", "voyage/text-embedding-004"])
def test_embedding_models_get_an_embeddings_probe(model: str) -> None:
    assert is_embedding_model(model)
    probe = probe_request(model)
    assert probe.path == "/embeddings" and probe.body["input"] and "max_tokens" not in probe.body


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-5-sonnet-latest", "llama-3.3-70b-versatile", "o3-mini"])
def test_chat_models_are_not_embedding_models(model: str) -> None:
    assert not is_embedding_model(model)


def test_success() -> None:
    result = verdict(200, orjson.dumps({"choices": []}))
    assert result.success and result.status == "success"
    assert result.message == "LLM responding correctly (120 ms)"
    assert result.latency_ms == 120 and result.upstream_status == 200 and result.retry_after_s is None


def test_2xx_that_is_not_json_is_not_a_working_llm() -> None:
    result = verdict(200, b"<html>login page</html>")
    assert not result.success and result.status == "failed" and "not JSON" in result.message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, openai_error("invalid_api_key")),
        (403, openai_error("unsupported_country_region_territory")),
        (400, openai_error("invalid_api_key")),
        (401, anthropic_error("authentication_error")),
        (400, orjson.dumps({"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
                                      "details": [{"reason": "API_KEY_INVALID"}]}})),
    ],
)
def test_invalid_key(status: int, body: bytes) -> None:
    result = verdict(status, body)
    assert (result.success, result.status) == (False, "failed")
    assert result.message == "Invalid API key - please check your key"
    assert result.upstream_status == status


@pytest.mark.parametrize(
    ("status", "body"),
    [(402, b"{}"), (429, openai_error("insufficient_quota", type_="insufficient_quota")),
     (400, anthropic_error("billing_error"))],
)
def test_quota(status: int, body: bytes) -> None:
    result = verdict(status, body)
    assert (result.status, result.message) == ("failed", "Quota or credit exhausted")


@pytest.mark.parametrize(("status", "body"), [(404, b"{}"), (400, openai_error("model_not_found"))])
def test_model_not_found(status: int, body: bytes) -> None:
    result = verdict(status, body, model="gpt-9")
    assert (result.status, result.message) == ("failed", "Model not found: gpt-9")


def test_rate_limited_with_retry_after() -> None:
    result = verdict(429, openai_error("rate_limit_exceeded"), {"Retry-After": "5"})
    assert (result.success, result.status) == (False, "rate_limited")
    assert result.message == "Rate limit exceeded - try again in 5s"
    assert result.retry_after_s == 5 and result.upstream_status == 429


def test_rate_limited_without_any_hint() -> None:
    result = verdict(429)
    assert result.message == "Rate limit exceeded - try again later" and result.retry_after_s is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "5"}, 5),
        ({"retry-after": "2.2"}, 3),
        ({"Retry-After": "0"}, 1),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 2),
        ({"Retry-After": format_datetime(NOW + timedelta(seconds=30), usegmt=True)}, 30),
        ({"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms"}, 360),
        ({"x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "6m0s",
          "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1.5s"}, 2),
        ({"x-ratelimit-reset-requests": "1h2m3s"}, 3723),
        ({"anthropic-ratelimit-requests-remaining": "0",
          "anthropic-ratelimit-requests-reset": (NOW + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")}, 12),
        ({"x-ratelimit-reset": str(int(NOW.timestamp()) + 40)}, 40),
        ({"x-ratelimit-reset": "7"}, 7),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_sources(headers: dict[str, str], expected: int | None) -> None:
    assert retry_after_seconds(headers, now=NOW) == expected


def test_rate_limited_from_reset_headers() -> None:
    result = verdict(429, b"{}", {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "4.2s"})
    assert result.message == "Rate limit exceeded - try again in 5s" and result.retry_after_s == 5


@pytest.mark.parametrize("status", [500, 502, 503, 529])
def test_provider_errors(status: int) -> None:
    result = verdict(status, openai_error(None, "The engine is overloaded"))
    assert (result.status, result.message) == ("failed", f"Provider error ({status})")


def test_other_4xx_pass_the_provider_message_without_the_key() -> None:
    body = openai_error(None, f"Invalid 'max_tokens' for key {KEY}:\n  use max_completion_tokens")
    result = verdict(400, body)
    assert result.status == "failed" and result.upstream_status == 400
    assert result.message.startswith("Provider refused the test request (400): Invalid 'max_tokens'")
    assert "max_completion_tokens" in result.message and "\n" not in result.message
    assert KEY not in result.message and KEY[:-1] not in result.message


def test_long_provider_messages_are_bounded() -> None:
    result = verdict(422, openai_error(None, "x" * 5000))
    assert len(result.message) <= 500


def test_non_json_error_bodies_are_scrubbed_too() -> None:
    result = verdict(418, f"teapot refuses {KEY}".encode())
    assert KEY not in result.message and "teapot refuses" in result.message


def test_timeout() -> None:
    result = classify_error(TimeoutError(), host="api.example.com", timeout_s=10)
    assert (result.success, result.status, result.message) == (False, "timeout", "No answer within 10 s")
    assert result.latency_ms is None and result.upstream_status is None


def _connector_error(cls: type[aiohttp.ClientConnectorError], errno: int, text: str) -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("api.example.com", 443, True, True, None, None, None)
    return cls(key, OSError(errno, text))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_connector_error(aiohttp.ClientConnectorError, 111, "Connection refused"), "refused"),
        (_connector_error(aiohttp.ClientConnectorDNSError, -2, "Name or service not known"), "cannot resolve"),
        (aiohttp.ServerDisconnectedError(), "reset or closed"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), "reset or closed"),
        (UnsafeURLError("base_url points to a cloud metadata address, which the gateway never calls",
                        category="metadata"), "cloud metadata"),
    ],
)
def test_unreachable_names_the_host(exc: BaseException, expected: str) -> None:
    result = classify_error(exc, host="api.example.com", timeout_s=10)
    assert (result.success, result.status) == (False, "unreachable")
    assert "api.example.com" in result.message and expected in result.message


def test_upstream_errors_from_the_forwarding_code() -> None:
    def from_transport(cause: BaseException) -> UpstreamError:
        try:
            raise UpstreamError("Could not reach the upstream", code="upstream_unreachable") from cause
        except UpstreamError as exc:
            return exc

    common = {"model": "m", "api_key": KEY, "host": "h.example", "timeout_s": 3.0, "latency_ms": 9}
    assert classify_upstream_error(UpstreamTimeout("slow"), **common).status == "timeout"
    assert classify_upstream_error(from_transport(aiohttp.ServerDisconnectedError()), **common).status == "unreachable"
    answered = UpstreamError("Incorrect API key", status=401, code="invalid_api_key")
    assert classify_upstream_error(answered, **common).message == "Invalid API key - please check your key"
    limited = UpstreamError("slow down", status=429, code="rate_limit_exceeded", headers={"Retry-After": "7"})
    assert classify_upstream_error(limited, **common).retry_after_s == 7
    refused = UpstreamError(f"bad {KEY}", status=400, code="upstream_error")
    assert KEY not in classify_upstream_error(refused, **common).message


def test_stored_status_keeps_the_column_to_four_states() -> None:
    assert set(STORED_STATUS.values()) == {"success", "failed", "rate_limited"}
    assert STORED_STATUS["timeout"] == STORED_STATUS["unreachable"] == "failed"
