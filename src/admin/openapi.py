"""The OpenAPI 3.1 document of the admin API, built from the registered operations and their models."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from admin.openapi_v1 import ENVELOPE, v1_paths
from admin.registry import UUID_PATTERN, ApiRegistry, Operation

REF = "#/components/schemas/{model}"
# aiohttp's "{name}" or "{name:regex}", the regex holding at most one level of braces ("{36}").
PATH_PARAM = re.compile(r"\{(\w+)(?::((?:[^{}]|\{[^{}]*\})*))?\}")
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
STATUS_TEXT = {400: "Bad request", 401: "Missing or invalid token", 403: "Not allowed", 404: "Not found",
               409: "Conflict", 413: "Body too large", 422: "Validation error", 429: "Too many requests",
               502: "Upstream error", 503: "Service unavailable", 504: "Upstream timeout"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def openapi_path(path: str) -> str:
    """An aiohttp route path as an OpenAPI path template (regexes dropped)."""
    return PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def _path_parameters(path: str) -> list[dict[str, Any]]:
    params = []
    for name, pattern in PATH_PARAM.findall(path):
        schema: dict[str, Any] = {"type": "string"}
        if pattern == UUID_PATTERN:
            schema["format"] = "uuid"
        elif pattern:
            schema["pattern"] = f"^{pattern}$"
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _operation(op: Operation, refs: Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary, "tags": list(op.tags),
                           "operationId": f"{op.method.lower()}_{op.handler.__name__}"}
    params = _path_parameters(op.path)
    if op.query is not None:
        params += _query_parameters(op.query)
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": refs[(op.body, "validation")]}}}
    ok: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
    responses: dict[str, Any] = {str(op.status): ok}
    statuses = set(op.errors) | ({401} if not op.public else set())
    if PATH_PARAM.search(op.path):
        statuses.add(404)
    if op.body is not None:
        statuses |= {400, 413, 422}
    if op.query is not None:
        statuses.add(400)  # parse_query: a bad query string is a 400 naming the parameter
    for status in sorted(statuses):
        responses[str(status)] = {"description": STATUS_TEXT.get(status, "Error"),
                                  "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
    doc["responses"] = responses
    if op.public:
        doc["security"] = []
    return doc


def build_document(registries: list[ApiRegistry], *, prefix: str = "/api", version: str = "0.1.0") -> dict[str, Any]:
    """Assemble the OpenAPI 3.1 document."""
    operations = [op for registry in registries for op in registry.operations]
    models: set[tuple[type[BaseModel], JsonSchemaMode]] = set()
    for op in operations:
        if op.body is not None:
            models.add((op.body, "validation"))
        if op.response is not None:
            models.add((op.response, "serialization"))
    refs, defs = models_json_schema(sorted(models, key=lambda m: (m[0].__name__, m[1])), ref_template=REF)
    schemas = dict(defs.get("$defs", {}))
    schemas["Error"] = {**ERROR_SCHEMA, "description": ENVELOPE}
    paths: dict[str, dict[str, Any]] = v1_paths()
    for op in operations:
        paths.setdefault(prefix + openapi_path(op.path), {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "llm-gateway API", "version": version,
                 "description": "`/v1`: OpenAI-compatible calls through your configurations. `/api`: the admin "
                                "API. Every call carries `Authorization: Bearer <gateway token>`. " + ENVELOPE},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def openapi_registry(registries: list[ApiRegistry]) -> ApiRegistry:
    """A registry holding the document's own endpoint."""
    api = ApiRegistry(tag="meta")
    built: list[bytes] = []

    @api.route("GET", "/openapi.json", summary="This OpenAPI document", public=True)
    async def openapi_document(request: web.Request) -> web.Response:
        if not built:
            built.append(orjson.dumps(build_document([*registries, api])))
        return web.Response(body=built[0], content_type="application/json")

    return api
