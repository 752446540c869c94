"""Who is calling: bearer gateway tokens resolved through an in-memory cache (no database on the hot path)."""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware
from sqlalchemy.exc import SQLAlchemyError

from gateway.accounts.tokens import hash_token, is_well_formed
from gateway.accounts.users import find_token
from gateway.errors import Forbidden, ServiceUnavailable, Unauthorized
from gateway.settings import Settings
from gateway.store.changes import Change
from gateway.web.appkeys import SESSIONMAKER
from gateway.web.responses import Handler, error_answer

# Paths that need no token: probes, the published API description, its docs page and the web page's static files.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/openapi.json", "/api/docs"})
PUBLIC_PREFIXES = ("/ui", "/api/docs/")
NEGATIVE_TTL_S = 5.0
MAX_NEGATIVE = 10_000
MAX_KNOWN = 10_000


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller; the operator token has no user of its own."""

    user_id: uuid.UUID | None
    user_name: str
    is_admin: bool
    token_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    expires_ts: float | None = None  # expires_at as epoch seconds: checked on every request
    disabled: bool = False  # the user is disabled: cached like a revoked token, with its own message


    @property
    def is_operator(self) -> bool:
        """Admin user or the configured admin token."""
        return self.is_admin

    def require_user(self) -> uuid.UUID:
        """The caller's user id, or 403 for the bare operator token."""
        if self.user_id is None:
            raise Forbidden("The operator token has no configurations of its own; use a user's token")
        return self.user_id


OPERATOR = Caller(user_id=None, user_name="operator", is_admin=True)
CALLER = web.RequestKey("caller", Caller)


class TokenCache:
    """token → Caller, emptied on any token or user change (rare writes, hot reads). Keyed by the token itself,
    which lives in this process's memory anyway: a hit costs one dict lookup, the hash only a miss."""

    def __init__(self) -> None:
        self._known: dict[str, Caller] = {}
        self._unknown: dict[str, float] = {}
        # Authorization header values of valid user tokens: a hit skips parsing the header.
        self.by_header: dict[str, Caller] = {}

    def remember_header(self, header: str, caller: Caller) -> None:
        """Remember a header that resolved to a user token (never the admin token: it is compared each time)."""
        if caller is OPERATOR:
            return
        if len(self.by_header) >= MAX_KNOWN:
            self.by_header.clear()
        self.by_header[header] = caller

    def get(self, token: str) -> Caller | Literal[False] | None:
        """A cached Caller, None for a cached revoked/unknown token, False when not cached."""
        caller = self._known.get(token)
        if caller is not None:
            return caller
        seen = self._unknown.get(token)
        if seen is not None and time.monotonic() - seen < NEGATIVE_TTL_S:
            return None
        return False

    def put(self, token: str, caller: Caller | None) -> None:
        """Remember a lookup; unknown tokens only briefly so a new token works at once."""
        if caller is None:
            if len(self._unknown) >= MAX_NEGATIVE:
                self._unknown.clear()
            self._unknown[token] = time.monotonic()
        else:
            if len(self._known) >= MAX_KNOWN:
                self._known.clear()
            self._known[token] = caller

    def on_change(self, change: Change) -> None:
        """Drop everything on token or user changes."""
        if change.kind in ("tokens", "users", "all"):
            self._known.clear()
            self._unknown.clear()
            self.by_header.clear()


def bearer_token(request: web.Request) -> str:
    """The token of `Authorization: Bearer ...`, or 401."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("Missing Authorization header: send 'Authorization: Bearer <gateway token>'")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not is_well_formed(token):
        raise Unauthorized("Malformed Authorization header: expected 'Bearer <gateway token>'")
    return token


def _admin_bytes(settings: Settings) -> bytes | None:
    return settings.admin_token.get_secret_value().encode() if settings.admin_token is not None else None


async def _resolve(request: web.Request, token: str, cache: TokenCache, admin: bytes | None) -> Caller:
    """Map a token to its caller: the admin token, a cached token, or one database lookup."""
    if admin is not None and hmac.compare_digest(token.encode(), admin):
        return OPERATOR
    cached = cache.get(token)
    if cached is False:
        cached = await _lookup(request, hash_token(token))
        cache.put(token, cached)
    if cached is None:
        raise Unauthorized("Invalid or revoked gateway token")
    if cached.disabled:
        raise Unauthorized(f"User '{cached.user_name}' is disabled; an operator can enable it again",
                           code="user_disabled")
    if cached.expires_ts is not None and cached.expires_ts <= time.time():
        raise Unauthorized("Gateway token has expired")
    return cached


async def _lookup(request: web.Request, digest: str) -> Caller | None:
    try:
        async with request.config_dict[SESSIONMAKER]() as session:
            found = await find_token(session, token_hash=digest)
    except (SQLAlchemyError, OSError) as exc:
        raise ServiceUnavailable("Database unavailable: cannot verify the token now") from exc
    if found is None or found[0].revoked_at is not None:
        return None
    token, user = found
    expires = token.expires_at
    return Caller(user_id=user.id, user_name=user.name, is_admin=user.is_admin, token_id=token.id,
                  expires_at=expires, expires_ts=expires.timestamp() if expires is not None else None,
                  disabled=user.disabled_at is not None)


def is_public(path: str) -> bool:
    """Paths reachable without a token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or not path.startswith(("/v1", "/api"))


def gateway_middleware(settings: Settings, cache: TokenCache) -> Middleware:
    """The app's first middleware: every error in OpenAI's envelope, and the caller attached to every /v1 and
    /api request (operators only on /api/admin). One layer rather than two: each costs on every request."""
    admin = _admin_bytes(settings)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            path = request.path
            if not is_public(path):
                # Fast path: the Authorization header of a known token, as sent; anything else is parsed.
                caller = cache.by_header.get(request.headers.get("Authorization", ""))
                if caller is None or (caller.expires_ts is not None and caller.expires_ts <= time.time()):
                    caller = await _resolve(request, bearer_token(request), cache, admin)
                    cache.remember_header(request.headers["Authorization"], caller)
                if path.startswith("/api/admin") and not caller.is_operator:
                    raise Forbidden("Operator endpoints need an admin user's token or the admin token")
                request[CALLER] = caller
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 - error_answer renders (and logs) it, or re-raises a redirect
            return error_answer(request, exc)

    return middleware


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller of a request."""
    return request[CALLER]
