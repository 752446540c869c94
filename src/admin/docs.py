"""`/api/docs`: an interactive page for the OpenAPI document, from Swagger UI files shipped in this package
(no CDN: the gateway works offline), served like the web page: validators and the same strict CSP."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from admin.ui import Asset, asset_response, load_assets
from gateway.errors import NotFound

PAGE = "index.html"
# What the browser may fetch: the page's own files, not the notices and readme kept beside them.
SERVED = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "docs.js"})


def setup_docs(app: web.Application) -> None:
    """Add GET /docs and /docs/<file> to the admin sub-app (both public, see gateway.web.auth.PUBLIC_PATHS)."""
    # Read on first use: 2 MB that most processes never serve stay out of memory and out of start-up.
    assets: dict[str, Asset] = {}

    def asset(name: str) -> Asset:
        if not assets:
            assets.update(load_assets(resources.files("admin").joinpath("docs")))
        return assets[name]

    async def docs_page(request: web.Request) -> web.Response:
        return asset_response(request, asset(PAGE))

    async def docs_file(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in SERVED:
            raise NotFound("No such file")
        return asset_response(request, asset(name))

    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/{name}", docs_file)
