"""The hosts the app answers for when DJANGO_ALLOWED_HOSTS is not set (the embedded default).

`make run` passes the address runserver listens on as DJANGO_RUNSERVER_HOST. On loopback
(the default) only `localhost` and `127.0.0.1` are served. On one address (`HOST=10.0.0.5`)
that address is served too. On every address (`HOST=0.0.0.0` or `::`) so are the machine's
own: its host names and the address of each of its interfaces, so that another machine or
a container can reach it by IP. Any other name (a DNS name pointing here, a proxy's) must be
listed in DJANGO_ALLOWED_HOSTS, which replaces all of this.
"""

import contextlib
import ipaddress
import socket
from pathlib import Path

LOOPBACK = ["localhost", "127.0.0.1"]
_EVERY_ADDRESS = {"0.0.0.0", "::"}  # noqa: S104 -- recognised, not bound to


def _as_host(address: str) -> str:
    """How an address appears in a Host header: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


def _linux_interface_addresses() -> list[str]:
    """Every local IPv4 address (the kernel's routing trie) and IPv6 address (if_inet6)."""
    addresses = []
    with contextlib.suppress(OSError):
        last = None
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            text = line.strip(" |-+")
            if "/32 host LOCAL" in line and last:
                addresses.append(last)
            elif text and text[0].isdigit() and "/" not in text:
                last = text.split()[0]
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            addresses.append(str(ipaddress.IPv6Address(int(line.split()[0], 16))))
    return addresses


def _routed_addresses() -> list[str]:
    """The source address of the default route, IPv4 and IPv6 (a UDP connect sends nothing)."""
    addresses = []
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            addresses.append(probe.getsockname()[0])
    return addresses


def machine_hosts() -> list[str]:
    """The machine's host names and addresses, as Host headers name them."""
    names = [socket.gethostname(), socket.getfqdn()]
    addresses = _linux_interface_addresses() + _routed_addresses()
    with contextlib.suppress(OSError):
        addresses += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
    return [name.lower() for name in names if name] + [_as_host(address.split("%")[0]) for address in addresses]


def default_allowed_hosts(runserver_host: str) -> list[str]:
    host = runserver_host.strip().strip("[]").lower()
    if host in ("", "localhost", "127.0.0.1"):  # "": not under `make run` (gunicorn, manage.py)
        return list(LOOPBACK)
    extra = machine_hosts() if host in _EVERY_ADDRESS else [_as_host(host)]
    return list(dict.fromkeys(LOOPBACK + extra))  # in order, once each
