"""The `/v1` part of the OpenAPI document: the OpenAI-compatible endpoints, the headers that choose a
configuration, and the answer headers that say which one served. Bodies are OpenAI's own (see its API
reference): the gateway reads only `model` and `stream` and passes the rest on."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
ENVELOPE = ("Every error, from the gateway or relayed from an upstream (with its status), is OpenAI's envelope "
            "{\"error\": {message, type, code, param}}; `param` names the field at fault. Never a key.")
SELECTION_HEADERS: list[dict[str, Any]] = [
    {"name": "X-LLM-Configuration", "in": "header", "required": False,
     "schema": {"type": "string", "maxLength": 256},
     "description": "The id or name of one of your configurations: it serves the request (404 when it is not "
                    "yours, 400 when it is inactive). First of the selection rules: header, then a body `model` "
                    "equal to a configuration name, then the X-Conversation-Id binding, then your default."},
    {"name": "X-Conversation-Id", "in": "header", "required": False,
     "schema": {"type": "string", "maxLength": 256},
     "description": "A conversation bound to a configuration with PUT /api/conversations/{id}/llm-configuration; "
                    "third of the selection rules."},
]
ANSWER_HEADERS = {
    "X-LLM-Configuration-Id": {"description": "The configuration that served the request.",
                               "schema": {"type": "string", "format": "uuid"}},
    "X-LLM-Gateway-Attempts": {"description": "Upstream attempts made (more than 1 after a failover).",
                               "schema": {"type": "integer"}},
    "X-LLM-Gateway-Request-Id": {"description": "The request's id in the access log.", "schema": {"type": "string"}},
}
ERRORS = {400: "Bad request: malformed JSON, a routing field in the body, an inactive configuration",
          401: "Missing, invalid, revoked or expired token, or a disabled user",
          403: "The operator token has no configurations of its own",
          404: "No such configuration for this caller (X-LLM-Configuration), or none at all",
          413: "Body larger than MAX_BODY_BYTES", 429: "The upstream's rate limit (with its Retry-After)",
          502: "The upstream failed or could not be reached", 503: "Every configuration is cooling down",
          504: "The upstream did not answer within UPSTREAM_TIMEOUT_S"}
POSTS = {
    "/v1/chat/completions": "Chat completion (streamed with \"stream\": true)",
    "/v1/completions": "Text completion (streamed with \"stream\": true)",
    "/v1/embeddings": "Embeddings",
    "/v1/responses": "Responses API (streamed with \"stream\": true)",
}
OPENAI_BODY = {"type": "object", "required": ["model"], "additionalProperties": True,
               "properties": {"model": {"type": "string", "description": "A configuration name (selects it) or "
                                        "any model name (replaced by the chosen configuration's model)"},
                              "stream": {"type": "boolean"}}}


def _errors() -> dict[str, Any]:
    return {str(status): {"description": text, "content": {"application/json": {"schema": ERROR}}}
            for status, text in ERRORS.items()}


def _post(summary: str, operation_id: str) -> dict[str, Any]:
    ok = {"description": "The upstream's answer, relayed (server-sent events when streamed)",
          "headers": ANSWER_HEADERS,
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/event-stream": {"schema": {"type": "string"}}}}
    return {"summary": summary, "tags": ["v1"], "operationId": operation_id, "parameters": SELECTION_HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {"schema": OPENAI_BODY}}},
            "responses": {"200": ok, **_errors()}}


def v1_paths() -> dict[str, Any]:
    """The /v1 operations (any other POST /v1/* path is forwarded as is to OpenAI-compatible providers)."""
    paths: dict[str, Any] = {path: {"post": _post(summary, "v1_" + path[4:].replace("/", "_"))}
                             for path, summary in POSTS.items()}
    model = {"type": "object", "properties": {
        "id": {"type": "string", "description": "configuration name (`<team>/<name>` for a team's)"},
        "object": {"const": "model"}, "created": {"type": "integer"}, "owned_by": {"type": "string"}}}
    models = {"type": "object", "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": model}}}
    paths["/v1/models"] = {"get": {
        "summary": "Your active configurations, as OpenAI models", "tags": ["v1"], "operationId": "v1_models",
        "responses": {"200": {"description": "The models", "content": {"application/json": {"schema": models}}},
                      "401": _errors()["401"]}}}
    paths["/v1/models/{model}"] = {"get": {
        "summary": "One of your active configurations, as an OpenAI model", "tags": ["v1"],
        "operationId": "v1_model",
        "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "configuration name, or `<team>/<name>`"}],
        "responses": {"200": {"description": "The model", "content": {"application/json": {"schema": model}}},
                      "401": _errors()["401"], "404": _errors()["404"]}}}
    return paths
