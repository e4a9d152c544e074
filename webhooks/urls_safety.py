"""Is a merchant's webhook URL safe for us to call? (SSRF: a URL must never make our
servers talk to our own network, the cloud's metadata service, or the loopback.)

`check_webhook_url(url)` parses the URL, resolves its host and returns the one address to
connect to, or raises `UnsafeWebhookUrl` saying why. It runs at registration and again
before every attempt (DNS may have changed since), and the delivery connects to the very
address that was checked, so a name cannot resolve to a public address for the check and
to an internal one for the connection (DNS rebinding). An internationalised host is kept
in its IDNA (punycode) form, the one name used for DNS, the TLS server name and the Host
header. Resolving is bounded by WEBHOOK_DNS_TIMEOUT_SECONDS (a slow resolver must not
hang a request or a worker), and a refusal says what kind of address a name points to,
never the address (that would map our network for whoever asks).

Refused unless `WEBHOOK_ALLOW_PRIVATE_URLS` (tests and local work only): plain `http://`,
and any address that is not globally routable — loopback, private ranges, link-local
(169.254.0.0/16: the metadata service), carrier-grade NAT, reserved, unspecified,
multicast — in IPv4 or IPv6 form, including IPv4 addresses carried inside IPv6 ones
(`::ffff:127.0.0.1`, NAT64 `64:ff9b::/96`, 6to4, Teredo). A name is refused if any of its
addresses is. No well-kept library does this (advocate, the known one, is unmaintained
since 2020), hence these few lines on `ipaddress`.
"""

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna
from django.conf import settings

MAX_URL_LENGTH = 2000
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# getaddrinfo cannot be interrupted: it runs on these threads and the caller stops waiting
# after WEBHOOK_DNS_TIMEOUT_SECONDS. A few, so hung lookups cannot pile up threads (a
# lookup queued behind them times out the same way).
_RESOLVERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


class UnsafeWebhookUrl(Exception):
    """The URL may not be called; the message says why (shown to the merchant)."""


@dataclass(frozen=True)
class WebhookTarget:
    scheme: str
    host: str  # the URL's host, IDNA (ASCII) form: the TLS server name and the Host header
    port: int
    path: str  # path and query, as sent in the request line
    address: str  # the checked address to connect to


def check_webhook_url(url: str) -> WebhookTarget:
    """The address `url` may be delivered to; raises UnsafeWebhookUrl."""
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_URLS
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhookUrl(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookUrl("The URL is not valid.") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeWebhookUrl("The URL must start with https://.")
    if not parts.hostname:
        raise UnsafeWebhookUrl("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("The URL must not contain credentials.")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeWebhookUrl("The URL must not contain spaces or control characters.")
    port = port or (443 if parts.scheme == "https" else 80)
    host = _ascii_host(parts.hostname)
    addresses = _resolve(host, port)
    if not allow_private:
        for address in addresses:
            reason = internal_address_reason(address)
            if reason:  # the kind, not the address: never show our network's addresses
                raise UnsafeWebhookUrl(f"The URL's host resolves to {reason}; it must be public.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return WebhookTarget(scheme=parts.scheme, host=host, port=port, path=path, address=str(addresses[0]))


def _ascii_host(host: str) -> str:
    """An internationalised name in its IDNA 2008 (UTS 46) form, as accounts/emails.py does
    for email domains; an ASCII name or address literal as it is."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise UnsafeWebhookUrl("The URL's host is not a valid domain name.") from exc


def _resolve(host: str, port: int) -> list:
    try:
        return [ipaddress.ip_address(host)]  # a literal address: no DNS
    except ValueError:
        pass
    lookup = _RESOLVERS.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=settings.WEBHOOK_DNS_TIMEOUT_SECONDS)
    except FutureTimeout as exc:
        lookup.cancel()  # if still queued; a lookup already running ends on its own
        raise UnsafeWebhookUrl(f"The URL's host {host!r} could not be resolved in time.") from exc
    except (OSError, UnicodeError) as exc:
        raise UnsafeWebhookUrl(f"The URL's host {host!r} could not be resolved.") from exc
    addresses = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeWebhookUrl(f"The URL's host {host!r} could not be resolved.")
    return addresses


def internal_address_reason(address) -> str | None:
    """What kind of internal address `address` is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = internal_address_reason(embedded)
            return f"{reason} inside an IPv6 address" if reason else None
    for kind, test in (
        ("the loopback", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a private address", address.is_private),
        ("an unspecified address", address.is_unspecified),
        ("a multicast address", address.is_multicast),
        ("a reserved address", address.is_reserved),
    ):
        if test:
            return kind
    if not address.is_global:
        return "a non-public address"
    return None
