# SPDX-License-Identifier: Apache-2.0
"""Where the management listeners are: the defaults and the small parsers that the
server, the configuration and the command line share (stdlib only, no aiohttp)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

__all__ = [
    "DEFAULT_HTTP_LISTEN",
    "METRICS_PATH",
    "RPC_PATH",
    "SOCKET_NAME",
    "http_url",
    "is_loopback",
    "parse_listen",
    "unix_socket_path",
]

DEFAULT_HTTP_LISTEN = "127.0.0.1:5080"
# The UNIX socket's file name in the data directory when ``mgmt.unix_socket`` is unset.
SOCKET_NAME = "siprouter.sock"
RPC_PATH = "/RPC"
#: Prometheus scrapes this path on the HTTP listener.
METRICS_PATH = "/metrics"


def parse_listen(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 in brackets: ``"[::1]:5080"``) → (host, port); port 0-65535.

    :raises ValueError: anything else.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # raises ValueError
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets: [{host}]:{port_text}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Is ``host`` (no brackets, no port) ``localhost`` or a loopback IP address?"""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unix_socket_path(setting: str | os.PathLike[str] | None, data_dir: Path) -> Path | None:
    """Where the UNIX socket is: ``setting`` None → ``SOCKET_NAME`` in ``data_dir``;
    ``""`` → None (disabled); else the path given. Used by the server and the CLI alike."""
    if setting is None:
        return Path(data_dir) / SOCKET_NAME
    if os.fspath(setting) == "":
        return None
    return Path(setting)


def http_url(http_listen: str) -> str:
    """The URL a client on this host uses for ``http_listen`` (a wildcard address is
    reached through the loopback one).

    :raises ValueError: as ``parse_listen``.
    """
    host, port = parse_listen(http_listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{RPC_PATH}"
