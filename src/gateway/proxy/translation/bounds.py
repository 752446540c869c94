"""What a translated call may carry, checked in the gateway before anything reaches a worker: its size, its
number of messages, and no remote URL in a message part (litellm would fetch it itself: with its own client, DNS
and proxy settings, outside the gateway's URL policy, synchronously, with a timeout of its own). The worker asks
the remote-URL rule again: it sees every message, even when the gateway left a big body's messages unparsed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest, PayloadTooLarge

# A scheme (http, https, gs, s3, file, ftp...): anything litellm would go and read. data: URLs carry their bytes.
_REMOTE = re.compile(r"\s*[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
# Parts whose strings are the conversation itself, never fetched.
_TEXT_PARTS = frozenset({"text", "refusal", "thinking", "redacted_thinking"})


@dataclass(frozen=True)
class CallBounds:
    """The limits of one translated call."""

    max_bytes: int
    max_messages: int

    def check(self, body: dict[str, Any]) -> None:
        """Refuse a call with too many messages or a remote URL (400 naming the limit or the field), before its
        size is known: counting is cheaper than serialising a flood of messages."""
        messages = body.get("messages")
        if not isinstance(messages, list):
            return  # the worker names that error
        if len(messages) > self.max_messages:
            raise BadRequest(f"A request to a translated provider may carry at most {self.max_messages} messages "
                             f"(TRANSLATION_MAX_MESSAGES); this one has {len(messages)}", param="messages",
                             code="too_many_messages")
        refuse_remote_urls(messages)

    def check_size(self, size: int) -> None:
        """Refuse a call over the size limit (413 naming the limit)."""
        if size > self.max_bytes:
            raise PayloadTooLarge(f"A request to a translated provider may be at most {self.max_bytes} bytes "
                                  f"(TRANSLATION_MAX_REQUEST_BYTES); this one is {size}",
                                  code="translation_request_too_large")


def refuse_remote_urls(messages: list[Any]) -> None:
    """400 naming the first message part that holds a remote URL. Asked in the gateway when it parsed the body
    (a big body's messages stay JSON text there) and always in the worker, before litellm sees the call."""
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for number, part in enumerate(content):
                where = _remote_url(part, f"messages[{index}].content[{number}]")
                if where is not None:
                    raise BadRequest(
                        f"Field '{where}' is a remote URL: providers translated by the gateway take images and "
                        "files only inline, as data: URLs", param=where, code="remote_url_not_supported")


def _remote_url(part: Any, path: str) -> str | None:
    """The path of the first remote URL in a message part (text parts excepted), if any; walked with a stack of
    its own, as deep as JSON nests."""
    stack: list[tuple[Any, str]] = [(part, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if _REMOTE.match(value):
                return where
        elif isinstance(value, dict):
            if value.get("type") not in _TEXT_PARTS:
                stack.extend((item, f"{where}.{key}") for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{number}]") for number, item in reversed(list(enumerate(value))))
    return None
