"""One rule for every body a /v1 route forwards (gateway.proxy.body): a body reaches the upstream only as what the
gateway parsed, with its routing fields refused and its model the configuration's; what it cannot check is
refused (415 naming the accepted type) and nothing of it reaches the upstream.

The matrix sends each encoding to every forwarded route, once clean and once with a routing field.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import multiprocessing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.factories import ApiUser
from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import MESSAGES, openai_config

AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4  # binary, CR and LF bytes included
CONFIGURED_MODEL = "gpt-4o-mini"  # the configuration's; the client asks for CLIENT_MODEL
CLIENT_MODEL = "client-model"
ROUTING_FIELDS = ("api_base", "base_url", "api_key", "extra_headers", "custom_llm_provider", "litellm_params",
                  "mock_response")


@dataclass(frozen=True)
class Route:
    """A forwarded /v1 route, the fields a request to it carries, and the file of an upload route."""

    path: str
    fields: dict[str, Any]
    file: tuple[str, str, bytes] | None = None  # (field, filename, content): a route that takes forms

    def json(self, **extra: Any) -> dict[str, Any]:
        """The request as a JSON object."""
        file = {self.file[0]: self.file[1]} if self.file else {}
        return {"model": CLIENT_MODEL, **self.fields, **file, **extra}

    def form(self, **extra: str) -> aiohttp.FormData:
        """The request as a multipart form (text fields; the file as a file)."""
        form = aiohttp.FormData()
        for name, value in {"model": CLIENT_MODEL, **self.fields, **extra}.items():
            form.add_field(name, value if isinstance(value, str) else orjson.dumps(value).decode())
        if self.file is not None:
            form.add_field(self.file[0], self.file[2], filename=self.file[1], content_type="application/octet-stream")
        return form


ROUTES = (
    Route("/v1/chat/completions", {"messages": MESSAGES}),
    Route("/v1/completions", {"prompt": "hi"}),
    Route("/v1/embeddings", {"input": "hi"}),
    Route("/v1/responses", {"input": "hi"}),
    Route("/v1/moderations", {"input": "hi"}),  # a pass-through route
    Route("/v1/audio/transcriptions", {"language": "en"}, ("file", "hello.wav", AUDIO)),
    Route("/v1/audio/translations", {"prompt": "hi"}, ("file", "hello.wav", AUDIO)),
    Route("/v1/images/edits", {"prompt": "a hat"}, ("image", "cat.png", AUDIO)),
    Route("/v1/files", {"purpose": "batch"}, ("file", "batch.jsonl", AUDIO)),
)
JSON_OBJECT_ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"}

# An encoding: (route, extra fields) -> request keywords for aiohttp's client.
Encoding = Callable[[Route, dict[str, str]], dict[str, Any]]


def _json(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    return {"data": orjson.dumps(route.json(**extra)), "headers": {"Content-Type": "application/json"}}


def _untyped_json(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    # skip_auto_headers below: aiohttp's client would call bytes application/octet-stream.
    return {"data": orjson.dumps(route.json(**extra)), "headers": {}, "skip_auto_headers": ["Content-Type"]}


def _bom_json(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    return {"data": b"\xef\xbb\xbf" + orjson.dumps(route.json(**extra)), "headers": {"Content-Type": "application/json"}}


def _text_plain_json(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    return {"data": b"\xef\xbb\xbf" + orjson.dumps(route.json(**extra)),
            "headers": {"Content-Type": "text/plain; charset=utf-8"}}


def _urlencoded(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    fields = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in route.json(**extra).items()}
    return {"data": fields}  # aiohttp sends a dict as application/x-www-form-urlencoded


def _multipart(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    return {"data": route.form(**extra)}


def _gzip_json(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    return {"data": gzip.compress(orjson.dumps(route.json(**extra))),
            "headers": {"Content-Type": "application/json", "Content-Encoding": "gzip"}}


def _chunked_json(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    raw = orjson.dumps(route.json(**extra))

    async def pieces() -> AsyncIterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(raw), 7):
            yield raw[start:start + 7]

    return {"data": pieces(), "headers": {"Content-Type": "application/json"}}


def _empty(route: Route, extra: dict[str, str]) -> dict[str, Any]:
    return {"data": b"", "headers": {"Content-Type": "application/json"}}


ACCEPTED, UNSUPPORTED = "accepted", "415"
# encoding: how it is sent, and what the rule makes of it on a JSON route / on an upload route.
ENCODINGS: dict[str, tuple[Encoding, str, str]] = {
    "json": (_json, ACCEPTED, ACCEPTED),
    "json-without-content-type": (_untyped_json, ACCEPTED, ACCEPTED),
    "json-with-bom": (_bom_json, ACCEPTED, ACCEPTED),
    "text-plain-json-with-bom": (_text_plain_json, UNSUPPORTED, UNSUPPORTED),
    "form-urlencoded": (_urlencoded, UNSUPPORTED, UNSUPPORTED),
    "multipart": (_multipart, UNSUPPORTED, ACCEPTED),
    "gzip-json": (_gzip_json, ACCEPTED, ACCEPTED),
    "chunked-json": (_chunked_json, ACCEPTED, ACCEPTED),
    "empty": (_empty, "empty", "empty"),
}


async def _send(client: TestClient, user: ApiUser, route: Route, encoding: Encoding, **extra: str
                ) -> tuple[int, dict[str, Any]]:
    request = encoding(route, extra)
    headers = {**user.headers, **request.pop("headers", {})}
    resp = await client.post(route.path, headers=headers, **request)
    body = await resp.read()
    return resp.status, orjson.loads(body) if body else {}


def _checked(route: Route, received: Any, *, form: bool) -> None:
    """What the upstream received is the request as checked: the configuration's model, no routing field, the
    upload's bytes intact."""
    assert isinstance(received, dict), received
    assert received["model"] == CONFIGURED_MODEL
    assert not set(ROUTING_FIELDS) & set(received)
    for name, value in route.fields.items():
        assert received[name] == (value if isinstance(value, str) or not form else orjson.dumps(value).decode())
    if form and route.file is not None:
        field, filename, content = route.file
        assert received[field]["filename"] == filename
        assert received[field]["sha256"] == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("name", list(ENCODINGS))
