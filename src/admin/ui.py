"""The web page at /ui/: static files shipped in the package, served with validators and a strict CSP.

The page is a client of the admin API and nothing more, so this module only serves files: index.html for the
page's routes (the browser does the routing) and the CSS and JavaScript modules under /ui/assets/.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from aiohttp import web

from gateway.errors import NotFound
from gateway.web.appkeys import UI_ASSETS

# Routes of the single page; each answers with index.html and the page's router picks the view.
PAGE_ROUTES = ("/ui/", "/ui/settings", "/ui/usage", "/ui/templates")
INDEX = "index.html"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
# Nothing inline, nothing from elsewhere: a script injected into the page (say, through a configuration's
# name) has nowhere to run and nowhere to send a token.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Always revalidate: a 304 costs one round trip, and the HTML and its modules never disagree after an upgrade.
CACHE_CONTROL = "no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file, read once at start-up, with its validators."""

    body: bytes
    content_type: str
    etag: str
    last_modified: datetime


def _modified(entry: Traversable) -> datetime:
    if isinstance(entry, Path):
        return datetime.fromtimestamp(int(entry.stat().st_mtime), tz=UTC)
    return datetime.now(UTC).replace(microsecond=0)


def load_assets(root: Traversable) -> dict[str, Asset]:
    """Every file under `root` by its relative path ("index.html", "js/app.js")."""
    assets: dict[str, Asset] = {}
    pending: list[tuple[str, Traversable]] = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                pending.append((f"{name}/", entry))
                continue
            body = entry.read_bytes()
            suffix = Path(entry.name).suffix
            guessed = mimetypes.guess_type(entry.name)[0]
            content_type = CONTENT_TYPES.get(suffix) or guessed or "application/octet-stream"
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            assets[name] = Asset(body=body, content_type=content_type, etag=etag, last_modified=_modified(entry))
    return assets


def _not_modified(request: web.Request, asset: Asset) -> bool:
    """RFC 9110: If-None-Match wins; If-Modified-Since only when it is absent."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or asset.etag in tags
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        return asset.last_modified <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def asset_response(request: web.Request, asset: Asset) -> web.Response:
    """The file, or 304 when the browser's copy is current; security headers on both."""
    headers = {
        **SECURITY_HEADERS,
        "Cache-Control": CACHE_CONTROL,
        "ETag": asset.etag,
        "Last-Modified": format_datetime(asset.last_modified, usegmt=True),
    }
    if _not_modified(request, asset):
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if asset.content_type.startswith("text/") or asset.content_type.endswith("+xml") else None
    return web.Response(body=asset.body, content_type=asset.content_type, charset=charset, headers=headers)


async def page(request: web.Request) -> web.Response:
    """index.html for every route of the page."""
    return asset_response(request, request.app[UI_ASSETS][INDEX])


async def static_file(request: web.Request) -> web.Response:
    """A file under /ui/assets/; names are looked up, never joined onto a filesystem path."""
    asset = request.app[UI_ASSETS].get(request.match_info["name"])
    if asset is None or request.match_info["name"] == INDEX:
        raise NotFound("No such file")
    return asset_response(request, asset)


async def to_page(request: web.Request) -> web.Response:
    """/ui → /ui/."""
    raise web.HTTPPermanentRedirect("/ui/", headers=SECURITY_HEADERS)


async def home(request: web.Request) -> web.Response:
    """/ → the web page; a temporary redirect, so the root stays free for something else later."""
    raise web.HTTPFound("/ui/", headers=SECURITY_HEADERS)


def setup_ui(app: web.Application) -> None:
    """Serve the web page from the package's static folder at /ui/ (and send / there)."""
    app[UI_ASSETS] = load_assets(resources.files("admin").joinpath("static"))
    app.router.add_get("/", home)
    app.router.add_get("/ui", to_page)
    for route in PAGE_ROUTES:
        app.router.add_get(route, page)
    app.router.add_get("/ui/assets/{name:.+}", static_file)
