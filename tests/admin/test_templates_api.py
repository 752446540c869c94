"""Templates through the admin API: every built-in applies against fake upstreams and serves a chat request
through the proxy, fallbacks in the template's order, and refusals (taken name, missing or placeholder input,
a base URL the SSRF policy refuses) that create nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.store.models import AuditEvent, LLMConfiguration
from gateway.templates.apply import NO_KEY
from gateway.web.appkeys import SESSIONMAKER
from tests.admin.conftest import MakeClient
from tests.factories import ApiUser, make_user
from tests.fakes.anthropic_upstream import FakeAnthropic, start_anthropic_upstream
from tests.fakes.openai_upstream import FakeOpenAI

TEMPLATES = "/api/templates"
CONFIGS = "/api/llm-configurations"
NOTHING_SENT = "no-authorization-header"
# Every built-in; Gemini's is served in test_templates_gemini.py, against its own small fake.
BUILTINS = ["fast-chat", "coding-agent", "long-context", "open-models-groq", "open-models-openrouter", "reasoning",
            "azure-openai", "ollama", "self-hosted"]
OPENAI_WIRE = ("openai", "openrouter", "groq", "deepseek")


class AzureFake(FakeOpenAI):
    """Azure OpenAI's v1 API: OpenAI's wire format, the key in an `api-key` header."""

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("api-key") or None


class KeylessFake(FakeOpenAI):
    """A local server (Ollama, vLLM) that takes requests without a key."""

    def key_of(self, request: web.Request) -> str | None:
        return super().key_of(request) or NOTHING_SENT


@dataclass
class Upstreams:
    """One fake per wire format, and the key each template input is given."""

    openai: FakeOpenAI
    anthropic: FakeAnthropic
    azure: AzureFake
    local: KeylessFake
    keys: dict[str, str]

    def serving(self, provider: str) -> FakeOpenAI | FakeAnthropic:
        """The fake a configuration of this provider calls."""
        if provider == "anthropic":
            return self.anthropic
        return {"azure": self.azure, "ollama": self.local, "vllm": self.local}.get(provider, self.openai)


@pytest.fixture
async def upstreams(aiohttp_server: Any, new_key: Callable[..., str]) -> Upstreams:
    keys = {name: new_key() for name in ("openai", "anthropic", "groq", "openrouter", "deepseek", "azure", "gemini")}
    async def start(fake: FakeOpenAI | FakeAnthropic) -> Any:
        return fake.attach(await aiohttp_server(fake.app))
    return Upstreams(
        openai=await start(FakeOpenAI(keys.values())),
        anthropic=await start_anthropic_upstream(aiohttp_server, keys=[keys["anthropic"]]),
        azure=await start(AzureFake([keys["azure"]])),
        local=await start(KeylessFake([NO_KEY, NOTHING_SENT])),
        keys=keys,
    )


@pytest.fixture
async def client(make_client: MakeClient, upstreams: Upstreams, tmp_path: Path) -> TestClient:
    """The gateway with every hosted provider's default base URL pointed at the fakes (a providers file)."""
    lines = [f'[providers.{p}]\nbase_url = "{upstreams.openai.url}"\n' for p in OPENAI_WIRE]
    lines.append(f'[providers.anthropic]\nbase_url = "{upstreams.anthropic.url}"\n')
    lines.append(f'[providers.ollama]\nbase_url = "{upstreams.local.url}"\n')
    path = tmp_path / "providers.toml"
    path.write_text("\n".join(lines))
    return await make_client(providers_file=path)


@pytest.fixture
async def user(client: TestClient) -> ApiUser:
    return await make_user(client)


def inputs_for(template: dict[str, Any], up: Upstreams) -> dict[str, str]:
    """Values for a template's inputs: a key per provider, the fakes' URLs; optional ones left out."""
    values: dict[str, str] = {}
    for item in template["inputs"]:
        if item["kind"] == "api_key" and item["required"]:
            values[item["id"]] = up.keys[item["provider"]]
        elif item["kind"] == "base_url" and item["required"]:
            values[item["id"]] = up.serving(item["provider"]).url
        elif item["kind"] == "model" and item["required"]:
            values[item["id"]] = "my-served-model"
    return values


