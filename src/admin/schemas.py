"""Shared pieces of admin request/response models."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.validation import printable

__all__ = ["Public", "StrictBody", "json_response", "optional", "printable"]


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields (mass assignment) with 422."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, defer_build=True)


class Public(BaseModel):
    """Response models: built from plain values, never from an object that carries a key."""

    model_config = ConfigDict(from_attributes=True, defer_build=True)


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A pydantic model as a JSON response."""
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json", headers=headers)


def _omit_null(schema: dict[str, Any]) -> None:
    # The field's type without its null branch: it may be left out but not sent as null.
    branches = [branch for branch in schema.pop("anyOf", ()) if branch.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    schema.pop("default", None)


def optional(**kwargs: Any) -> Any:
    """A field that may be omitted but is never null (for `X | None` fields; refuse null in a validator)."""
    return Field(default=None, json_schema_extra=_omit_null, **kwargs)
