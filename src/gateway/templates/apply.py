"""Applying a template for a user: check every input first, then create its configurations in one transaction
with each one falling back to those after it, in the template's order. Knows nothing of HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.configurations.crud import Policy, check_api_key, check_provider_and_url, create_configuration, lock_user
from gateway.crypto.keyring import KeyRing
from gateway.errors import Conflict, Unprocessable
from gateway.store.models import LLMConfiguration
from gateway.templates.catalog import Template, TemplateConfiguration
from gateway.validation import MAX_MODEL, MAX_NAME, check_text

# Stored for a local server (Ollama, vLLM) when the user gives no key: such servers ignore the header, and
# every configuration keeps a real encrypted key, like the OpenAI SDK's users who pass "ollama" or "not-needed".
NO_KEY = "no-key-required"


def _as_input(exc: Unprocessable, input_id: str) -> Unprocessable:
    """The same refusal, naming the template input instead of the configuration field it fills."""
    message = exc.message.replace(f"'{exc.param}'", f"'inputs.{input_id}'", 1) if exc.param else exc.message
    return Unprocessable(message, param=f"inputs.{input_id}", code=exc.code)


def check_inputs(template: Template, policy: Policy, given: Mapping[str, str]) -> dict[str, str]:
    """The inputs' values, validated like the configuration fields they fill (422 naming `inputs.<id>`)."""
    known = {item.id for item in template.inputs}
    for input_id in given:
        if input_id not in known:
            raise Unprocessable("Unknown template input; see the template's inputs", param="inputs",
                                code="unknown_field")
    values: dict[str, str] = {}
    for item in template.inputs:
        value = given.get(item.id, "")
        if value == "":
            if item.required:
                raise Unprocessable(f"Input '{item.id}' is required: {item.label}", param=f"inputs.{item.id}",
                                    code="missing_field")
            continue
        try:
            if item.kind == "api_key":
                check_api_key(value)
            elif item.kind == "base_url":
                value = check_provider_and_url(policy, item.provider, value) or value
            else:
                check_text(value, param="model", max_length=MAX_MODEL)
        except Unprocessable as exc:
            raise _as_input(exc, item.id) from None
        values[item.id] = value
    return values


def _filled(template: Template, config: TemplateConfiguration, values: Mapping[str, str]) -> dict[str, Any]:
    """A configuration's provider, model, key and base URL once the inputs of its provider are filled in."""
    def value(kind: str) -> str | None:
        item = template.input_for(kind, config.provider)
        return values.get(item.id) if item is not None else None

    return {"provider": config.provider, "model": value("model") or config.model,
            "api_key": value("api_key") or NO_KEY, "base_url": value("base_url") or config.base_url}


async def _refuse_taken_names(session: AsyncSession, *, user_id: uuid.UUID, template: Template,
                              names: list[str]) -> None:
    taken = set((await session.execute(
        select(LLMConfiguration.name).where(LLMConfiguration.user_id == user_id, LLMConfiguration.name.in_(names))
    )).scalars())
    if taken:
        # Named by the template's own name: the prefix the client sent is not repeated back.
        first = next(c.name for c, name in zip(template.configurations, names, strict=True) if name in taken)
        raise Conflict(f"You already have a configuration named like this template's {first!r}; pass a different "
                       "name_prefix", param="name_prefix", code="duplicate_name")


async def apply_template(
    session: AsyncSession,
    *,
    keyring: KeyRing,
    policy: Policy,
    template: Template,
    user_id: uuid.UUID,
    inputs: Mapping[str, str],
    name_prefix: str = "",
    make_default: bool = False,
) -> list[LLMConfiguration]:
    """Create the template's configurations (flushed, not committed), in template order; the first becomes the
    default when asked or when the user had none. A taken name is a 409 and nothing is created."""
    values = check_inputs(template, policy, inputs)
    names = [f"{name_prefix}{config.name}" for config in template.configurations]
    if any(len(name) > MAX_NAME for name in names):
        raise Unprocessable(f"Invalid 'name_prefix': the names it makes would be longer than {MAX_NAME} characters",
                            param="name_prefix")
    await lock_user(session, user_id=user_id)
    await _refuse_taken_names(session, user_id=user_id, template=template, names=names)
    created: list[LLMConfiguration] = []
    # Last first, so each one's fallbacks already exist when it is created.
    for position in reversed(range(len(names))):
        config = template.configurations[position]
        primary = position == 0
        row = await create_configuration(
            session, keyring=keyring, policy=policy, user_id=user_id, name=names[position],
            **_filled(template, config, values),
            # A user's first configuration becomes the default: that must end up being the primary.
            is_default=primary and (make_default or any(c.is_default for c in created)),
            fallback_ids=[str(c.id) for c in reversed(created)],
        )
        created.append(row)
    return list(reversed(created))
