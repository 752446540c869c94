"""Request parsing: JSON bodies and query strings into strict pydantic models, errors that name the field
and never echo the submitted value."""

from __future__ import annotations

from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import BadRequest, InvalidJSON, PayloadTooLarge, Unprocessable

M = TypeVar("M", bound=BaseModel)
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


async def read_json_object(request: web.Request) -> dict[str, object]:
    """The body as a JSON object, or a 400 (malformed) / 413 (too large)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("Request body is too large", param="body") from None
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise InvalidJSON("Request body is not valid JSON", param="body") from None
    if not isinstance(data, dict):
        raise InvalidJSON("Request body must be a JSON object", param="body")
    return data


async def parse_body(request: web.Request, model: type[M]) -> M:
    """Validate the JSON body against a strict model."""
    data = await read_json_object(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise unprocessable(exc) from None


def parse_query(request: web.Request, model: type[M]) -> M:
    """Validate the query string against a model (a repeated key keeps its last value)."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        problem = unprocessable(exc)
        raise BadRequest(problem.message, param=problem.param, code=problem.code) from None
