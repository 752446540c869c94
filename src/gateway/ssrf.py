"""Where a configuration's base_url may point: checked when saved and again at connect time.

One object, ``UrlPolicy``, built once from Settings (the app's URL_POLICY AppKey) and asked by every outbound
path. Two layers, because a hostname that was public when saved can resolve to 127.0.0.1 or 169.254.169.254
later (DNS rebinding), and because aiohttp's TCPConnector never calls its resolver for IP-literal hosts:

* ``policy.check_base_url(url)`` — the static check when a configuration is saved, imported, migrated or made
  from a template; returns the normalised URL to store (IP literals in canonical form, no trailing slash).
* ``policy.guard_url(url)`` — asked before a send (the proxy's cache keeps its verdict as ``policy.refusal``),
  which covers IP-literal hosts (aiohttp never resolves them) and settings that changed since the base_url was
  saved; litellm's GuardedTransport asks it for every request it sends.
* ``GuardedResolver`` (gateway.web.resolver) — the shared client session's resolver asks ``policy.check_host``
  and ``policy.check_address``: it resolves hostnames, keeps only allowed addresses and raises when none is
  left, so a connection only ever opens to a checked address.

Each request is sent with ``allow_redirects=False`` (a redirect could point anywhere). On refusal the caller
sees ``UnsafeURLError`` itself, unwrapped: it is a ``ValueError``, not an ``aiohttp.ClientError``, so the
upstream error boundary needs its own ``except UnsafeURLError`` next to the ``ClientError`` → 502 branch,
answering with a message naming the policy (``str(exc)``), never a 500.
``exc.category`` says which rule ("loopback", "private", "metadata", "link-local", "scheme", "host"...).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from yarl import URL

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = [
    "UnsafeURLError",
    "UrlPolicy",
    "classify_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Categories refused even with ALLOW_PRIVATE_BASE_URLS: nothing legitimate serves an LLM API there.
ALWAYS_REFUSED = frozenset({"metadata", "link-local", "unspecified", "multicast", "reserved"})
# Categories a local Ollama / vLLM legitimately lives in; allowed only when the operator opts in.
PRIVATE = frozenset({"loopback", "private"})

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean...
        "fd00:ec2::254",  # AWS over IPv6
        "fd20:ce::254",  # GCP over IPv6
        "168.63.129.16",  # Azure's wire server (a public address, so no range below covers it)
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata"})

_V4_TABLE: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), category)
    for net, category in (
        ("0.0.0.0/8", "unspecified"),  # Linux connects 0.0.0.0 to the local host
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "private"),  # carrier-grade NAT
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("192.88.99.0/24", "reserved"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
    )
)
_V6_TABLE: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), category)
    for net, category in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "reserved"),  # deprecated site-local
        ("fc00::/7", "private"),
        ("ff00::/8", "multicast"),
        ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo included
        ("2001:db8::/32", "reserved"),
        ("3fff::/20", "reserved"),
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# yarl has already lowercased and IDNA-encoded the host; anything else (%, spaces...) is refused.
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?$")
# WHATWG: a host whose last label is a number is an IPv4 address, in any of inet_aton's bases.
_NUMERIC_LABEL_RE = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")
_UNSAFE_CHARS_RE = re.compile(r"[\x00-\x20\x7f\\]")

_REASONS = {
    "metadata": "a cloud metadata address",
    "link-local": "a link-local address",
    "unspecified": "an unspecified address",
    "multicast": "a multicast address",
    "reserved": "a reserved or special-purpose address",
    "loopback": "a loopback address",
    "private": "a private network address",
}


class UnsafeURLError(ValueError):
    """A base_url or upstream address refused by the SSRF policy; the message never contains credentials."""

    def __init__(self, reason: str, *, category: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category


def classify_address(ip: IPAddress) -> str | None:
    """The policy category of an address ("loopback", "metadata", ...), or None for a public one."""
    if ip in _METADATA_ADDRESSES:
        return "metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that embed an IPv4 one reach that IPv4 host, so they get its verdict.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return classify_address(embedded)
        for net6, category in _V6_TABLE:
            if ip in net6:
                return category
        return None if ip in _GLOBAL_UNICAST_V6 else "reserved"
    for net4, category in _V4_TABLE:
        if ip in net4:
            return category
    return None


def _parse_ipv4_number(host: str) -> ipaddress.IPv4Address:
    """Parse dotted, integer, octal and hex IPv4 forms the way inet_aton does; ValueError when invalid."""
    parts = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not 1 <= len(parts) <= 4:
        raise ValueError("too many parts")
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            numbers.append(int(part[1:], 8))
        else:
            numbers.append(int(part, 10))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise ValueError("part out of range")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _literal_address(host: str) -> IPAddress | None:
    """The address an IP-literal host (yarl's raw_host) denotes, None for a hostname; UnsafeURLError if invalid."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.replace("%25", "%"))
        except ValueError:
            raise UnsafeURLError("base_url host is not a valid IPv6 address", category="host") from None
    last_label = host[:-1].rsplit(".", 1)[-1] if host.endswith(".") else host.rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL_RE.match(last_label):
        return None
    try:
        return _parse_ipv4_number(host)
    except ValueError:
        raise UnsafeURLError("base_url host is not a valid IPv4 address", category="host") from None


Refusal = tuple[str, str]  # (reason, category): cached instead of exception objects, which carry tracebacks


def _address_refusal(category: str | None, *, private_ok: bool) -> Refusal | None:
    """The refusal for an address category, or None when it is allowed."""
    if category in ALWAYS_REFUSED:
        return f"base_url points to {_REASONS[category]}, which the gateway never calls", category
    if category in PRIVATE and not private_ok:
        reason = (
            f"base_url points to {_REASONS[category]}; "
            "set LLM_GATEWAY_ALLOW_PRIVATE_BASE_URLS=true to allow local providers"
        )
        return reason, category
    return None


@lru_cache(maxsize=4096)
def _host_verdict(host: str, private_ok: bool) -> tuple[str | None, Refusal | None]:
    """Canonical IP-literal host (None for a hostname) and its refusal; cached because it runs per request."""
    try:
        address = _literal_address(host)
    except UnsafeURLError as exc:
        return None, (exc.reason, exc.category)
    if address is not None:
        refusal = _address_refusal(classify_address(address), private_ok=private_ok)
        if refusal is None and isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            # A zone names a local interface: meaningless for a remote API, and not valid in a stored URL.
            refusal = ("base_url host must not carry an IPv6 zone identifier", "host")
        canonical = f"[{address.compressed}]" if address.version == 6 else address.compressed
        return canonical, refusal
    if not _HOSTNAME_RE.match(host):
        return None, ("base_url host is not a valid hostname", "host")
    name = host.rstrip(".")
    if name in _METADATA_HOSTNAMES:
        return None, _address_refusal("metadata", private_ok=private_ok)
    if name == "localhost" or name.endswith(".localhost"):
        return None, _address_refusal("loopback", private_ok=private_ok)
    return None, None


def _parse(url: str) -> URL:
    """yarl's parse of a URL; UnsafeURLError when it is not one."""
    try:
        return URL(url)
    except (ValueError, TypeError):
        raise UnsafeURLError("base_url is not a valid URL", category="syntax") from None


def _check_syntax(url: str) -> URL:
    """The save-time checks that come before scheme and host: length, characters, fragment, credentials."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURLError(f"base_url must be at most {MAX_URL_LENGTH} characters", category="length")
    if _UNSAFE_CHARS_RE.search(url):
        raise UnsafeURLError("base_url must not contain spaces, control characters or backslashes", category="syntax")
    if "#" in url:
        raise UnsafeURLError("base_url must not contain a fragment", category="fragment")
    parsed = _parse(url)
    if not parsed.absolute:
        raise UnsafeURLError("base_url must be an absolute http(s) URL", category="scheme")
    # Read the raw authority too: yarl drops an empty user-info ("http://@host/") that other parsers keep.
    raw_authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    if parsed.raw_user is not None or parsed.raw_password is not None or "@" in raw_authority:
        raise UnsafeURLError("base_url must not contain credentials; store the key in api_key", category="userinfo")
    return parsed


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Where the gateway may send a request, asked by every outbound path: when a base_url is saved
    (`check_base_url`), before each send (`guard_url`) and by the resolver at connect time (`check_host`,
    `check_address`). Built once from Settings (`from_settings`); the app keeps it as the URL_POLICY AppKey."""

    allow_private: bool = False  # the setting ALLOW_PRIVATE_BASE_URLS: loopback and private networks allowed

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        """The policy the operator configured."""
        return cls(allow_private=settings.allow_private_base_urls)

    def check_host(self, host: str) -> str | None:
        """Raise for a refused host; return its canonical form when it is an IP literal."""
        canonical, refusal = _host_verdict(host, self.allow_private)
        if refusal is not None:
            raise UnsafeURLError(refusal[0], category=refusal[1])
        return canonical

    def _check_scheme_and_host(self, url: URL) -> str | None:
        """Check scheme and host of a parsed URL; return the canonical IP-literal host, if it is one."""
        if url.scheme not in ALLOWED_SCHEMES:
            raise UnsafeURLError("base_url must use http or https", category="scheme")
        if not url.raw_host:
            raise UnsafeURLError("base_url must include a host", category="host")
        return self.check_host(url.raw_host)

    def check_base_url(self, url: str) -> str:
        """Statically check a base_url when it is saved; return it normalised (canonical IP, no trailing slash)."""
        parsed = _check_syntax(url)
        canonical = self._check_scheme_and_host(parsed)
        port = parsed.explicit_port
        if port == 0:
            raise UnsafeURLError("base_url port must be between 1 and 65535", category="port")
        host = canonical or parsed.raw_host
        netloc = host if port is None or port == _DEFAULT_PORTS[parsed.scheme] else f"{host}:{port}"
        query = f"?{parsed.raw_query_string}" if parsed.raw_query_string else ""
        return f"{parsed.scheme}://{netloc}{parsed.raw_path.rstrip('/')}{query}"

    def check_address(self, ip: str) -> None:
        """Raise UnsafeURLError when a resolved address may not be connected to."""
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            raise UnsafeURLError("upstream address is not a valid IP address", category="host") from None
        refusal = _address_refusal(classify_address(address), private_ok=self.allow_private)
        if refusal is not None:
            raise UnsafeURLError(refusal[0], category=refusal[1])

    def guard_url(self, url: str | URL) -> None:
        """Check scheme and host of a URL about to be requested; hostnames are left to GuardedResolver."""
        self._check_scheme_and_host(url if isinstance(url, URL) else _parse(url))

    def refusal(self, url: str | None) -> str | None:
        """Why `guard_url` would refuse this URL, or None: a verdict to keep (the proxy's cache) instead of raising."""
        if url is None:
            return None
        try:
            self.guard_url(url)
        except UnsafeURLError as exc:
            return str(exc)
        return None
