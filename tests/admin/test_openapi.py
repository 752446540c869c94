"""The OpenAPI document: valid OpenAPI 3.1, covering every admin endpoint, and true to the server — a bounded
schemathesis run against a live test server finds no 500 and no response that breaks the document."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import hypothesis
import schemathesis
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.admin.helpers import create
from tests.factories import make_user

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12
ENDPOINTS = {
    ("get", "/api/llm-configurations"), ("post", "/api/llm-configurations"), ("get", "/api/llm-configurations/{id}"),
    ("put", "/api/llm-configurations/{id}"), ("patch", "/api/llm-configurations/{id}"),
    ("delete", "/api/llm-configurations/{id}"), ("put", "/api/llm-configurations/{id}/set-default"),
    ("post", "/api/llm-configurations/bulk-delete"), ("get", "/api/llm-configurations/stats"),
    ("get", "/api/providers"), ("get", "/api/audit-events"), ("get", "/api/openapi.json"),
}


async def test_document_is_valid_openapi_31_and_complete(client: TestClient) -> None:
    resp = await client.get("/api/openapi.json")  # public: no token
    assert resp.status == 200
    doc = await resp.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    operations = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert operations >= ENDPOINTS
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    create_schema = doc["components"]["schemas"]["ConfigurationCreate"]
    assert create_schema["additionalProperties"] is False
    assert set(create_schema["required"]) == {"name", "provider", "model", "api_key"}
    update_schema = doc["components"]["schemas"]["ConfigurationUpdate"]
    assert "required" not in update_schema and update_schema["properties"]["name"]["type"] == "string"
    assert "api_key_encrypted" not in doc["components"]["schemas"]["ConfigurationPublic"]["properties"]
    item = doc["paths"]["/api/llm-configurations/{id}"]["get"]
    assert item["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}


async def test_document_covers_v1_selection_headers_and_the_error_envelope(client: TestClient) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    validate(doc)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):
        post = doc["paths"][path]["post"]
        assert {p["name"] for p in post["parameters"] if p["in"] == "header"} == {"X-LLM-Configuration",
                                                                                  "X-Conversation-Id"}
        assert "text/event-stream" in post["responses"]["200"]["content"]
        assert "X-LLM-Gateway-Request-Id" in post["responses"]["200"]["headers"]
        assert post["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
    assert "get" in doc["paths"]["/v1/models"]
    error = doc["components"]["schemas"]["Error"]
    assert set(error["properties"]["error"]["properties"]) == {"message", "type", "code", "param"}
    assert "envelope" in error["description"]
    assert {"post", "delete"} <= {m for p, item in doc["paths"].items() if p.startswith("/api/admin/users") for m in item}


async def test_docs_page_and_its_files_are_public_and_strict(client: TestClient) -> None:
    page = await client.get("/api/docs")  # no token
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert "<script>" not in html and "http" not in html.replace("/api/docs/", "")  # nothing inline, no CDN
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
        resp = await client.get(f"/api/docs/{name}")
        assert resp.status == 200 and resp.headers["ETag"], name
    assert (await client.get("/api/docs/LICENSE")).status == 404
    assert (await client.get("/api/docs/..%2fdocs.py")).status == 404


def _fuzz(doc: dict[str, Any], base_url: str, headers: dict[str, str], known_id: str) -> list[str]:
    """Run schemathesis over every operation, positive and negative; return the failures found."""
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/v1/"):
            continue  # calls reach upstreams (here, the internet); tests/proxy covers /v1 against fakes
        variants: list[dict[str, Any]] = [{}]
        if "{id}" in operation.path:
            variants.append({"path_parameters": {"id": known_id}})
        item = doc["paths"][operation.path][operation.method.lower()]
        modes = [schemathesis.GenerationMode.POSITIVE]
        if "parameters" in item or "requestBody" in item:  # otherwise there is nothing to get wrong
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            for fixed in variants:
                strategy = operation.as_strategy(generation_mode=mode, **fixed)

                @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                     suppress_health_check=list(hypothesis.HealthCheck),
                                     phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
                @hypothesis.given(case=strategy)
                def run(case: schemathesis.Case) -> None:
                    response = case.call(base_url=base_url, headers=headers, timeout=30)
                    case.validate_response(response, checks=CHECKS, headers=headers)

                try:
                    run()
                except Exception as exc:  # noqa: BLE001 - collect every operation's failures, then report them together
                    failures.append(f"{operation.label} [{mode.value} {fixed}]: {exc}"[:3000])
    return failures


async def test_schemathesis_finds_no_500_and_no_schema_violation(client: TestClient, new_key: Callable[..., str]) -> None:
    # An admin user reaches the operator endpoints too, and has configurations of its own.
    admin = await make_user(client, is_admin=True)
    known = await create(client, admin, new_key())
    await create(client, admin, new_key(), provider="groq")
    doc = await (await client.get("/api/openapi.json")).json()
    base_url = str(client.make_url("")).rstrip("/")
    # In a thread: schemathesis's client is synchronous and this loop must keep serving its requests.
    failures = await asyncio.to_thread(_fuzz, doc, base_url, admin.headers, known["id"])
    assert failures == [], "\n\n".join(failures)
