"""Operator endpoints for the key ring: rows per key id, and rotation onto the primary key."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from admin.registry import ApiRegistry
from admin.schemas import StrictBody, json_response
from gateway.crypto.rotation import EncryptionStatus, RotationReport, encryption_status, rotate_keys
from gateway.web.appkeys import CHANGES, KEYRING, SESSIONMAKER, SETTINGS
from gateway.web.requests import parse_body

api = ApiRegistry(tag="encryption")


class RotateRequest(StrictBody):
    batch_size: int | None = Field(default=None, ge=1, le=10_000, description="rows per transaction")
    max_batches: int | None = Field(default=None, ge=1,
                                    description="stop after this many batches (run again to resume)")


@api.route("GET", "/admin/encryption/status", summary="Configurations per encryption key id",
           response=EncryptionStatus, errors=(403,))
async def encryption_status_handler(request: web.Request) -> web.Response:
    async with request.config_dict[SESSIONMAKER]() as session:
        status = await encryption_status(session, keyring=request.config_dict[KEYRING])
    return json_response(status)


@api.route("POST", "/admin/encryption/rotate", summary="Re-encrypt every key under the primary key, in batches",
           body=RotateRequest, response=RotationReport, errors=(403, 422))
async def rotate_handler(request: web.Request) -> web.Response:
    body = await parse_body(request, RotateRequest) if request.body_exists else RotateRequest()
    report = await rotate_keys(
        request.config_dict[SESSIONMAKER], keyring=request.config_dict[KEYRING], bus=request.config_dict[CHANGES],
        batch_size=body.batch_size or request.config_dict[SETTINGS].rotation_batch_size, max_batches=body.max_batches,
    )
    return json_response(report)
