"""Multipart uploads (audio transcriptions, files) reach an OpenAI-compatible upstream byte for byte, with the
client's Content-Type and its boundary, through the openai SDK's own upload calls."""

from __future__ import annotations

import hashlib

from aiohttp.test_utils import TestClient

from tests.factories import ApiUser
from tests.fakes.openai_upstream import FakeOpenAI

from .conftest import openai_config, sdk

AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4  # binary, CR and LF bytes included


async def test_audio_transcription_upload(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake, name="whisper-1", model="whisper-1")
    async with sdk(client, user) as api:
        result = await api.audio.transcriptions.create(model="whisper-1", file=("hello.wav", AUDIO, "audio/wav"),
                                                       language="en")
    assert result.text == fake.behaviour.content
    form = fake.last_request.body
    assert (form["model"], form["language"]) == ("whisper-1", "en")
    assert form["file"] == {"filename": "hello.wav", "content_type": "audio/wav", "size": len(AUDIO),
                            "sha256": hashlib.sha256(AUDIO).hexdigest()}
    assert "boundary=" in fake.last_request.headers["content-type"]


async def test_files_upload(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    await openai_config(client, user, fake)
    data = b'{"messages": [{"role": "user", "content": "hi"}]}\n' * 50
    async with sdk(client, user) as api:
        uploaded = await api.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert (uploaded.bytes, uploaded.filename, uploaded.purpose) == (len(data), "train.jsonl", "fine-tune")
    assert fake.last_request.body["file"]["sha256"] == hashlib.sha256(data).hexdigest()


async def test_fake_refuses_multipart_without_boundary(client: TestClient, user: ApiUser, fake: FakeOpenAI) -> None:
    """The fake behaves like OpenAI, so the two tests above prove the boundary arrives."""
    await openai_config(client, user, fake)
    resp = await client.post("/v1/files", headers={**user.headers, "Content-Type": "multipart/form-data"},
                             data=b"--x\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--x--\r\n")
    assert resp.status == 400
    assert "boundary" in (await resp.json())["error"]["message"]
