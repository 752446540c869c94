"""The floor: the least an aiohttp proxy can do for a chat completion, for the gateway to be compared with.

    BARE_UPSTREAM_KEY=K BARE_TOKEN=T python -m benchmarks.bare_proxy --port N --upstream http://127.0.0.1:M/v1

It compares the caller's bearer token with one string, swaps in the upstream key, forwards the body as bytes
over one keep-alive ClientSession and relays the answer (whole, or chunk by chunk for SSE). No database, no
parsing, no logging: what is left is aiohttp's own cost, which the gateway pays too.
"""

from __future__ import annotations

import argparse
import os

import aiohttp
from aiohttp import web

from benchmarks.procs import install_uvloop

RELAYED = ("Content-Type", "x-request-id")
DENIED = b'{"error":{"message":"Invalid token","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}'


def build_app(upstream: str, key: str, token: str) -> web.Application:
    """The proxy app: one route, one shared upstream session."""
    target = upstream.rstrip("/") + "/chat/completions"
    caller = f"Bearer {token}"
    upstream_auth = f"Bearer {key}"
    client_key = web.AppKey("client", aiohttp.ClientSession)

    async def client_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session:
            app[client_key] = session
            yield

    async def chat(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != caller:
            return web.Response(status=401, body=DENIED, content_type="application/json")
        body = await request.read()
        headers = {"Authorization": upstream_auth,
                   "Content-Type": request.headers.get("Content-Type", "application/json")}
        async with request.app[client_key].post(target, data=body, headers=headers) as up:
            relayed = {h: up.headers[h] for h in RELAYED if h in up.headers}
            if up.content_length is not None:
                return web.Response(status=up.status, body=await up.read(), headers=relayed)
            out = web.StreamResponse(status=up.status, headers=relayed)
            await out.prepare(request)
            async for piece in up.content.iter_any():
                await out.write(piece)
            await out.write_eof()
            return out

    app = web.Application()
    app.cleanup_ctx.append(client_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="upstream base URL ending in /v1")
    args = parser.parse_args()
    install_uvloop()
    app = build_app(args.upstream, os.environ["BARE_UPSTREAM_KEY"], os.environ["BARE_TOKEN"])
    web.run_app(app, host="127.0.0.1", port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
