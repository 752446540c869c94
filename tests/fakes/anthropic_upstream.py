"""Fake Anthropic Messages API: a real aiohttp server speaking Anthropic's wire format, driven by tests.

Endpoint: POST /v1/messages with ``x-api-key`` (401 + Anthropic's error envelope when wrong) and
``anthropic-version`` (400 when missing, like the real API). Non-streamed answers are a ``message`` object;
``"stream": true`` answers with the real event sequence (message_start, content_block_start, ping,
content_block_delta xN, content_block_stop, message_delta, message_stop), each ``event: X\\ndata: {json}\\n\\n``.

Behaviour, scripting, records and helpers are those of ``openai_upstream.FakeUpstream``; ``prompt_tokens`` and
``completion_tokens`` are reported as ``input_tokens`` / ``output_tokens`` (``report_usage`` does not apply:
Anthropic always reports usage), and ``finish_reason`` "stop" / "length" become "end_turn" / "max_tokens".

litellm: pass the server root, ``api_base=fake.url`` (``http://127.0.0.1:<port>``, no path): litellm appends
``/v1/messages`` itself. A base that already ends in ``/v1/messages`` (``fake.messages_url``) works as well;
``.../v1`` does not (litellm would call ``/v1/v1/messages``).

Standalone, from the repository root::

    python -m tests.fakes.anthropic_upstream --port 9200 --key sk-ant-bench-0001
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from .openai_upstream import (
    Behaviour,
    FakeUpstream,
    RequestRecord,
    ServerFactory,
    new_id,
    run_standalone,
    split_content,
    sse,
)

DEFAULT_ANTHROPIC_KEY = "sk-ant-test-0000000000000001"

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    # status: (error type, message)
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: (
        "billing_error",
        "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
    ),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: {model}"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit "
        "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage. "
        "Please reduce the prompt length or the maximum tokens requested, or try again later.",
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def anthropic_error(type_: str, message: str) -> dict[str, Any]:
    """Anthropic's error envelope."""
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": new_id("req_")}


class FakeAnthropic(FakeUpstream):
    """A fake Anthropic Messages API server."""

    default_key = DEFAULT_ANTHROPIC_KEY
    api_suffix = ""  # Anthropic clients (and litellm) take the bare root and add /v1/messages
    invalid_json_message = "There was an error parsing the body of your request. Please check your request syntax."

    @property
    def messages_url(self) -> str:
        """The full Messages endpoint URL."""
        return self.root_url + "/v1/messages"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self.endpoint(self._messages))

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("x-api-key") or None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"request-id": new_id("req_"), "anthropic-organization-id": "fake-org", **(extra or {})}

    def stream_headers(self) -> dict[str, str]:
        return {**super().stream_headers(), **self._headers()}

    def _error(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return self.json_response(anthropic_error(type_, message), status, self._headers(headers))

    def auth_error(self, request: web.Request, key: str | None, b: Behaviour) -> web.Response:
        if key is None:
            return self._error(401, "authentication_error", "x-api-key header is required")
        message = "invalid x-api-key" + (f" ({key})" if b.echo_key_in_error else "")
        return self._error(401, "authentication_error", message)

    def error_response(self, status: int, b: Behaviour, key: str | None, body: Any) -> web.Response:
        fallback = ("api_error" if status >= 500 else "invalid_request_error", "Upstream error.")
        type_, template = _ANTHROPIC_ERRORS.get(status, fallback)
        model = body.get("model") if isinstance(body, dict) else None
        message = b.error_message or template.format(model=model or "claude-3-5-sonnet-20240620")
        if b.echo_key_in_error and key:
            message += f" (request made with x-api-key {key})"
        headers = {"retry-after": b.retry_after} if b.retry_after is not None else None
        return self._error(status, type_, message, headers)

    def bad_request(self, message: str, param: str | None = None) -> web.Response:
        return self._error(400, "invalid_request_error", message)

    def error_event(self, envelope: dict[str, Any]) -> dict[str, Any]:
        return {"type": "error", "error": envelope["error"]}  # Anthropic's streamed `error` event

    def validate(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        if not request.headers.get("anthropic-version"):
            return self.bad_request("anthropic-version: header is required")
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                return self.bad_request(f"{name}: Field required")
        return None

    async def _messages(
        self, request: web.Request, rec: RequestRecord, b: Behaviour, body: dict[str, Any]
    ) -> web.StreamResponse:
        mid, model = new_id("msg_fake"), body["model"]
        stop_reason = _STOP_REASONS.get(b.finish_reason, b.finish_reason)
        usage = {
            "input_tokens": b.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": b.completion_tokens,
            "service_tier": "standard",
        }
        message: dict[str, Any] = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": b.content}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        if not rec.stream:
            return self.json_response(message, headers=self._headers())
        # message_start carries the input count and a provisional output count; message_delta the final one.
        start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"message": start}),
            ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            ("ping", {}),
        ]
        events += [
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
            for piece in split_content(b.content, b.chunks)
        ]
        events += [
            ("content_block_stop", {"index": 0}),
            ("message_delta", {
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": b.completion_tokens},
            }),
            ("message_stop", {}),
        ]
        frames = [sse({"type": name, **data}, event=name) for name, data in events]
        return await self.stream(request, rec, b, frames)


async def start_anthropic_upstream(
    aiohttp_server: ServerFactory, keys: Iterable[str] = (DEFAULT_ANTHROPIC_KEY,), **behaviour: Any
) -> FakeAnthropic:
    """Start a FakeAnthropic on pytest-aiohttp's ``aiohttp_server`` (stopped by the fixture's teardown)."""
    fake = FakeAnthropic(keys, **behaviour)
    return fake.attach(await aiohttp_server(fake.app))


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a FakeAnthropic until interrupted."""
    run_standalone(FakeAnthropic, argv, 9200)


if __name__ == "__main__":
    main()
