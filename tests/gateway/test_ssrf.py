"""The base_url policy: static checks at save time, resolver and guard_url checks at connect time."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.ssrf import UnsafeURLError, UrlPolicy
from gateway.web.resolver import GuardedResolver

ALWAYS_REFUSED = [
    # (url, category)
    ("http://169.254.169.254/latest/meta-data", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://100.100.100.200/", "metadata"),
    ("http://168.63.129.16/machine?comp=goalstate", "metadata"),
    ("http://[fd20:ce::254]/computeMetadata/v1", "metadata"),
    ("http://192.0.0.192/opc/v2/instance", "metadata"),
    ("http://[::ffff:168.63.129.16]/", "metadata"),
    ("http://2822734096/", "metadata"),  # 168.63.129.16 as one integer
    ("http://metadata.google.internal/computeMetadata/v1", "metadata"),
    ("http://METADATA.google.internal./", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://2852039166/", "metadata"),  # 169.254.169.254 as one integer
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://0.0.0.0:8000/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://0.1.2.3/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://192.0.2.10/", "reserved"),
    ("http://198.18.0.1/", "reserved"),
    ("http://[2001:db8::1]/", "reserved"),
    ("http://[::127.0.0.1]/", "reserved"),  # deprecated IPv4-compatible form
    ("http://[100::1]/", "reserved"),
]

PRIVATE = [
    ("http://127.0.0.1:11434/v1", "loopback"),
    ("http://127.8.9.10/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://１２７.０.０.１/", "loopback"),  # fullwidth digits, folded by IDNA
    ("http://[::1]:8000/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 wrapping 127.0.0.1
    ("http://localhost:11434/v1", "loopback"),
    ("http://LocalHost./", "loopback"),
    ("http://api.localhost/", "loopback"),
    ("http://10.0.0.5/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.10:8000/v1", "private"),
    ("http://100.64.0.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[64:ff9b::10.0.0.1]/", "private"),  # NAT64 wrapping 10.0.0.1
]

MALFORMED = [
    ("ftp://example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://example.com/", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("//example.com/v1", "scheme"),
    ("/v1", "scheme"),
    ("http:///v1", "scheme"),
    ("http://user:secret-pass@example.com/", "userinfo"),
    ("http://sk-abc@example.com/", "userinfo"),
    ("http://@example.com/", "userinfo"),
    ("https://example.com/v1#frag", "fragment"),
    ("https://example.com/v1#", "fragment"),
    ("https://example.com/" + "a" * 2048, "length"),
    ("http://exa mple.com/", "syntax"),
    ("http://example.com/\n", "syntax"),
    ("http://evil.com\\@127.0.0.1/", "syntax"),
    ("http://example.com:0/", "port"),
    ("http://1.2.3.4.5/", "host"),
    ("http://999999999999/", "host"),
    ("http://256.1.1.1/", "host"),
    ("http://08.1.1.1/", "host"),  # 8 is not an octal digit
    ("http://exa%6dple.com/", "host"),
    ("http://example.com:99999/", "syntax"),
    ("http://[2606:4700::1%25eth0]/", "host"),
    ("http://[not:an:ip:::]/", "host"),
]

ALLOWED = [
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
    ("HTTPS://API.OpenAI.com/v1//", "https://api.openai.com/v1"),
    ("https://api.anthropic.com", "https://api.anthropic.com"),
    ("https://openrouter.ai:443/api/v1", "https://openrouter.ai/api/v1"),
    ("http://example.com:80/v1", "http://example.com/v1"),
    ("https://example.com:8443/v1", "https://example.com:8443/v1"),
    ("https://res.openai.azure.com/openai?api-version=1", "https://res.openai.azure.com/openai?api-version=1"),
    ("http://8.8.8.8/v1", "http://8.8.8.8/v1"),
    ("http://134744072/v1", "http://8.8.8.8/v1"),
    ("http://0x08.0x08.0x08.0x08/", "http://8.8.8.8"),
    ("http://[2606:4700:4700::1111]/v1", "http://[2606:4700:4700::1111]/v1"),
    ("http://[64:ff9b::8.8.8.8]/", "http://[64:ff9b::808:808]"),
    ("http://例子.com/v1", "http://xn--fsqu00a.com/v1"),
    ("http://internal_host.example/v1", "http://internal_host.example/v1"),
    # Names that merely look local pass the static check; the resolver judges where they point.
    ("http://127.0.0.1.nip.io/v1", "http://127.0.0.1.nip.io/v1"),
    ("http://localhost.example.com/", "http://localhost.example.com"),
]


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(("url", "category"), ALWAYS_REFUSED + MALFORMED)
def test_always_refused(url: str, category: str, allow_private: bool) -> None:
    with pytest.raises(UnsafeURLError) as info:
        UrlPolicy(allow_private=allow_private).check_base_url(url)
    assert info.value.category == category


@pytest.mark.parametrize(("url", "category"), PRIVATE)
def test_private_refused_unless_allowed(url: str, category: str) -> None:
    with pytest.raises(UnsafeURLError) as info:
        UrlPolicy(allow_private=False).check_base_url(url)
    assert info.value.category == category
    assert "LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS" in str(info.value)
    UrlPolicy(allow_private=True).check_base_url(url)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("http://2130706433/", "http://127.0.0.1"),
        ("http://0x7f.1:11434/v1/", "http://127.0.0.1:11434/v1"),
        ("http://017700000001/", "http://127.0.0.1"),
        ("http://[0:0:0:0:0:0:0:1]:8000/v1", "http://[::1]:8000/v1"),
        ("http://localhost:11434/v1/", "http://localhost:11434/v1"),
    ],
)
def test_private_forms_normalised_when_allowed(url: str, normalised: str) -> None:
    # aiohttp refuses non-canonical IPv4 hosts, so the stored URL must carry the dotted form.
    assert UrlPolicy(allow_private=True).check_base_url(url) == normalised


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(("url", "normalised"), ALLOWED)
def test_allowed(url: str, normalised: str, allow_private: bool) -> None:
    assert UrlPolicy(allow_private=allow_private).check_base_url(url) == normalised


def test_error_never_contains_credentials() -> None:
    with pytest.raises(UnsafeURLError) as info:
        UrlPolicy(allow_private=True).check_base_url("https://admin:hunter2-secret@169.254.169.254/")
    assert "hunter2" not in str(info.value) and "admin" not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("ip", "allow_private", "refused"),
    [
        ("8.8.8.8", False, False),
        ("2606:4700:4700::1111", False, False),
        ("127.0.0.1", False, True),
        ("127.0.0.1", True, False),
        ("::1", False, True),
        ("::1", True, False),
        ("10.1.2.3", True, False),
        ("192.168.0.1", False, True),
        ("::ffff:192.168.0.1", False, True),
        ("169.254.169.254", True, True),
        ("fe80::1%2", True, True),
        ("fd00:ec2::254", True, True),
        ("100.100.100.200", True, True),
        ("0.0.0.0", True, True),
        ("239.1.1.1", True, True),
        ("not-an-ip", True, True),
    ],
)
def test_check_address(ip: str, allow_private: bool, refused: bool) -> None:
    if refused:
        with pytest.raises(UnsafeURLError):
            UrlPolicy(allow_private=allow_private).check_address(ip)
    else:
        UrlPolicy(allow_private=allow_private).check_address(ip)


@pytest.mark.parametrize(
    ("url", "allow_private", "refused"),
    [
        ("https://api.openai.com/v1/chat/completions", False, False),
        ("http://127.0.0.1:8000/v1/chat/completions", False, True),
        ("http://127.0.0.1:8000/v1/chat/completions", True, False),
        ("http://169.254.169.254/", True, True),
        ("http://[::1]/", False, True),
        ("http://localhost/", False, True),
        ("ftp://example.com/", True, True),
        ("http://example.com:99999/", True, True),
        ("http://rebinding.example/", False, False),  # the resolver's job
    ],
)
def test_guard_url(url: str, allow_private: bool, refused: bool) -> None:
    if refused:
        with pytest.raises(UnsafeURLError):
            UrlPolicy(allow_private=allow_private).guard_url(url)
    else:
        UrlPolicy(allow_private=allow_private).guard_url(url)


class MapResolver(AbstractResolver):
    """A resolver answering from a fixed table, as a rebinding DNS server would."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in self.table[host]
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def upstream(aiohttp_server: Any) -> int:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    server = await aiohttp_server(app, host="127.0.0.1")
    return int(server.port)


