"""Validation rules shared by every room: text checks, and pydantic errors turned into ours (naming the field,
never echoing the submitted value). Reading requests is gateway.web.requests."""

from __future__ import annotations

from pydantic import ValidationError

from gateway.errors import Unprocessable

# pydantic messages that quote part of the submitted value ("invalid character: found `s` at 0").
QUOTING_ERRORS = {"uuid_parsing": "must be a UUID", "uuid_type": "must be a UUID", "uuid_version": "must be a UUID"}


def _field_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def unprocessable(exc: ValidationError) -> Unprocessable:
    """The first validation problem, naming the field; pydantic's `input` is deliberately left out."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    field = _field_of(first["loc"])
    if first["type"] == "extra_forbidden":
        return Unprocessable(f"Unknown field '{field}' is not allowed", param=field, code="unknown_field")
    if first["type"] == "missing":
        return Unprocessable(f"Field '{field}' is required", param=field, code="missing_field")
    message = QUOTING_ERRORS.get(first["type"]) or str(first["msg"]).removeprefix("Value error, ")
    return Unprocessable(f"Invalid '{field}': {message}", param=field)


MAX_NAME, MAX_MODEL = 100, 200


def printable(value: str) -> str:
    """Text a person typed: not blank, no control characters (PostgreSQL refuses NUL outright)."""
    if not value.strip():
        raise ValueError("must not be blank")
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


def check_text(value: str, *, param: str, max_length: int) -> str:
    """A name or model on any write path: 1..max_length printable characters, else 422 naming `param`."""
    if len(value) > max_length:
        raise Unprocessable(f"Invalid '{param}': at most {max_length} characters", param=param)
    try:
        return printable(value)
    except ValueError as exc:
        raise Unprocessable(f"Invalid '{param}': {exc}", param=param) from None