async def test_every_route_applies_the_one_body_rule(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                                     name: str) -> None:
    encoding, on_json_route, on_upload_route = ENCODINGS[name]
    await openai_config(client, user, fake, model=CONFIGURED_MODEL)
    for route in ROUTES:
        expected = on_upload_route if route.file is not None else on_json_route
        sent_before = len(fake.requests)
        status, answer = await _send(client, user, route, encoding)
        if expected == ACCEPTED:
            assert status == 200, (route.path, status, answer)
            assert len(fake.requests) == sent_before + 1, route.path
            _checked(route, fake.last_request.body, form=name == "multipart")
            for field in ROUTING_FIELDS:
                status, answer = await _send(client, user, route, encoding, **{field: "http://attacker.example"})
                assert status == 400, (route.path, field, status, answer)
                assert answer["error"]["code"] == "routing_field_not_allowed"
                assert answer["error"]["param"] == field
        elif expected == UNSUPPORTED:
            assert status == 415, (route.path, status, answer)
            error = answer["error"]
            assert error["code"] == "unsupported_media_type" and error["param"] == "Content-Type"
            accepted = "application/json or multipart/form-data" if route.file else "application/json request"
            assert accepted in error["message"], error
            status, _ = await _send(client, user, route, encoding, api_base="http://attacker.example")
            assert status == 415
        elif route.path in JSON_OBJECT_ROUTES:  # an empty body: a JSON object is required here
            assert status == 400 and answer["error"]["code"] == "invalid_json", (route.path, status, answer)
        else:  # an empty body holds nothing to check: it goes as it is (the upstream answers for itself)
            assert len(fake.requests) == sent_before + 1, route.path
            assert fake.last_request.body is None
            continue
        if expected != ACCEPTED:
            assert len(fake.requests) == sent_before, f"{route.path}: an unchecked body reached the upstream"
        assert len(fake.requests) == sent_before + (expected == ACCEPTED), route.path


