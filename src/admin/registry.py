"""Route registration that also describes each route, so /api/openapi.json comes from the same pydantic
models that validate requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A path segment that only matches a UUID, so fixed paths beside it ("/llm-configurations/stats") are never
# captured by "{id}" whatever order modules register in; anything else is the router's 404.
UUID_PATTERN = "[0-9a-fA-F-]{36}"
ID = "{id:" + UUID_PATTERN + "}"


@dataclass(frozen=True)
class Operation:
    """One documented endpoint."""

    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    public: bool = False


@dataclass
class ApiRegistry:
    """The routes of one admin module."""

    tag: str
    operations: list[Operation] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: Iterable[int] = (),
        public: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Register a handler under `path` (relative to /api) and describe it."""

        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(method, path, handler, summary, body, query, response, status, tuple(errors),
                          (self.tag,), public)
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        """Add every route to the admin sub-app."""
        for op in self.operations:
            app.router.add_route(op.method, op.path, op.handler)
