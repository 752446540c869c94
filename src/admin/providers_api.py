"""GET /api/providers: the provider catalog with the models a form can offer for each provider."""

from __future__ import annotations

import asyncio

from aiohttp import web

from admin.registry import ApiRegistry
from admin.schemas import Public
from gateway.configurations.providers import ProviderCatalog
from gateway.web.appkeys import PROVIDER_LISTING, PROVIDERS

api = ApiRegistry(tag="providers")


class ProviderPublic(Public):
    id: str
    name: str
    base_url: str | None
    wire: str
    openai_compatible: bool
    requires_base_url: bool
    requires_api_key: bool
    models: list[str]


class ProviderList(Public):
    items: list[ProviderPublic]


def _build(catalog: ProviderCatalog) -> bytes:
    items = [
        ProviderPublic(id=p.id, name=p.name, base_url=p.base_url, wire=p.wire, openai_compatible=p.is_openai_compatible,
                       requires_base_url=p.requires_base_url, requires_api_key=p.requires_api_key,
                       models=catalog.models(p.id))
        for p in catalog.providers()
    ]
    return ProviderList(items=items).model_dump_json().encode()


class ProviderListing:
    """The response, built once per app: litellm's model list takes seconds to import."""

    def __init__(self) -> None:
        self._body: bytes | None = None
        self._lock = asyncio.Lock()

    async def body(self, catalog: ProviderCatalog) -> bytes:
        """The serialised listing; the first call builds it in a thread so the event loop keeps serving."""
        if self._body is None:
            async with self._lock:
                if self._body is None:
                    self._body = await asyncio.to_thread(_build, catalog)
        return self._body


@api.route("GET", "/providers", summary="Providers and their models", response=ProviderList)
async def list_providers_handler(request: web.Request) -> web.Response:
    body = await request.config_dict[PROVIDER_LISTING].body(request.config_dict[PROVIDERS])
    return web.Response(body=body, content_type="application/json")