DNS = {
    "rebind.test": ["127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["169.254.169.254", "127.0.0.1"],
    "lan.test": ["10.0.0.7"],
}
CLOUD_METADATA = ["168.63.129.16", "fd20:ce::254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"]


async def fetch(url: str, *, allow_private: bool) -> int:
    resolver = GuardedResolver(UrlPolicy(allow_private=allow_private), resolver=MapResolver(DNS))
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url, allow_redirects=False) as response:
            return response.status


@pytest.mark.parametrize("host", ["rebind.test", "metadata.test", "mixed.test"])
async def test_resolver_refuses_private_resolution(upstream: int, host: str) -> None:
    with pytest.raises(UnsafeURLError) as info:
        await fetch(f"http://{host}:{upstream}/", allow_private=False)
    assert info.value.category in {"loopback", "metadata"}


async def test_resolver_allows_private_when_enabled(upstream: int) -> None:
    assert await fetch(f"http://rebind.test:{upstream}/", allow_private=True) == 200


async def test_resolver_drops_refused_addresses(upstream: int) -> None:
    # The metadata address is dropped even when private ones are allowed; 127.0.0.1 is still reachable.
    assert await fetch(f"http://mixed.test:{upstream}/", allow_private=True) == 200


async def test_resolver_refuses_metadata_even_when_private_allowed(upstream: int) -> None:
    with pytest.raises(UnsafeURLError) as info:
        await fetch(f"http://metadata.test:{upstream}/", allow_private=True)
    assert info.value.category == "metadata"


