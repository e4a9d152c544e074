"""SSRF: which webhook URLs we refuse to call, at registration and again at delivery."""

import socket
import time

import pytest

from paymentflow.testing.assertions import assert_error
from webhooks.urls_safety import UnsafeWebhookUrl, check_webhook_url

INTERNAL = [
    "https://127.0.0.1/hook",  # loopback
    "https://127.1.2.3/hook",
    "https://localhost/hook",  # a name resolving to 127.0.0.1
    "https://10.0.0.5/hook",  # private ranges
    "https://172.16.4.4/hook",
    "https://192.168.1.10:8443/hook",
    "https://169.254.169.254/latest/meta-data",  # link-local: the cloud metadata service
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",  # multicast
    "https://[::1]/hook",  # IPv6 loopback
    "https://[fe80::1]/hook",  # IPv6 link-local
    "https://[fd00::1]/hook",  # IPv6 unique local (private)
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "https://[::ffff:a9fe:a9fe]/hook",  # 169.254.169.254, mapped
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "https://[::]/hook",
    "https://2130706433/hook",  # 127.0.0.1 as one decimal number (resolved by getaddrinfo)
    "https://0x7f.1/hook",  # and in hex shorthand
]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_addresses_are_refused(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(UnsafeWebhookUrl, match="must be public"):
        check_webhook_url(url)


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://93.184.215.14/hook", "https://"),
        ("ftp://93.184.215.14/hook", "https://"),
        ("https:///hook", "no host"),
        ("https://user:pw@93.184.215.14/hook", "credentials"),
        ("https://93.184.215.14:99999/hook", "not valid"),
        ("https://no-such-host.invalid/hook", "could not be resolved"),
        ("https://93.184.215.14/a b", "spaces"),
    ],
)
def test_malformed_or_plain_http_urls_are_refused(url, message, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(UnsafeWebhookUrl, match=message):
        check_webhook_url(url)


def test_a_public_https_url_is_accepted_and_pinned_to_its_address(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    target = check_webhook_url("https://93.184.215.14:8443/hooks?shop=1")
    assert (target.scheme, target.address, target.port, target.path) == (
        "https",
        "93.184.215.14",
        8443,
        "/hooks?shop=1",
    )


def test_the_operator_flag_allows_http_and_internal_addresses(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    target = check_webhook_url("http://localhost:8080/hook")
    assert target.address in ("127.0.0.1", "::1") and target.host == "localhost" and target.port == 8080


def fake_resolver(monkeypatch, answers: dict, *, delay: float = 0.0):
    """socket.getaddrinfo (outside the project) answering `answers` {host: address}, after
    `delay` seconds; every host it is asked about is recorded."""
    asked = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        time.sleep(delay)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = answers[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_slow_resolver_is_bounded_and_refused_as_unresolvable(monkeypatch, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    settings.WEBHOOK_DNS_TIMEOUT_SECONDS = 0.5
    fake_resolver(monkeypatch, {"slow.example": "93.184.215.14"}, delay=2)
    began = time.monotonic()
    with pytest.raises(UnsafeWebhookUrl, match="could not be resolved"):
        check_webhook_url("https://slow.example/hook")
    assert time.monotonic() - began < 1.5


def test_a_slow_resolver_does_not_hang_the_registration(monkeypatch, settings, merchant_client):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    settings.WEBHOOK_DNS_TIMEOUT_SECONDS = 0.5
    fake_resolver(monkeypatch, {"slow.example": "93.184.215.14"}, delay=2)
    began = time.monotonic()
    response = merchant_client.post("/api/v1/webhook-endpoints", {"url": "https://slow.example/hook"})
    assert time.monotonic() - began < 1.5
    body = assert_error(response, 400, "WEBHOOK_URL_NOT_ALLOWED")
    assert "could not be resolved" in body["message"]


@pytest.mark.parametrize(
    "host, address, kind",
    [
        ("intranet.example", "10.20.30.40", "a private address"),
        ("metadata.example", "169.254.169.254", "a link-local address"),
        ("loop.example", "127.0.0.1", "the loopback"),
        ("mapped.example", "::ffff:10.9.8.7", "a private address inside an IPv6 address"),
    ],
)
def test_a_refusal_never_shows_the_addresses_the_name_resolved_to(
    monkeypatch, settings, merchant_client, host, address, kind
):
    """Saying what kind of address is enough; the address itself would map our network."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    fake_resolver(monkeypatch, {host: address})
    with pytest.raises(UnsafeWebhookUrl) as refused:
        check_webhook_url(f"https://{host}/hook")
    assert kind in str(refused.value) and "must be public" in str(refused.value)
    assert address not in str(refused.value) and address.split(":")[-1] not in str(refused.value)
    response = merchant_client.post("/api/v1/webhook-endpoints", {"url": f"https://{host}/hook"})
    assert_error(response, 400, "WEBHOOK_URL_NOT_ALLOWED")
    assert address.split(":")[-1].encode() not in response.content


def test_an_internationalised_host_is_checked_and_kept_in_its_idna_form(monkeypatch, settings):
    """`bücher.example` is resolved, and later named (TLS server name, Host header), as
    `xn--bcher-kva.example`: the one form DNS, certificates and receivers know."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    asked = fake_resolver(monkeypatch, {"xn--bcher-kva.example": "93.184.215.14"})
    target = check_webhook_url("https://Bücher.example/hook")
    assert (target.host, target.address) == ("xn--bcher-kva.example", "93.184.215.14")
    assert asked == ["xn--bcher-kva.example"]
    with pytest.raises(UnsafeWebhookUrl, match="not a valid domain name"):
        check_webhook_url("https://bad\u200d\u0301.example/hook")
