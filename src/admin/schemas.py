"""Shared pieces of admin request/response models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictBody(BaseModel):
    """Request bodies refuse unknown fields (mass assignment) with 422."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Public(BaseModel):
    """Response models: built from plain values, never from an object that carries a key."""

    model_config = ConfigDict(from_attributes=True)
