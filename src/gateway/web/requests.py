"""Request parsing: JSON bodies and query strings into strict pydantic models (gateway.validation names the
field and never echoes the submitted value)."""

from __future__ import annotations

from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import BadRequest, InvalidJSON, PayloadTooLarge
from gateway.validation import unprocessable

M = TypeVar("M", bound=BaseModel)


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