async def apply(client: TestClient, user: ApiUser, template_id: str, **body: Any) -> Any:
    resp = await client.post(f"{TEMPLATES}/{template_id}/apply", json=body, headers=user.headers)
    return resp.status, await resp.json()


async def chat(client: TestClient, user: ApiUser, model: str) -> Any:
    resp = await client.post("/v1/chat/completions", headers=user.headers,
                             json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    return resp, await resp.json()


async def stored(client: TestClient, user: ApiUser) -> list[LLMConfiguration]:
    async with client.server.app[SESSIONMAKER]() as session:
        return list((await session.execute(
            select(LLMConfiguration).where(LLMConfiguration.user_id == uuid.UUID(user.id)))).scalars())


async def test_list_and_get(client: TestClient, user: ApiUser) -> None:
    resp = await client.get(TEMPLATES, headers=user.headers)
    assert resp.status == 200
    items = (await resp.json())["items"]
    assert [t["id"] for t in items] == BUILTINS
    coding = next(t for t in items if t["id"] == "coding-agent")
    assert coding["source"] == "builtin" and coding["title"] and coding["description"]
    assert [(c["provider"], c["model"], c["base_url"]) for c in coding["configurations"]] == [
        ("anthropic", "claude-sonnet-4-5", None), ("openai", "gpt-4.1", None)]
    assert coding["inputs"] == [
        {"id": "anthropic_api_key", "kind": "api_key", "provider": "anthropic", "label": "Anthropic API key",
         "required": True},
        {"id": "openai_api_key", "kind": "api_key", "provider": "openai", "label": "OpenAI API key", "required": True}]
    one = await client.get(f"{TEMPLATES}/coding-agent", headers=user.headers)
    assert await one.json() == coding
    missing = await client.get(f"{TEMPLATES}/no-such-template", headers=user.headers)
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    assert (await client.get(TEMPLATES)).status == 401


@pytest.mark.parametrize("template_id", BUILTINS)
async def test_every_builtin_applies_and_serves(client: TestClient, user: ApiUser, upstreams: Upstreams,
                                                template_id: str) -> None:
    template = await (await client.get(f"{TEMPLATES}/{template_id}", headers=user.headers)).json()
    status, body = await apply(client, user, template_id, inputs=inputs_for(template, upstreams))
    assert status == 201, body
    created = body["configurations"]
    assert [c["name"] for c in created] == [c["name"] for c in template["configurations"]]
    assert [c["provider"] for c in created] == [c["provider"] for c in template["configurations"]]
    # Each falls back to the ones after it, in the template's order; the user's first template sets the default.
    ids = [c["id"] for c in created]
    assert [c["fallback_ids"] for c in created] == [ids[n + 1:] for n in range(len(ids))]
    assert [c["is_default"] for c in created] == [True] + [False] * (len(ids) - 1)
    assert all("PLAINTEXTKEY" not in c["api_key"] for c in created)
    if template_id == "long-context":
        return  # served through litellm's translation in test_templates_gemini.py
    first = created[0]
    fake = upstreams.serving(first["provider"])
    resp, answer = await chat(client, user, first["name"])
    assert resp.status == 200, answer
    assert resp.headers["X-LLM-Configuration-Id"] == first["id"]
    assert answer["choices"][0]["message"]["content"] == fake.behaviour.content
    sent = fake.requests[-1]
    expected_model = "my-served-model" if template_id == "self-hosted" else template["configurations"][0]["model"]
    assert sent.model == expected_model
    expected_key = upstreams.keys.get(first["provider"], NO_KEY)
    assert sent.api_key == expected_key  # local servers, given no key, get the harmless NO_KEY


async def test_failover_in_template_order(client: TestClient, user: ApiUser, upstreams: Upstreams) -> None:
    status, body = await apply(client, user, "coding-agent", inputs={
        "anthropic_api_key": upstreams.keys["anthropic"], "openai_api_key": upstreams.keys["openai"]})
    assert status == 201
    primary, fallback = body["configurations"]
    upstreams.anthropic.script([529])
    resp, answer = await chat(client, user, primary["name"])
    assert resp.status == 200, answer
    assert resp.headers["X-LLM-Configuration-Id"] == fallback["id"]
    assert resp.headers["X-LLM-Gateway-Attempts"] == "2"
    assert upstreams.openai.requests[-1].model == "gpt-4.1"
    assert upstreams.openai.requests[-1].api_key == upstreams.keys["openai"]


async def test_name_collision_is_409_and_creates_nothing(client: TestClient, user: ApiUser,
                                                         upstreams: Upstreams) -> None:
    existing = await client.post(CONFIGS, headers=user.headers, json={
        "name": "Fast chat (backup)", "provider": "openai", "model": "gpt-4o", "api_key": upstreams.keys["openai"]})
    assert existing.status == 201
    inputs = {"openai_api_key": upstreams.keys["openai"]}
    status, body = await apply(client, user, "fast-chat", inputs=inputs)
    assert status == 409
    assert body["error"]["code"] == "duplicate_name" and body["error"]["param"] == "name_prefix"
    assert "'Fast chat (backup)'" in body["error"]["message"]
    assert [c.name for c in await stored(client, user)] == ["Fast chat (backup)"]
    status, body = await apply(client, user, "fast-chat", inputs=inputs, name_prefix="Team ")
    assert status == 201
    assert [c["name"] for c in body["configurations"]] == ["Team Fast chat", "Team Fast chat (backup)"]
    assert body["configurations"][0]["is_default"] is False  # the user already had a default
    assert len(await stored(client, user)) == 3
    status, body = await apply(client, user, "fast-chat", inputs=inputs, name_prefix="Team ")
    assert status == 409 and "Team" not in body["error"]["message"]  # the client's prefix is not echoed
    assert len(await stored(client, user)) == 3


@pytest.mark.parametrize(("inputs", "param", "code"), [
    ({}, "inputs.openai_api_key", "missing_field"),
    ({"anthropic_api_key": "**********"}, "inputs.anthropic_api_key", "placeholder_api_key"),
    ({"anthropic_api_key": "sk-a...wxyz"}, "inputs.anthropic_api_key", "placeholder_api_key"),
    ({"anthropic_api_key": "<hidden>"}, "inputs.anthropic_api_key", "placeholder_api_key"),
    ({"bogus": "x"}, "inputs", "unknown_field"),
    ({"sk-SECRET-" + "x" * 80: "x"}, "inputs", "validation_error"),  # an id that may be a key is never echoed
    ({"a\u0000b": "x"}, "inputs", "validation_error"),
])
async def test_bad_inputs_are_422_naming_the_input(client: TestClient, user: ApiUser, upstreams: Upstreams,
                                                   inputs: dict[str, str], param: str, code: str) -> None:
    given = {"anthropic_api_key": upstreams.keys["anthropic"], **inputs}
    if param != "inputs.openai_api_key":
        given["openai_api_key"] = upstreams.keys["openai"]
    status, body = await apply(client, user, "coding-agent", inputs=given)
    assert status == 422, body
    assert (body["error"]["param"], body["error"]["code"]) == (param, code)
    assert "*****" not in body["error"]["message"] and "<hidden>" not in body["error"]["message"]
    assert "SECRET" not in str(body) and "bogus" not in str(body)
    assert await stored(client, user) == []


async def test_base_url_input_obeys_the_ssrf_policy(make_client: MakeClient, upstreams: Upstreams) -> None:
    client = await make_client(allow_private_base_urls=False)
    user = await make_user(client)
    for url, code in [("http://127.0.0.1:8000/v1", "unsafe_base_url"), ("ftp://example.com/v1", "unsafe_base_url")]:
        status, body = await apply(client, user, "self-hosted",
                                   inputs={"server_base_url": url, "server_model": "m"})
        assert status == 422, body
        assert (body["error"]["param"], body["error"]["code"]) == ("inputs.server_base_url", code)
    assert await stored(client, user) == []


async def test_team_id_is_not_accepted_yet(client: TestClient, user: ApiUser, upstreams: Upstreams) -> None:
    status, body = await apply(client, user, "fast-chat", inputs={"openai_api_key": upstreams.keys["openai"]},
                               team_id=str(uuid.uuid4()))
    assert status == 422
    assert (body["error"]["param"], body["error"]["code"]) == ("team_id", "unknown_field")


async def test_apply_and_test_each_within_the_budget(make_client: MakeClient, upstreams: Upstreams,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(f'[providers.anthropic]\nbase_url = "{upstreams.anthropic.url}"\n'
                    f'[providers.openai]\nbase_url = "{upstreams.openai.url}"\n')
    client = await make_client(providers_file=path, tests_per_minute=1)
    user = await make_user(client)
    upstreams.anthropic.behaviour.status = 401
    status, body = await apply(client, user, "coding-agent", test=True, make_default=True, inputs={
        "anthropic_api_key": upstreams.keys["anthropic"], "openai_api_key": upstreams.keys["openai"]})
    assert status == 201, body
    verdicts = [(t["name"], t["status"]) for t in body["tests"]]
    # The budget is one test a minute: the first is tested (and fails: the fake refuses it), the second is not.
    assert verdicts == [("Coding agent", "failed"), ("Coding agent (OpenAI fallback)", "rate_limited")]
    assert body["configurations"][0]["test_status"] == "failed"
    rows = {c.name: c for c in await stored(client, user)}
    assert rows["Coding agent"].test_status == "failed"
    assert rows["Coding agent (OpenAI fallback)"].test_status == "untested"


async def test_apply_is_audited_like_creates(client: TestClient, user: ApiUser, upstreams: Upstreams) -> None:
    status, body = await apply(client, user, "reasoning", inputs={"deepseek_api_key": upstreams.keys["deepseek"]})
    assert status == 201
    async with client.server.app[SESSIONMAKER]() as session:
        events = list((await session.execute(
            select(AuditEvent).where(AuditEvent.user_id == uuid.UUID(user.id), AuditEvent.action == "create")
        )).scalars())
    assert sorted(str(e.configuration_id) for e in events) == sorted(c["id"] for c in body["configurations"])
    assert {e.details["template"] for e in events} == {"reasoning"}


async def test_operator_templates_beside_the_builtins(make_client: MakeClient, upstreams: Upstreams,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "templates.toml"
    path.write_text(f"""
[[templates]]
id = "team-gateway"
title = "Our internal gateway"
description = "The company's own OpenAI-compatible endpoint."
inputs = [{{ id = "team_key", kind = "api_key", provider = "custom", label = "Team key" }}]
configurations = [{{ name = "Team", provider = "custom", model = "gpt-4o-mini", base_url = "{upstreams.openai.url}" }}]
""")
    client = await make_client(templates_file=path)
    user = await make_user(client)
    items = (await (await client.get(TEMPLATES, headers=user.headers)).json())["items"]
    assert [(t["id"], t["source"]) for t in items][-2:] == [("self-hosted", "builtin"), ("team-gateway", "operator")]
    status, body = await apply(client, user, "team-gateway", inputs={"team_key": upstreams.keys["openai"]})
    assert status == 201, body
    resp, _ = await chat(client, user, "Team")
    assert resp.status == 200
    assert upstreams.openai.requests[-1].api_key == upstreams.keys["openai"]


async def test_a_chain_over_the_per_user_limit_creates_nothing(make_client: MakeClient, upstreams: Upstreams) -> None:
    client = await make_client(max_configurations_per_user=1)
    user = await make_user(client)
    status, body = await apply(client, user, "coding-agent", inputs={
        "anthropic_api_key": upstreams.keys["anthropic"], "openai_api_key": upstreams.keys["openai"]})
    assert status == 409 and body["error"]["code"] == "too_many_configurations"
    assert await stored(client, user) == []  # the first one, created before the limit was hit, was rolled back
    status, body = await apply(client, user, "no-such-template", inputs={})
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_make_default_moves_the_one_default_to_the_primary(client: TestClient, user: ApiUser,
                                                                 upstreams: Upstreams) -> None:
    first = await client.post(CONFIGS, headers=user.headers, json={
        "name": "mine", "provider": "openai", "model": "gpt-4o", "api_key": upstreams.keys["openai"]})
    assert (await first.json())["is_default"] is True
    status, body = await apply(client, user, "reasoning", make_default=True,
                               inputs={"deepseek_api_key": upstreams.keys["deepseek"]})
    assert status == 201
    defaults = [c.name for c in await stored(client, user) if c.is_default]
    assert defaults == ["Reasoning"]
    resp, _ = await chat(client, user, "anything")  # no name matches: the default serves
    assert resp.headers["X-LLM-Configuration-Id"] == body["configurations"][0]["id"]
