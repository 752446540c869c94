"""Relaying an upstream's server-sent events: whole events as they arrive, the token usage picked out on the
way, and held back (the field, or the event it alone fills) when the gateway asked for it and the client did not."""

from __future__ import annotations

import math
from typing import Any

import orjson

from gateway.errors import UpstreamError

DONE = b"data: [DONE]"
MAX_TOKENS = 2**31 - 1  # what the usage columns hold; an upstream may claim any number


def _tokens(value: Any) -> int:
    if isinstance(value, float):  # orjson reads integers past 2**64 as floats
        value = int(min(max(value, 0.0), MAX_TOKENS)) if math.isfinite(value) else 0
    return min(max(value, 0), MAX_TOKENS) if isinstance(value, int) else 0


def usage_of(obj: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens from an answer or stream event of any OpenAI endpoint, if it has usage."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        response = obj.get("response")  # /v1/responses stream events carry it in their response object
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    # Chat and completions answers: two counts in range, taken as they are (once per request, so no calls).
    if type(prompt) is int and type(completion) is int and 0 <= prompt <= MAX_TOKENS and 0 <= completion <= MAX_TOKENS:
        return (prompt, completion)
    return (_tokens(usage.get("prompt_tokens", usage.get("input_tokens", 0))),
            _tokens(usage.get("completion_tokens", usage.get("output_tokens", 0))))


def usage_of_body(raw: bytes) -> tuple[int, int] | None:
    """Usage from a complete JSON answer; None when there is none or the body is not JSON."""
    try:
        return usage_of(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None


def event_data(event: bytes) -> Any:
    """The JSON of an event's data lines, or None."""
    lines = [line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")]
    if not lines:
        return None
    try:
        return orjson.loads(b"\n".join(lines))
    except orjson.JSONDecodeError:
        return None


def first_event_is_json(events: bytes) -> bool:
    """False when the first event's data is neither JSON nor [DONE]: the upstream is not speaking SSE JSON."""
    end, _ = _boundary(events, 0, b"\r" in events)
    event = events if end < 0 else events[:end]
    lines = [line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")]
    if not lines or lines == [b"[DONE]"]:
        return True  # comments and keep-alives are not judged
    return event_data(event) is not None


def _boundary(buffer: bytes | bytearray, start: int, cr: bool) -> tuple[int, int]:
    """Index and length of the first event separator from start, (-1, 0) when there is no whole event."""
    lf = buffer.find(b"\n\n", start)
    crlf = buffer.find(b"\r\n\r\n", start) if cr else -1
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return (lf, 2) if lf >= 0 else (-1, 0)


def _says_nothing(choice: Any) -> bool:
    """A stream choice without content, tool calls, logprobs or a finish reason."""
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    has_delta = isinstance(delta, dict) and any(v not in (None, "", [], {}) for v in delta.values())
    return not has_delta and not choice.get("text") and not choice.get("logprobs") \
        and choice.get("finish_reason") is None


class SSERelay:
    """Cuts a byte stream into events; feed() returns what to write to the client now. Each byte is scanned
    once (a partial event is not searched again from its start), and a partial event may not grow past
    `max_event_bytes`: an upstream that never ends its event cannot take the gateway's memory."""

    __slots__ = ("_buffer", "_cr", "_scanned", "drop_usage_chunk", "max_event_bytes", "saw_done", "usage")

    def __init__(self, *, drop_usage_chunk: bool, max_event_bytes: int) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched for a separator
        self._cr = False  # whether the stream has used "\r" at all: only then look for "\r\n\r\n"
        self.max_event_bytes = max_event_bytes
        self.drop_usage_chunk = drop_usage_chunk
        self.usage: tuple[int, int] | None = None
        self.saw_done = False

    def feed(self, chunk: bytes) -> bytes:
        """Take an upstream chunk; return the whole events it completes (maybe b""). UpstreamError when the
        event still open is longer than max_event_bytes."""
        buffer = self._buffer
        buffer += chunk
        if not self._cr and b"\r" in chunk:
            self._cr = True
        out: list[bytes] = []
        start = 0
        # A separator may straddle the previous chunk's end: step back by its length less one.
        scan = max(self._scanned - 3, 0)
        while True:
            index, length = _boundary(buffer, scan, self._cr)
            if index < 0:
                break
            end = index + length
            event = bytes(buffer[start:end])
            start = scan = end
            kept = self._keep(event)
            if kept:
                out.append(kept)
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        if len(buffer) > self.max_event_bytes and not out:  # whole events before it still go out first
            buffer.clear()  # the error's traceback may keep this relay alive a while: not its megabyte
            raise UpstreamError(f"The upstream sent an event larger than {self.max_event_bytes} bytes",
                                code="upstream_event_too_large")
        return out[0] if len(out) == 1 else b"".join(out)

    def _keep(self, event: bytes) -> bytes:
        """The event as the client gets it: as is, without its usage, or b"" when dropped."""
        if event.startswith(DONE):
            self.saw_done = True
            return event
        if b'"usage"' not in event:
            return event
        # With include_usage every chunk says "usage":null; only the one that carries numbers is parsed. A client
        # that did not ask sees no usage field at all (in JSON text these bytes cannot be inside a string).
        if b'"usage":null' in event:
            return event.replace(b',"usage":null', b"").replace(b'"usage":null,', b"") if self.drop_usage_chunk \
                else event
        data = event_data(event)
        found = usage_of(data)
        if found is None:
            return event
        self.usage = found
        if not self.drop_usage_chunk or not isinstance(data, dict):
            return event
        # The client did not ask for usage: OpenAI sends it on a chunk of its own (choices []), LiteLLM on one
        # whose choices hold an empty delta, others beside content; drop what is left with nothing to say.
        choices = data.get("choices")
        if not isinstance(choices, list) or all(_says_nothing(c) for c in choices):
            return b""
        del data["usage"]
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def rest(self) -> bytes:
        """Whatever the upstream sent after its last whole event."""
        return bytes(self._buffer)
