"""Shared pieces of admin request/response models."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields (mass assignment) with 422."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Public(BaseModel):
    """Response models: built from plain values, never from an object that carries a key."""

    model_config = ConfigDict(from_attributes=True)


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A pydantic model as a JSON response."""
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json", headers=headers)
