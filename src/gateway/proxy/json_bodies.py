"""JSON request bodies parsed off the event loop when big: a child process parses them.

Parsing JSON holds the interpreter for up to ~0.1 s per MB and takes up to ~26 times the body's size in memory
(a list of empty objects): on the event loop, one user's 10 MB body would stall every other request for a
second and leave this process at its peak. From INLINE_BYTES on, a child process (one, started with the first
such body) parses the body and hands back each top-level field as its JSON text. The fields the gateway reads,
and small ones, are parsed here; the others stay JSON text (orjson Fragments), sent upstream as they are.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import InvalidJSON, ServiceUnavailable
from gateway.proxy.body import json_object, loads, refuse_routing_fields

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

INLINE_BYTES = 128 * 1024  # ~10 ms of parsing at worst: cheaper than the trip to the child
# Top-level fields the gateway reads (selection, streaming, usage chunk): always parsed here.
READ_FIELDS = frozenset({"model", "stream", "stream_options"})
SMALL_FIELD_BYTES = 1024
NOT_JSON, NOT_OBJECT = "not JSON", "not an object"


def top_level_fields(raw: bytes) -> list[tuple[str, bytes]] | str:
    """In the child: each top-level field of a JSON object with its value as JSON text, or why it is none."""
    try:
        body = loads(raw)
    except orjson.JSONDecodeError:
        return NOT_JSON
    if not isinstance(body, dict):
        return NOT_OBJECT
    return [(name, orjson.dumps(value)) for name, value in body.items()]


class JsonBodies:
    """The child that parses big /v1 JSON bodies (one at a time); small ones are gateway.proxy.body's to parse."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, raw: bytes) -> dict[str, Any]:
        """A big JSON object body without any routing field; 400 naming what is wrong."""
        # Imported with the first big body: multiprocessing costs every serving process memory for as long as it
        # runs, and most never see a body this big (tests/cli/test_serve_imports.py).
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        if multiprocessing.current_process().daemon:
            # `serve --workers N` runs its workers as daemonic processes, which may not start children: there
            # the body is parsed here, as before the child existed (the per-user byte bound still holds).
            return json_object(raw)
        pool = self._pool
        if pool is None:
            # spawn, not fork: a fork would copy this process (its connections, its loop) into the child.
            pool = self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            fields = await asyncio.get_running_loop().run_in_executor(pool, top_level_fields, raw)
        except BrokenProcessPool:  # the child died (killed, out of memory): the next body starts another
            if self._pool is pool:
                self._pool = None
            raise ServiceUnavailable("The gateway could not parse the request body; retry",
                                     code="body_parser_unavailable", headers={"Retry-After": "1"}) from None
        if isinstance(fields, str):
            raise InvalidJSON("Request body is not valid JSON" if fields == NOT_JSON else
                              "Request body must be a JSON object", param="body")
        refuse_routing_fields(name for name, _ in fields)
        return {name: orjson.loads(value) if name in READ_FIELDS or len(value) <= SMALL_FIELD_BYTES
                else orjson.Fragment(value) for name, value in fields}

    def close(self) -> None:
        """Stop the child, if one was started."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