async def test_an_unknown_content_encoding_is_refused_unread(client: TestClient, user: ApiUser,
                                                             fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    resp = await client.post("/v1/chat/completions", data=b"\x28\xb5\x2f\xfd garbage",
                             headers={**user.headers, "Content-Type": "application/json", "Content-Encoding": "compress"})
    assert resp.status == 415
    error = (await resp.json())["error"]
    assert (error["code"], error["param"]) == ("unsupported_content_encoding", "Content-Encoding")
    assert fake.requests == []


def _raw_form(*parts: bytes, boundary: str = "b0undary") -> tuple[bytes, str]:
    """A multipart body written by hand, for what aiohttp's FormData would never write."""
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


FILE_PART = b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n' + AUDIO


@pytest.mark.parametrize("part", [
    b"Content-Disposition: form-data; name*=utf-8''api_base\r\n\r\nhttp://attacker.example",  # RFC 2231
    b'Content-Disposition: form-data; name="api_key"\r\n\r\nsk-attacker',
    b'Content-Disposition: form-data; name="extra_headers"; filename="h.json"\r\n\r\n{"x": "y"}',
], ids=["rfc2231-name", "plain", "as-a-file"])
async def test_a_routing_field_in_a_form_is_refused_however_it_is_named(
        client: TestClient, user: ApiUser, fake: FakeOpenAI, part: bytes) -> None:
    await openai_config(client, user, fake)
    body, content_type = _raw_form(b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1', FILE_PART, part)
    resp = await client.post("/v1/audio/transcriptions", data=body,
                             headers={**user.headers, "Content-Type": content_type})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "routing_field_not_allowed"
    assert fake.requests == []


async def test_every_model_field_of_a_form_is_swapped_and_the_form_written_anew(
        client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    """Two model fields (upstreams differ on which one counts; the fake takes the last), a preamble and a
    folded header: the upstream gets the form written anew, every model field the configuration's."""
    await openai_config(client, user, fake, model="whisper-large")
    body, content_type = _raw_form(
        b'Content-Disposition: form-data; name="model"\r\n\r\nclient-one', FILE_PART,
        b'Content-Disposition: form-data;\r\n name="model"\r\n\r\nclient-two')
    resp = await client.post("/v1/audio/transcriptions", data=b"preamble\r\n" + body,
                             headers={**user.headers, "Content-Type": content_type})
    assert resp.status == 200, await resp.text()
    received = fake.last_request
    assert received.body["model"] == "whisper-large"  # the fake keeps a repeated field's last value
    assert received.body["file"]["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert received.headers["content-type"] == 'multipart/form-data; boundary="b0undary"'


@pytest.mark.parametrize("body", [
    b"--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1",  # never closed
    b"no boundary anywhere",
    b"--b0undary\r\nContent-Type: text/plain\r\n\r\nno name\r\n--b0undary--\r\n",
    b"--b0undary\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; name=\"api_key\""
    b"\r\n\r\nx\r\n--b0undary--\r\n",  # two dispositions: which one would the upstream believe?
], ids=["unclosed", "no-boundary", "no-name", "two-dispositions"])
async def test_a_malformed_form_is_400_and_never_forwarded(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                                            body: bytes) -> None:
    await openai_config(client, user, fake)
    resp = await client.post("/v1/audio/transcriptions", data=body,
                             headers={**user.headers, "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_multipart" and "multipart" in error["message"]
    assert fake.requests == []


async def test_a_body_that_cannot_be_decoded_is_400_and_never_forwarded(
        client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    """Not gzip data under Content-Encoding: gzip (was a 500)."""
    await openai_config(client, user, fake)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {user.token}\r\n"
                 "Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 40\r\n\r\n"
                 .encode() + b"zz" * 20)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    status, body = int(answer.split(b" ", 2)[1]), answer.split(b"\r\n\r\n", 1)[1]
    assert status == 400, answer[:300]
    error = orjson.loads(body)["error"]
    assert (error["code"], error["param"]) == ("invalid_body_encoding", "body")
    assert fake.requests == []


@pytest.mark.parametrize("daemonic", [False, True], ids=["child-process", "daemonic-worker"])
async def test_a_big_json_body_is_checked_and_sent_whole(client: TestClient, user: ApiUser, fake: FakeOpenAI,
                                                         daemonic: bool) -> None:
    """Bodies from 128 KiB on are parsed in a child process; a daemonic worker (`serve --workers N`) may not
    start one and parses them itself. Either way the rule holds and the upstream gets every field."""
    await openai_config(client, user, fake)
    messages = [{"role": "user", "content": f"message {n} " + "y" * 1000} for n in range(300)]
    process = multiprocessing.current_process()
    process.daemon = daemonic
    try:
        resp = await client.post("/v1/chat/completions", headers=user.headers,
                                 json={"model": CLIENT_MODEL, "messages": messages, "user": "u", "n": 1})
        assert resp.status == 200, await resp.text()
        refused = await client.post("/v1/chat/completions", headers=user.headers,
                                    json={"model": CLIENT_MODEL, "messages": messages, "api_base": "http://x"})
    finally:
        process.daemon = False
    assert refused.status == 400 and (await refused.json())["error"]["param"] == "api_base"
    received = fake.last_request.body
    assert received["model"] == CONFIGURED_MODEL and received["messages"] == messages
    assert (received["user"], received["n"]) == ("u", 1)
    assert len(fake.requests) == 1
