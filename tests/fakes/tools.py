"""Tool calls and structured output for the fake OpenAI: values that fit a JSON schema, and the tool call a
model would make when a request forces (or offers) a function."""

from __future__ import annotations

from typing import Any

import orjson


def example_of(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """A value that validates against a JSON schema (objects, arrays, enums, $ref/$defs, anyOf, scalars)."""
    if not isinstance(schema, dict):
        return None
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return example_of(defs.get(schema["$ref"].rsplit("/", 1)[-1]), defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return example_of(options[0], defs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {name: example_of(sub, defs) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_of(schema.get("items", {}), defs)]
    return {"string": "fake", "integer": 7, "number": 1.5, "boolean": True}.get(str(kind))


def forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function a chat request makes the model call: the one tool_choice names, else the first tool when
    tool_choice is "required" or the only tool offered with "auto"."""
    tools = [t["function"] for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return next((t for t in tools if t.get("name") == name), None)
    if tools and (choice == "required" or (choice in (None, "auto") and len(tools) == 1)):
        return tools[0]
    return None


def tool_call(function: dict[str, Any], call_id: str) -> dict[str, Any]:
    """One tool call to `function`, its arguments made to fit its parameters."""
    arguments = orjson.dumps(example_of(function.get("parameters") or {"type": "object"})).decode()
    return {"id": call_id, "type": "function", "function": {"name": function["name"], "arguments": arguments}}


def structured_content(body: dict[str, Any]) -> str | None:
    """The JSON text answering a response_format json_schema request, else None."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return orjson.dumps(example_of((response_format.get("json_schema") or {}).get("schema"))).decode()
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        return "{}"
    return None