@pytest.mark.parametrize("ip", CLOUD_METADATA)
async def test_every_clouds_metadata_is_refused_at_connect_time(upstream: int, ip: str) -> None:
    # A name that only resolves to a metadata address at connect time, with private addresses allowed.
    resolver = GuardedResolver(UrlPolicy(allow_private=True), resolver=MapResolver({"cloud.test": [ip, "127.0.0.1"]}))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as session:
        for _ in range(2):  # the metadata address is dropped, the local one kept
            async with session.get(f"http://cloud.test:{upstream}/") as response:
                assert response.status == 200
    only = GuardedResolver(UrlPolicy(allow_private=True), resolver=MapResolver({"cloud.test": [ip]}))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=only)) as session:
        with pytest.raises(UnsafeURLError) as info:
            await session.get(f"http://cloud.test:{upstream}/")
    assert info.value.category == "metadata"
    with pytest.raises(UnsafeURLError):
        UrlPolicy(allow_private=True).check_address(ip)


async def test_resolver_refuses_localhost_name(upstream: int) -> None:
    resolver = GuardedResolver(UrlPolicy(allow_private=False))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as session:
        with pytest.raises(UnsafeURLError):
            await session.get(f"http://localhost:{upstream}/")
    await resolver.close()


async def test_default_resolver_connects_to_localhost_when_allowed(upstream: int) -> None:
    resolver = GuardedResolver(UrlPolicy(allow_private=True))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver)) as session:
        async with session.get(f"http://localhost:{upstream}/") as response:
            assert await response.text() == "hello"
    await resolver.close()


async def test_ip_literal_bypasses_resolver_but_not_guard_url(upstream: int) -> None:
    # TCPConnector never consults its resolver for IP literals: guard_url, called before every send, catches them.
    assert await fetch(f"http://127.0.0.1:{upstream}/", allow_private=False) == 200
    with pytest.raises(UnsafeURLError):
        UrlPolicy(allow_private=False).guard_url(f"http://127.0.0.1:{upstream}/")
    UrlPolicy(allow_private=True).guard_url(f"http://127.0.0.1:{upstream}/")
