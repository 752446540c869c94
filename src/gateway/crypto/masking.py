"""Rules for API keys as people type and see them: masking, and placeholders that must never be stored."""

from __future__ import annotations

import re

# What UIs and old clients post back instead of a key. Storing one of these is how keys were lost.
PLACEHOLDER_WORDS = frozenset(
    {"<hidden>", "hidden", "set", "<set>", "redacted", "[redacted]", "<redacted>", "masked", "<masked>",
     "null", "none", "undefined", "your-api-key", "your_api_key", "<api_key>", "api_key", "sk-..."}
)
MASK_CHARS = frozenset("*•●·x.")
MASKED_FORM = re.compile(r"^.{0,4}\.\.\..{0,4}$")
# Below this length, first 4 + last 4 would show half the key or more: such keys are shown as `****` alone.
MIN_PARTLY_SHOWN = 16


def mask_key(plaintext: str) -> str:
    """`sk-a...wxyz`: first 4 and last 4 characters; `****` when shorter than 16 characters."""
    if len(plaintext) < MIN_PARTLY_SHOWN:
        return "****"
    return f"{plaintext[:4]}...{plaintext[-4:]}"


def mask_url_secrets(url: str) -> str:
    """A base URL with what may hold a credential masked: user info (`https://u:p@host` → `https://****@host`),
    every query value (`?key=abc&v=1` → `?key=****&v=****`, a bare item → `****`) and the fragment. Plain string
    work, so no URL, however odd, makes it fail."""
    head, question, rest = url.partition("?")
    query, hash_sign, fragment = rest.partition("#") if question else ("", "", "")
    if not question:
        head, hash_sign, fragment = head.partition("#")
    scheme, sep, remainder = head.partition("://")
    if sep:
        authority, slash, path = remainder.partition("/")
        if "@" in authority:
            authority = "****@" + authority.rpartition("@")[2]
        head = f"{scheme}{sep}{authority}{slash}{path}"
    items = [f"{name}=****" if equals else ("****" if name else "")
             for name, equals, _ in (item.partition("=") for item in query.split("&"))]
    masked_query = "&".join(items) if question else ""
    return f"{head}{question}{masked_query}{hash_sign}{'****' if fragment else ''}"


def is_placeholder(value: str) -> bool:
    """True for masks and placeholders (`**********`, `<hidden>`, `SET`, `sk-a...wxyz`), never a real key."""
    text = value.strip()
    if not text:
        return True
    if set(text) <= MASK_CHARS and any(c in text for c in "*•●·"):
        return True
    if text.lower() in PLACEHOLDER_WORDS:
        return True
    return bool(MASKED_FORM.match(text))


def scrub(text: str, *secrets: str) -> str:
    """Remove every occurrence of each secret from a text (e.g. a provider error that echoes the key)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text
