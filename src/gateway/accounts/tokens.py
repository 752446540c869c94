"""Gateway token format: random, shown once, stored as SHA-256 with a short display prefix."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "lgw_"
MAX_TOKEN_LENGTH = 256


def new_token() -> str:
    """A fresh token: `lgw_` + 43 characters of urlsafe randomness (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form: hex SHA-256 (a token is high-entropy, so a plain hash is enough)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def display_prefix(token: str) -> str:
    """What lists show so a person can tell tokens apart."""
    return token[:12]


def is_well_formed(token: str) -> bool:
    """Printable ASCII without spaces, of a sane length; anything else is refused before any lookup."""
    return 0 < len(token) <= MAX_TOKEN_LENGTH and token.isascii() and token.isprintable() and " " not in token
