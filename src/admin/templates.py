"""Template endpoints: list the built-in and operator templates, and apply one (its configurations created in
one transaction, audited and announced like any create, optionally tested under the caller's test budget)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from aiohttp import web
from pydantic import AfterValidator, Field

from admin.configurations import ConfigurationPublic, to_public
from admin.registry import ApiRegistry
from admin.schemas import Public, StrictBody, json_response, printable
from gateway.accounts.audit import record
from gateway.checks.runs import Checker, SavedCheckResult
from gateway.errors import NotFound
from gateway.store.changes import Change
from gateway.templates.apply import apply_template
from gateway.templates.catalog import Template
from gateway.web.appkeys import CHANGES, KEYRING, POLICY, SESSIONMAKER, TEMPLATES
from gateway.web.auth import caller_of
from gateway.web.requests import parse_body

api = ApiRegistry(tag="templates")
ITEM = "/templates/{id}"


class TemplateConfigurationPublic(Public):
    name: str
    provider: str
    model: str = Field(description="Replaced by the template's model input of this provider, when given")
    base_url: str | None = Field(description="null: the provider's default, or the base_url input")


class TemplateInputPublic(Public):
    id: str
    kind: Literal["api_key", "base_url", "model"] = Field(
        description="api_key and base_url fill the configurations of `provider`; model names a deployment")
    provider: str
    label: str
    required: bool


class TemplatePublic(Public):
    id: str
    title: str
    description: str
    source: Literal["builtin", "operator"]
    configurations: list[TemplateConfigurationPublic] = Field(description="In failover order")
    inputs: list[TemplateInputPublic]


class TemplateList(Public):
    items: list[TemplatePublic]


InputValue = Annotated[str, Field(max_length=4096)]
INPUT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _input_ids(inputs: dict[str, str]) -> dict[str, str]:
    """Input ids are the template's short names; anything else is refused without echoing it (it may be a key)."""
    if not all(INPUT_ID.match(input_id) for input_id in inputs):
        raise ValueError("input ids are the template's short names (see GET /api/templates/{id})")
    return inputs


class TemplateApply(StrictBody):
    inputs: Annotated[dict[str, InputValue], AfterValidator(_input_ids)] = Field(
        default_factory=dict, max_length=30, description="Input id → value; an empty value counts as not given")
    name_prefix: Annotated[str, Field(max_length=50), AfterValidator(printable)] | None = Field(
        default=None, description="Put before each configuration name, e.g. to apply a template twice")
    make_default: bool = Field(default=False, description="Make the first configuration your default")
    test: bool = Field(default=False, description="Test each created configuration (uses your test budget)")


class TemplateApplied(Public):
    configurations: list[ConfigurationPublic] = Field(description="As created, in failover order; keys masked")
    tests: list[SavedCheckResult] = Field(description="One verdict per configuration when `test` was asked")


def _public(template: Template) -> TemplatePublic:
    return TemplatePublic.model_validate(template.model_dump())


def _template(request: web.Request) -> Template:
    template = request.config_dict[TEMPLATES].get(request.match_info["id"])
    if template is None:
        raise NotFound("No template with this id")
    return template


@api.route("GET", "/templates", summary="Built-in and operator templates", response=TemplateList)
async def list_templates_handler(request: web.Request) -> web.Response:
    caller_of(request).require_user()
    return json_response(TemplateList(items=[_public(t) for t in request.config_dict[TEMPLATES].items()]))


@api.route("GET", ITEM, summary="One template", response=TemplatePublic, errors=(404,))
async def get_template_handler(request: web.Request) -> web.Response:
    caller_of(request).require_user()
    return json_response(_public(_template(request)))


@api.route("POST", f"{ITEM}/apply", summary="Create a template's configurations, fallbacks wired in order",
           body=TemplateApply, response=TemplateApplied, status=201, errors=(403, 404, 409))
async def apply_template_handler(request: web.Request) -> web.Response:
    caller = caller_of(request)
    user_id = caller.require_user()
    body = await parse_body(request, TemplateApply)
    template = _template(request)
    keyring = request.config_dict[KEYRING]
    async with request.config_dict[SESSIONMAKER]() as session:
        rows = await apply_template(session, keyring=keyring, policy=request.config_dict[POLICY], template=template,
                                    user_id=user_id, inputs=body.inputs, name_prefix=body.name_prefix or "",
                                    make_default=body.make_default)
        for row in rows:
            record(session, user_id=user_id, actor=caller.user_name, action="create", configuration_id=row.id,
                   details={"name": row.name, "provider": row.provider, "model": row.model, "template": template.id})
        await request.config_dict[CHANGES].commit(session, Change("configurations", str(user_id)))
        tester = Checker.of(request.config_dict)
        tests = [await tester.test_on_save(session, row, actor=caller.user_name) for row in rows] if body.test else []
    return json_response(TemplateApplied(configurations=[to_public(keyring, row) for row in rows], tests=tests), 201)
