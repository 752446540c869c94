"""The configuration test: the smallest real request for a model, and a verdict for whatever came back.

Pure functions, no I/O: `probe_request` builds the request body, `classify_reply` judges an upstream answer,
`classify_error` judges an exception raised while calling the upstream. A verdict never carries the key:
every provider text passes through `keys.scrub` first.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp
import orjson
from pydantic import BaseModel

from gateway.crypto.masking import scrub
from gateway.errors import UpstreamError, UpstreamTimeout, parse_error_body
from gateway.ssrf import UnsafeURLError

Status = Literal["success", "failed", "rate_limited", "timeout", "unreachable"]
STATUSES: tuple[Status, ...] = ("success", "failed", "rate_limited", "timeout", "unreachable")
# The configuration column knows four states (DESIGN §2); the response keeps the finer one.
STORED_STATUS: dict[str, str] = {
    "success": "success", "failed": "failed", "rate_limited": "rate_limited",
    "timeout": "failed", "unreachable": "failed",
}
PROBE_MAX_TOKENS = 5
PROBE_PROMPT = "Say OK."
MAX_MESSAGE_CHARS = 400  # the stored column holds 500
MAX_RETRY_AFTER_S = 24 * 3600

# Error codes and types providers put in their error bodies, by what they mean.
INVALID_KEY_CODES = frozenset({"invalid_api_key", "authentication_error", "api_key_invalid", "unauthenticated"})
QUOTA_CODES = frozenset({"insufficient_quota", "billing_error", "billing_not_active", "insufficient_balance"})
MODEL_CODES = frozenset({"model_not_found"})
KNOWN_CODES = INVALID_KEY_CODES | QUOTA_CODES | MODEL_CODES
# Model families that only embed: a chat request would fail although the key is fine.
_EMBEDDING_MODEL = re.compile(r"(^|[/_.:-])(text-)?embed|^(bge|gte|e5)-|[/-](bge|gte|e5)-", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class CheckResult(BaseModel):
    """The verdict of one configuration test, as the API returns it."""

    success: bool
    status: Status
    message: str
    latency_ms: int | None = None
    retry_after_s: int | None = None
    upstream_status: int | None = None


@dataclass(frozen=True)
class Probe:
    """What to send, in OpenAI's shape: the path under the provider's base URL, and the JSON body."""

    path: str  # "/chat/completions" or "/embeddings"
    body: dict[str, Any]


def is_embedding_model(model: str) -> bool:
    """True for models that only serve embeddings (text-embedding-3-small, mistral-embed, bge-m3 ...)."""
    return bool(_EMBEDDING_MODEL.search(model))


def probe_request(model: str) -> Probe:
    """The smallest real request: 5 tokens for one short message, or the embedding of one short text."""
    if is_embedding_model(model):
        return Probe("/embeddings", {"model": model, "input": PROBE_PROMPT})
    messages = [{"role": "user", "content": PROBE_PROMPT}]
    return Probe("/chat/completions", {"model": model, "max_tokens": PROBE_MAX_TOKENS, "messages": messages})


def _duration_s(value: str) -> float | None:
    """Seconds from "20", "1.5", "20ms", "6m0s", "1h2m3.5s" (OpenAI's and Groq's reset headers)."""
    text = value.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _until_s(value: str, now: datetime) -> float | None:
    """Seconds until an HTTP date or RFC 3339 time (Retry-After, anthropic-ratelimit-*-reset)."""
    text = value.strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()


def _seconds(value: str, now: datetime) -> float | None:
    seconds = _duration_s(value)
    if seconds is None:
        seconds = _until_s(value, now)
    elif seconds > 1e9:  # a Unix timestamp, as some providers send in x-ratelimit-reset
        seconds -= now.timestamp()
    return seconds


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> int | None:
    """Whole seconds to wait, from Retry-After / retry-after-ms, else the provider's rate-limit reset headers.

    Among reset headers, those of an exhausted limit (its `remaining` header is 0) win; otherwise the longest."""
    now = now or datetime.now(UTC)
    lower = {k.lower(): v for k, v in headers.items()}
    waits: list[float] = []
    if "retry-after-ms" in lower and (ms := _duration_s(lower["retry-after-ms"])) is not None:
        waits.append(ms / 1000)
    elif "retry-after" in lower and (seconds := _seconds(lower["retry-after"], now)) is not None:
        waits.append(seconds)
    if not waits:
        resets = {name: value for name, value in lower.items() if "ratelimit" in name and "reset" in name}
        exhausted = [
            value for name, value in resets.items() if lower.get(name.replace("reset", "remaining"), "").strip() == "0"
        ]
        for value in exhausted or list(resets.values()):
            seconds = _seconds(value, now)
            if seconds is not None:
                waits.append(seconds)
    if not waits:
        return None
    return min(MAX_RETRY_AFTER_S, max(1, math.ceil(max(waits))))


def error_fields(body: bytes) -> tuple[set[str], str | None]:
    """Error codes and types (lower-cased) and the message of an OpenAI, Anthropic or Google error body."""
    fields = parse_error_body(body)
    if not fields.readable:
        return set(), body.decode("utf-8", "replace").strip() or None
    return fields.codes, fields.message


def _clean(text: str, api_key: str) -> str:
    """A provider text fit to show: the key removed, one line, bounded."""
    one_line = " ".join(scrub(text, api_key).split())
    if len(one_line) > MAX_MESSAGE_CHARS:
        one_line = one_line[: MAX_MESSAGE_CHARS - 3] + "..."
    return one_line


def _failed(message: str, status: int | None, latency_ms: int | None) -> CheckResult:
    return CheckResult(success=False, status="failed", message=message, latency_ms=latency_ms, upstream_status=status)


def classify_reply(
    status: int, headers: Mapping[str, str], body: bytes, *, model: str, api_key: str, latency_ms: int
) -> CheckResult:
    """The verdict for an upstream answer read in full."""
    if 200 <= status < 300:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            # Something answered, but not an LLM API: a passing test must mean real traffic will pass.
            return _failed(f"Unexpected answer from the provider: not JSON (HTTP {status})", status, latency_ms)
        return CheckResult(success=True, status="success", message=f"LLM responding correctly ({latency_ms} ms)",
                          latency_ms=latency_ms, upstream_status=status)
    codes, message = error_fields(body)
    return classify_refusal(status, headers, codes, message, model=model, api_key=api_key, latency_ms=latency_ms)


def classify_refusal(
    status: int, headers: Mapping[str, str], codes: set[str], provider_message: str | None, *, model: str,
    api_key: str, latency_ms: int | None,
) -> CheckResult:
    """The verdict for an upstream error answer; its error codes take precedence over the bare status."""
    codes = {c.lower() for c in codes}
    if codes & QUOTA_CODES or status == 402:
        # Checked before 429: OpenAI answers an empty balance with 429 insufficient_quota.
        return _failed("Quota or credit exhausted", status, latency_ms)
    if codes & INVALID_KEY_CODES or status in (401, 403):
        return _failed("Invalid API key - please check your key", status, latency_ms)
    if status == 429:
        wait = retry_after_seconds(headers)
        hint = f"try again in {wait}s" if wait is not None else "try again later"
        return CheckResult(success=False, status="rate_limited", message=f"Rate limit exceeded - {hint}",
                          latency_ms=latency_ms, retry_after_s=wait, upstream_status=status)
    if codes & MODEL_CODES or status == 404:
        return _failed(f"Model not found: {model}", status, latency_ms)
    if status >= 500:
        return _failed(f"Provider error ({status})", status, latency_ms)
    detail = _clean(provider_message, api_key) if provider_message else "no message"
    return _failed(f"Provider refused the test request ({status}): {detail}", status, latency_ms)


def classify_error(exc: BaseException, *, host: str, timeout_s: float, api_key: str = "") -> CheckResult:
    """The verdict for an exception raised while calling the upstream at `host`."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return CheckResult(success=False, status="timeout", message=f"No answer within {timeout_s:g} s")
    if isinstance(exc, UnsafeURLError):
        reason = f"refused to connect to {host}: {exc.reason}"
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        reason = f"cannot resolve host {host}"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        reason = f"connection to {host} refused or failed"
    elif isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)):
        reason = f"connection to {host} was reset or closed before the answer"
    else:
        reason = f"cannot reach {host} ({type(exc).__name__})"
    return CheckResult(success=False, status="unreachable", message=_clean(f"Unreachable: {reason}", api_key))


def classify_upstream_error(
    exc: UpstreamError, *, model: str, api_key: str, host: str, timeout_s: float, latency_ms: int
) -> CheckResult:
    """The verdict for the forwarding code's UpstreamError: a transport failure (its cause) or an error answer."""
    cause = exc.__cause__
    if isinstance(exc, UpstreamTimeout) or isinstance(cause, TimeoutError):
        return classify_error(TimeoutError(), host=host, timeout_s=timeout_s)
    if isinstance(cause, (aiohttp.ClientError, UnsafeURLError, OSError)):
        return classify_error(cause, host=host, timeout_s=timeout_s, api_key=api_key)
    codes = {c for c in (exc.code, exc.type) if isinstance(c, str)}
    return classify_refusal(exc.status, exc.headers, codes, exc.message, model=model, api_key=api_key,
                            latency_ms=latency_ms)
