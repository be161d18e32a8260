# SPDX-License-Identifier: Apache-2.0
"""The server's configuration: one frozen dataclass tree, built and validated before any
socket opens (STYLE.md §4 "Config").

How this works
--------------
Each section of ``siprouter.toml`` is a frozen dataclass (``ServerConfig``, ``RoutingConfig``,
``LogConfig``, ``TransportConfig``). Each field carries, in its ``metadata``, the function that
checks and converts the raw TOML value and the text of its documentation. ``load_config`` reads
the file, walks the sections and keys against those fields, applies the command-line overrides
(same keys, dotted: ``"server.listen"``), and builds the tree. There is no second list of keys:
the loader, the error messages and the generated reference (``docs/config.md``,
``python3 -m siprouter.config``) all come from the fields.

Every problem raises ``ConfigError`` whose message names the file, the dotted key, the bad value
and what was expected, e.g.::

    siprouter.toml: server.listen[1] = "udp:1.2.3.4:99999": expected PROTO:HOST:PORT with
    PROTO udp or tcp and PORT 1-65535

Unknown sections and keys are errors: a typo must never be silently ignored.

Relative paths in the file (``routing.script``, ``server.data_dir``) are relative to the
directory of the file; relative paths given on the command line are relative to the current
directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import socket
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = [
    "Config",
    "ConfigError",
    "ServerConfig",
    "RoutingConfig",
    "LogConfig",
    "TransportConfig",
    "DatabaseConfig",
    "TransactionConfig",
    "MgmtConfig",
    "ListenSpec",
    "DEFAULT_LISTEN",
    "DEFAULT_SCRIPT",
    "LOG_LEVELS",
    "LOG_FORMATS",
    "default_data_dir",
    "load_config",
    "render_docs",
]


class ConfigError(Exception):
    """The configuration is unusable; the server must not start.

    ``str(err)`` is the whole message for the operator. The parts are kept as attributes
    for tests and tools.

    :param source: where the setting came from: the file name as given, or "command line".
    :param key: dotted key, e.g. ``"server.listen[1]"``; empty for whole-file problems.
    :param value: the offending value rendered as TOML, or ``None`` when there is none.
    :param expected: what would have been accepted, or what went wrong.
    """

    def __init__(self, source: str, key: str, value: str | None, expected: str) -> None:
        if key and value is not None:
            where = f"{key} = {value}: "
        elif key:
            where = f"{key}: "
        else:
            where = ""
        super().__init__(f"{source}: {where}{expected}")
        self.source = source
        self.key = key
        self.value = value
        self.expected = expected


class ListenSpec(NamedTuple):
    """One listening socket: ``proto`` is ``"udp"`` or ``"tcp"``; ``host`` is an address
    without IPv6 brackets; ``port`` is 1-65535."""

    proto: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.proto}:{host}:{self.port}"


DEFAULT_LISTEN: tuple[ListenSpec, ...] = (
    ListenSpec("udp", "127.0.0.1", 5060),
    ListenSpec("tcp", "127.0.0.1", 5060),
)
# The shipped routing script (safe on a public address; see its module docstring).
DEFAULT_SCRIPT = "siprouter.script.default"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

# Bounds for [transport]. A UDP datagram cannot carry more than 65,535 bytes; over TCP a
# larger limit is allowed but a SIP message of more than a few MiB is an attack, not a call.
MIN_MESSAGE_SIZE = 1500  # RFC 3261 §18.1.1: messages up to 1300 bytes must work over UDP
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
MAX_IDLE_TIMEOUT = 86400.0


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The data directory used when none is configured: ``$XDG_DATA_HOME/siprouter``,
    i.e. ``~/.local/share/siprouter`` when XDG_DATA_HOME is unset.

    Per the XDG Base Directory spec a relative XDG_DATA_HOME is invalid and ignored.
    """
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    else:
        home = env.get("HOME") or os.path.expanduser("~")
        base = Path(home) / ".local" / "share"
    return base / "siprouter"


# ---------------------------------------------------------------------------------------------
# Value checkers. Each takes the raw value and a _Context and returns the converted value, or
# raises _Invalid(expected[, suffix, value]) where suffix locates an element ("[1]", ".name").


class _Invalid(Exception):
    def __init__(self, expected: str, suffix: str = "", value: Any = None, has_value: bool = False):
        super().__init__(expected)
        self.expected = expected
        self.suffix = suffix
        self.value = value
        self.has_value = has_value


@dataclass(frozen=True, slots=True)
class _Context:
    base_dir: Path  # relative paths are resolved against this


_LISTEN_EXPECTED = "expected PROTO:HOST:PORT with PROTO udp or tcp and PORT 1-65535"
_HOST_EXPECTED = "expected a host name or IP address (no port, no scheme)"
# RFC 3261 §25.1: hostname = *( domainlabel "." ) toplabel [ "." ]; labels of alphanum and "-".
_DOMAIN_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


def _is_host(text: str) -> bool:
    if not text or len(text) > 253:
        return False
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if ":" in bare:
        try:
            socket.inet_pton(socket.AF_INET6, bare)
        except OSError:
            return False
        return True
    if bare is not text:  # brackets around something that is not IPv6
        return False
    labels = text.lower().removesuffix(".").split(".")
    return all(_DOMAIN_LABEL.match(label) for label in labels)


def _check_listen(value: Any, ctx: _Context) -> tuple[ListenSpec, ...]:
    from siprouter.transport.types import parse_socket_spec

    if not isinstance(value, list | tuple):
        raise _Invalid(
            f'expected an array of "PROTO:HOST:PORT" strings, e.g. ["{DEFAULT_LISTEN[0]}"]'
        )
    if not value:
        raise _Invalid("expected at least one socket to listen on")
    specs: list[ListenSpec] = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Invalid(_LISTEN_EXPECTED, f"[{i}]", item, True)
        try:
            proto, host, port = parse_socket_spec(item)
        except ValueError:
            raise _Invalid(_LISTEN_EXPECTED, f"[{i}]", item, True) from None
        spec = ListenSpec(proto, host, port)
        if spec in specs:
            raise _Invalid(
                f"expected each socket once; this one is already server.listen[{specs.index(spec)}]",
                f"[{i}]",
                item,
                True,
            )
        specs.append(spec)
    return tuple(specs)


def _check_domains(value: Any, ctx: _Context) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise _Invalid('expected an array of domain names, e.g. ["example.com"]')
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _is_host(item):
            raise _Invalid(
                "expected a domain name or IP address (no port, no scheme)", f"[{i}]", item, True
            )
        item = item.lower()
        if item not in out:
            out.append(item)
    return tuple(out)


def _check_hostname(value: Any, ctx: _Context) -> str:
    if not isinstance(value, str) or not _is_host(value):
        raise _Invalid(_HOST_EXPECTED)
    return value.lower()


def _resolve_path(text: str, ctx: _Context) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = ctx.base_dir / path
    return Path(os.path.normpath(path))


def _check_data_dir(value: Any, ctx: _Context) -> Path:
    if not isinstance(value, str) or not value:
        raise _Invalid("expected a directory path")
    path = _resolve_path(value, ctx)
    if path.exists() and not path.is_dir():
        raise _Invalid(f"expected a directory path, but {path} exists and is not a directory")
    return path


# "pkg.module" or "pkg.module:attr" (the loader's module reference form).
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?\Z", re.ASCII)


def _check_script(value: Any, ctx: _Context) -> Path | str:
    expected = 'expected a Python file ("route.py", "/etc/siprouter/route.py") or a module name ("pkg.module")'
    if not isinstance(value, str) or not value:
        raise _Invalid(expected)
    if value.endswith(".py") or "/" in value or os.sep in value:
        path = _resolve_path(value, ctx)
        if not path.is_file():
            raise _Invalid(f"{expected}; file {path} does not exist")
        return path
    if not _MODULE_NAME.match(value):
        raise _Invalid(expected)
    return value


def _check_next_hop(value: Any, ctx: _Context) -> str | None:
    from siprouter.sip.errors import SipParseError
    from siprouter.sip.uri import SipUri, parse_uri

    expected = (
        'expected a SIP URI such as "sip:10.0.0.1:5060" or "sip:proxy.example.com;transport=tcp"'
    )
    if not isinstance(value, str):
        raise _Invalid(expected)
    if value == "":
        return None
    try:
        uri = parse_uri(value)
    except SipParseError:
        raise _Invalid(expected) from None
    if not isinstance(uri, SipUri):
        raise _Invalid(expected)
    return value


def _check_bool(value: Any, ctx: _Context) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("expected true or false")
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _check_params(value: Any, ctx: _Context) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid('expected a table, e.g. [routing.params] or params = { key = "value" }')
    return _freeze(value)


def _choice(options: tuple[str, ...]) -> Callable[[Any, _Context], str]:
    expected = "expected one of " + ", ".join(f'"{o}"' for o in options)

    def check(value: Any, ctx: _Context) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise _Invalid(expected)
        return value.lower()

    return check


def _int_range(low: int, high: int) -> Callable[[Any, _Context], int]:
    def check(value: Any, ctx: _Context) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(f"expected an integer from {low} to {high}")
        return value

    return check


def _seconds(value: Any, ctx: _Context) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_IDLE_TIMEOUT
    ):
        raise _Invalid(
            f"expected a number of seconds greater than 0 and at most {MAX_IDLE_TIMEOUT:g}"
        )
    return float(value)


def _opt(
    check: Callable[[Any, _Context], Any],
    doc: str,
    type_: str,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    default_doc: str | None = None,
) -> Any:
    """A dataclass field that documents and checks one config key."""
    meta = {"check": check, "doc": doc, "type": type_, "default_doc": default_doc}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------------------------
# The tree.


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """[server]: where the server listens and what it is responsible for."""

    listen: tuple[ListenSpec, ...] = _opt(
        _check_listen,
        "Sockets to listen on, each `PROTO:HOST:PORT` with PROTO `udp` or `tcp` and HOST an IP "
        "address, IPv6 in brackets (`tcp:[::1]:5060`). PORT defaults to 5060; 0 picks a free port.",
        "array of strings",
        default=DEFAULT_LISTEN,
        default_doc='["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]',
    )
    domains: tuple[str, ...] = _opt(
        _check_domains,
        "Domains this server is responsible for. Together with every listen address and "
        "`hostname` they make up the server's own domains (Kamailio's `myself`).",
        "array of strings",
        default=(),
        default_doc="[]",
    )
    hostname: str = _opt(
        _check_hostname,
        "This server's host name; it counts as one of its own domains.",
        "string",
        default_factory=socket.gethostname,
        default_doc="the machine's host name (`socket.gethostname()`)",
    )
    data_dir: Path = _opt(
        _check_data_dir,
        "Directory for the server's data (databases, state). Every `siprouter` command uses it. "
        "A relative path is relative to the directory of the configuration file.",
        "string (path)",
        default_factory=default_data_dir,
        default_doc="`$XDG_DATA_HOME/siprouter`, i.e. `~/.local/share/siprouter`",
    )


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """[routing]: the operator's routing script and its parameters."""

    script: Path | str = _opt(
        _check_script,
        "The routing script: a Python file (a name ending in `.py` or containing `/`; relative to "
        "the directory of the configuration file) or an importable module (`pkg.module` or "
        "`pkg.module:attr`).",
        "string",
        default=DEFAULT_SCRIPT,
        default_doc=f'`"{DEFAULT_SCRIPT}"` (the shipped default script)',
    )
    next_hop: str | None = _opt(
        _check_next_hop,
        "Outbound next hop (a SIP URI, e.g. `sip:10.0.0.1:5060`) to which the default script "
        'forwards requests for foreign domains. Without it they get 403 "Not relaying".',
        "string (SIP URI)",
        default=None,
        default_doc="unset",
    )
    reload_on_change: bool = _opt(
        _check_bool,
        "Reload the script when its file changes (it is always reloaded on SIGHUP).",
        "boolean",
        default=True,
        default_doc="true",
    )
    params: Mapping[str, Any] = _opt(
        _check_params,
        "Free table handed to the script as `ctx.params` (read-only).",
        "table",
        default_factory=lambda: MappingProxyType({}),
        default_doc="{}",
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    """[log]: logging to stderr, one line per event."""

    level: str = _opt(
        _choice(LOG_LEVELS),
        "Lowest level that is logged: " + ", ".join(f"`{lv}`" for lv in LOG_LEVELS) + ".",
        "string",
        default="info",
        default_doc='"info"',
    )
    format: str = _opt(
        _choice(LOG_FORMATS),
        "`text` (human-readable lines) or `json` (one JSON object per line).",
        "string",
        default="text",
        default_doc='"text"',
    )


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """[transport]: limits of the UDP and TCP transports."""

    max_message_size: int = _opt(
        _int_range(MIN_MESSAGE_SIZE, MAX_MESSAGE_SIZE),
        "Largest SIP message accepted, in bytes (headers and body); larger ones are rejected "
        "(413) or dropped.",
        "integer",
        default=65535,
        default_doc="65535",
    )
    tcp_idle_timeout: float = _opt(
        _seconds,
        "Seconds after which a TCP connection with no traffic is closed.",
        "number",
        default=120.0,
        default_doc="120",
    )
    max_connections_per_source: int = _opt(
        _int_range(1, 65535),
        "Most TCP connections accepted from one source IP address at a time.",
        "integer",
        default=32,
        default_doc="32",
    )


def _check_db_url(value: Any, ctx: _Context) -> str | None:
    expected = ("expected a database URL: sqlite:///PATH, postgresql://USER:PASS@HOST/DB, "
                "mysql://USER:PASS@HOST/DB or text:///DIRECTORY")
    if not isinstance(value, str) or "://" not in value:
        raise _Invalid(expected)
    scheme = value.split("://", 1)[0].lower().split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "text"):
        raise _Invalid(expected)
    return value


def _positive_seconds(limit: float) -> Callable[[Any, _Context], float]:
    def check(value: Any, ctx: _Context) -> float:
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not 0 < value <= limit):
            raise _Invalid(f"expected a number of seconds greater than 0 and at most {limit:g}")
        return float(value)

    return check


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """[database]: where subscribers, locations, dispatcher sets and CDRs are stored."""

    url: str | None = _opt(
        _check_db_url,
        "Database URL: `sqlite:///PATH`, `postgresql://USER:PASS@HOST[:PORT]/DB`, "
        "`mysql://USER:PASS@HOST[:PORT]/DB` (MySQL or MariaDB) or `text:///DIRECTORY` (db_text). "
        "Unset: the embedded SQLite file `siprouter.sqlite` in `server.data_dir`.",
        "string (URL)",
        default=None,
        default_doc="unset (SQLite in the data directory)",
    )


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """[transaction]: RFC 3261 §17 timers (Kamailio's tm parameters)."""

    t1: float = _opt(_positive_seconds(60), "Timer T1, the round-trip estimate (RFC 3261 §17.1.1.1); "
                     "Timers A, B, E, F, G, H, J, L and M derive from it.", "number",
                     default=0.5, default_doc="0.5")
    t2: float = _opt(_positive_seconds(600), "Timer T2, the longest retransmission interval for "
                     "non-INVITE requests and INVITE responses.", "number",
                     default=4.0, default_doc="4")
    t4: float = _opt(_positive_seconds(600), "Timer T4, how long a message may stay in the network "
                     "(Timers I and K).", "number", default=5.0, default_doc="5")
    fr_timer: float | None = _opt(
        _positive_seconds(3600),
        "Seconds to wait for a final response (Timers B and F; Kamailio's `fr_timer`). When it "
        "passes, the branch counts as 408 Request Timeout.", "number",
        default=None, default_doc="64 × t1 (32)")
    fr_inv_timer: float = _opt(
        _positive_seconds(86400),
        "Seconds an INVITE branch may ring after a provisional response before it is CANCELed "
        "(Timer C; Kamailio's `fr_inv_timer`).", "number",
        default=180.0, default_doc="180")


def _check_mgmt_listen(value: Any, ctx: _Context) -> str:
    from siprouter.mgmt.endpoints import parse_listen

    expected = 'expected HOST:PORT such as "127.0.0.1:5080" (IPv6 in brackets), or "" for no HTTP'
    if not isinstance(value, str):
        raise _Invalid(expected)
    if value:
        try:
            parse_listen(value)
        except ValueError:
            raise _Invalid(expected) from None
    return value


def _check_mgmt_socket(value: Any, ctx: _Context) -> Path | str:
    if not isinstance(value, str):
        raise _Invalid('expected a file path, or "" for no UNIX socket')
    return _resolve_path(value, ctx) if value else ""


def _check_token(value: Any, ctx: _Context) -> str:
    if (not isinstance(value, str) or len(value) < 16
            or any(c.isspace() or not c.isprintable() for c in value)):
        raise _Invalid("expected a secret of at least 16 printable characters without spaces "
                       "(e.g. the output of `openssl rand -hex 16`)")
    return value


@dataclass(frozen=True, slots=True)
class MgmtConfig:
    """[mgmt]: management over JSON-RPC 2.0 (`siprouter rpc`, `siprouter ul …`; docs/rpc.md)."""

    enabled: bool = _opt(
        _check_bool,
        "Serve management commands (over `http_listen` and `unix_socket`).",
        "boolean",
        default=True,
        default_doc="true",
    )
    http_listen: str = _opt(
        _check_mgmt_listen,
        "`HOST:PORT` of the HTTP listener (`POST /RPC`); `\"\"` for none. An address other "
        "than loopback needs `token`. When the default port is taken, the server logs a "
        "warning and runs without HTTP management; an address set to anything else must be free.",
        "string",
        default="127.0.0.1:5080",
        default_doc='"127.0.0.1:5080"',
    )
    unix_socket: Path | str | None = _opt(
        _check_mgmt_socket,
        "Path of the local UNIX socket (mode 0600; no token needed) that the `siprouter` "
        "command uses; `\"\"` for none. A relative path is relative to the directory of the "
        "configuration file.",
        "string (path)",
        default=None,
        default_doc="`siprouter.sock` in `server.data_dir`",
    )
    token: str | None = _opt(
        _check_token,
        "Secret that HTTP clients send as `Authorization: Bearer TOKEN` (at least 16 "
        "characters). When set, every HTTP request needs it; the UNIX socket never does.",
        "string",
        default=None,
        default_doc="unset",
    )


def _check_algorithms(value: Any, ctx: _Context) -> tuple[str, ...]:
    expected = 'expected a non-empty list of "MD5" and/or "SHA-256", e.g. ["MD5"]'
    if not isinstance(value, list) or not value:
        raise _Invalid(expected)
    names = []
    for item in value:
        if not isinstance(item, str) or item.upper() not in ("MD5", "SHA-256"):
            raise _Invalid(expected)
        names.append(item.upper())
    return tuple(names)


def _check_secret(value: Any, ctx: _Context) -> str | None:
    if not isinstance(value, str) or len(value.encode()) < 16:
        raise _Invalid("expected a string of at least 16 characters")
    return value


def _check_qop(value: Any, ctx: _Context) -> str:
    if value not in ("auth", ""):
        raise _Invalid('expected "auth" or "" (no qop, RFC 2069 style challenges)')
    return value


@dataclass(frozen=True, slots=True)
class UsrlocConfig:
    """[usrloc]: the location service, where registrations are kept (Kamailio's usrloc)."""

    db_mode: int = _opt(
        _int_range(0, 3),
        "0: memory only (lost at restart); 1: write-through (every change is in the database "
        "before the REGISTER is answered); 2: write-back (changes written every "
        "`timer_interval` and at stop); 3: database only (several servers sharing one "
        "database). In 1 and 2 registrations are loaded at start, so they survive a restart.",
        "integer",
        default=2,
        default_doc="2",
    )
    timer_interval: float = _opt(
        _positive_seconds(3600),
        "Seconds between two rounds of the timer that removes expired bindings and, in "
        "db_mode 2, writes changes to the database.", "number",
        default=60.0, default_doc="60")
    use_domain: bool = _opt(
        _check_bool,
        "Addresses of record are `user@domain` (multi-domain) instead of `user`; also "
        "makes authentication match the subscriber's domain.", "boolean",
        default=False, default_doc="false")


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    """[registrar]: REGISTER handling (RFC 3261 §10.3; Kamailio's registrar)."""

    default_expires: int = _opt(
        _int_range(0, 2**31 - 1),
        "Seconds a binding lasts when the REGISTER gives neither an Expires header nor a "
        "contact `expires` parameter.", "integer", default=3600, default_doc="3600")
    min_expires: int = _opt(
        _int_range(0, 2**31 - 1),
        "Shortest registration granted (other than 0, which removes): see "
        "`min_expires_mode`; 0: no minimum.", "integer",
        default=60, default_doc="60")
    min_expires_mode: str = _opt(
        _choice(("raise", "reject")),
        '"raise": a shorter registration is granted for `min_expires` seconds (Kamailio\'s '
        'default; phones and test tools asking for 15 s still register); "reject": it gets '
        "423 Interval Too Brief with Min-Expires (RFC 3261 §10.3 step 7).", "string",
        default="raise", default_doc='"raise"')
    max_expires: int = _opt(
        _int_range(0, 2**31 - 1),
        "Longest registration granted; longer ones are shortened to it; 0: no maximum.",
        "integer", default=0, default_doc="0")
    max_contacts: int = _opt(
        _int_range(0, 10000),
        "Most contacts one address of record may have; more are refused 403; 0: no limit.",
        "integer", default=0, default_doc="0")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """[auth]: digest authentication of `siprouter user add` subscribers (RFC 7616; Kamailio's auth_db)."""

    nonce_expire: int = _opt(
        _int_range(1, 86400),
        "Seconds a nonce is valid; an older one gets a new challenge with stale=true.",
        "integer", default=300, default_doc="300")
    algorithms: tuple[str, ...] = _opt(
        _check_algorithms,
        'Digest algorithms offered in challenges, preferred first: "MD5", "SHA-256" '
        "(SHA-256 needs `calculate_ha1`, the plain password).", "array of strings",
        default=("MD5",), default_doc='["MD5"]')
    qop: str = _opt(
        _check_qop, '`"auth"`, or `""` for challenges without qop.', "string",
        default="auth", default_doc='"auth"')
    calculate_ha1: bool = _opt(
        _check_bool,
        "true: the `password` column holds the plain password; false: use the `ha1` / "
        "`ha1b` columns.", "boolean", default=True, default_doc="true")
    accept_no_qop: bool = _opt(
        _check_bool,
        "Accept credentials without qop (RFC 2069 style, as some phones and libraries "
        "send).", "boolean", default=True, default_doc="true")
    nonce_count: bool = _opt(
        _check_bool,
        "Refuse a nonce count (nc) seen before: replay protection.", "boolean",
        default=True, default_doc="true")
    secret: str | None = _opt(
        _check_secret,
        "Key that signs nonces. Unset: a random one at each start (nonces given before a "
        "restart are then answered with a new challenge). Set it when several servers share "
        "the clients.", "string", default=None, default_doc="unset (random)")


def _check_optional_path(value: Any, ctx: _Context) -> Path | None:
    if not isinstance(value, str) or not value:
        raise _Invalid("expected a file path")
    return _resolve_path(value, ctx)


def _check_nonempty_str(value: Any, ctx: _Context) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("expected a non-empty string")
    return value.strip()


def _check_flag(value: Any, ctx: _Context) -> bool:
    # Kamailio writes these as 0/1; TOML readers also write true/false.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _Invalid("expected true or false (or 1 / 0)")


def _check_reply_codes(value: Any, ctx: _Context) -> tuple[int, ...]:
    expected = 'expected a list of SIP status codes such as [403, 404], or "403,404"'
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
    elif isinstance(value, list):
        parts = value
    else:
        raise _Invalid(expected)
    codes = []
    for part in parts:
        try:
            code = int(part)
        except (TypeError, ValueError):
            raise _Invalid(expected) from None
        if isinstance(part, bool) or not 100 <= code <= 699:
            raise _Invalid(expected)
        codes.append(code)
    return tuple(codes)


@dataclass(frozen=True, slots=True)
class DispatcherConfig:
    """[dispatcher]: load balancing over destination sets (the overview's Dispatcher Module; Kamailio's dispatcher). On when `list_file` or `db_url` is set."""

    list_file: Path | None = _opt(
        _check_optional_path,
        "File with the destination sets: `SETID URI [FLAGS [PRIORITY [ATTRS]]]` per line, "
        "`#` comments. A relative path is relative to the configuration file.",
        "string (path)", default=None, default_doc="unset")
    db_url: str | None = _opt(
        _check_db_url,
        "Load the sets from this database's `table_name` instead of `list_file` (a URL "
        "as `[database] url`).", "string (URL)", default=None, default_doc="unset")
    table_name: str = _opt(_check_nonempty_str, "Table of the destination sets.", "string",
                           default="dispatcher", default_doc='"dispatcher"')
    setid_col: str = _opt(_check_nonempty_str, "Column of the set id.", "string",
                          default="setid", default_doc='"setid"')
    destination_col: str = _opt(_check_nonempty_str, "Column of the destination SIP URI.",
                                "string", default="destination", default_doc='"destination"')
    flags_col: str = _opt(_check_nonempty_str, "Column of the flags (1 inactive, 2 probing).",
                          "string", default="flags", default_doc='"flags"')
    priority_col: str = _opt(_check_nonempty_str, "Column of the priority.", "string",
                             default="priority", default_doc='"priority"')
    attrs_col: str = _opt(_check_nonempty_str,
                          "Column of the attributes (`weight=…;duid=…;maxload=…`).", "string",
                          default="attrs", default_doc='"attrs"')
    force_dst: bool = _opt(
        _check_flag, "Overwrite a destination address the script has already set.",
        "boolean", default=False, default_doc="false")
    flags: int = _opt(
        _int_range(0, 3),
        "1: hash over the username only (otherwise username, host and port, the port "
        "only when not 5060/5061); 2: failover support (the other destinations are kept "
        "for `ds_next_dst`).", "integer", default=0, default_doc="0")
    use_default: bool = _opt(
        _check_flag, "The last destination of a set is used only as the last resort.",
        "boolean", default=False, default_doc="false")
    hash_pvar: str | None = _opt(
        _check_nonempty_str,
        "Template of the string algorithm 7 hashes, e.g. `\"{from_user}{to_user}\"`.",
        "string", default=None, default_doc="unset (algorithm 7 disabled)")
    setid_pvar: str | None = _opt(
        _check_nonempty_str, "Name under which `ds_is_from_list` records the matched set id.",
        "string", default=None, default_doc="unset")
    ds_ping_method: str = _opt(_check_nonempty_str, "Method of the probing requests.",
                               "string", default="OPTIONS", default_doc='"OPTIONS"')
    ds_ping_from: str = _opt(_check_nonempty_str, "From URI of the probing requests.",
                             "string", default="sip:dispatcher@localhost",
                             default_doc='"sip:dispatcher@localhost"')
    ds_ping_interval: int = _opt(
        _int_range(0, 86400), "Seconds between probes; 0 turns probing off.", "integer",
        default=10, default_doc="10")
    ds_probing_threshhold: int = _opt(
        _int_range(1, 1000),
        "Failed requests or probes before an active destination goes to probing "
        "(Kamailio's name `ds_probing_threshold` is accepted too).", "integer",
        default=3, default_doc="3")
    ds_probing_mode: int = _opt(
        _int_range(0, 1), "0: probe only destinations in probing state; 1: probe all.",
        "integer", default=0, default_doc="0")
    options_reply_codes: tuple[int, ...] = _opt(
        _check_reply_codes,
        "Replies to a probe, besides 200, that count as alive (Kamailio's "
        "`ds_ping_reply_codes` is accepted too).", "array of integers",
        default=(), default_doc="[] (200 only)")

    @property
    def enabled(self) -> bool:
        """The dispatcher runs when it has somewhere to load its sets from."""
        return self.list_file is not None or self.db_url is not None


# Other names operators know for some keys (Kamailio's current ones): section -> alias -> key.
_ALIASES: dict[str, dict[str, str]] = {
    "dispatcher": {
        "ds_probing_threshold": "ds_probing_threshhold",
        "ds_ping_reply_codes": "options_reply_codes",
        "setid_pvname": "setid_pvar",
        "hash_pvname": "hash_pvar",
    },
}


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. ``source`` is the file it was read from (None: embedded
    defaults only)."""

    server: ServerConfig = field(default_factory=ServerConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    log: LogConfig = field(default_factory=LogConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    transaction: TransactionConfig = field(default_factory=TransactionConfig)
    usrloc: UsrlocConfig = field(default_factory=UsrlocConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    dispatcher: DispatcherConfig = field(default_factory=DispatcherConfig)
    mgmt: MgmtConfig = field(default_factory=MgmtConfig)
    source: Path | None = None

    @property
    def listen_is_default(self) -> bool:
        """True when the listen sockets are the embedded defaults."""
        return self.server.listen == DEFAULT_LISTEN


# Section name -> dataclass, in file order.
_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "routing": RoutingConfig,
    "log": LogConfig,
    "transport": TransportConfig,
    "database": DatabaseConfig,
    "transaction": TransactionConfig,
    "usrloc": UsrlocConfig,
    "registrar": RegistrarConfig,
    "auth": AuthConfig,
    "dispatcher": DispatcherConfig,
    "mgmt": MgmtConfig,
}


# ---------------------------------------------------------------------------------------------
# Loading.


def _toml_repr(value: Any, limit: int = 80) -> str:
    """Render a value the way it would be written in TOML (shortened if long)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(_toml_repr(v, limit) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k} = {_toml_repr(v, limit)}" for k, v in value.items()) + "}"
    else:  # dates and times
        text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _unknown(name: str, options: Any) -> str:
    options = list(options)
    close = difflib.get_close_matches(name, options, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return "unknown key; expected one of " + ", ".join(options) + hint


def _check_value(cls: type, key: str, value: Any, source: str, ctx: _Context) -> tuple[str, Any]:
    """Check one ``section.name`` value; returns (field name, converted value)."""
    section, _, name = key.partition(".")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    name = _ALIASES.get(section, {}).get(name, name)
    f = fields.get(name)
    if f is None:
        raise ConfigError(source, key, _toml_repr(value), _unknown(name, fields))
    try:
        return name, f.metadata["check"](value, ctx)
    except _Invalid as bad:
        shown = bad.value if bad.has_value else value
        raise ConfigError(source, key + bad.suffix, _toml_repr(shown), bad.expected) from None


def _read_file(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, "", None, "cannot read: file not found") from None
    except IsADirectoryError:
        raise ConfigError(
            source, "", None, "cannot read: it is a directory, expected a TOML file"
        ) from None
    except OSError as exc:
        raise ConfigError(source, "", None, f"cannot read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, "", None, f"expected UTF-8 TOML text: {exc.reason} at byte {exc.start}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", None, f"invalid TOML: {exc}") from None


def load_config(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    override_source: str = "command line",
) -> Config:
    """Build the configuration from embedded defaults, then the file, then the overrides.

    :param path: a ``siprouter.toml`` file, or ``None`` for the embedded defaults only.
    :param overrides: dotted keys mapped to values of the same shape as in the file, e.g.
        ``{"server.listen": ["udp:0.0.0.0:5060"], "log.level": "debug"}``; they replace the
        file's value of that key. ``None`` values are skipped (an option not given).
        Relative paths in them are relative to the current directory.
    :param override_source: how errors name the origin of the overrides.
    :returns: a validated, frozen ``Config``.
    :raises ConfigError: for any unreadable file, TOML syntax error, unknown section or key,
        wrong type or bad value; the message names the file, the key, the value and what is
        expected.
    """
    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    source_path: Path | None = None
    if path is not None:
        source_path = Path(path)
        source = str(path)
        raw = _read_file(source_path)
        ctx = _Context(base_dir=source_path.resolve().parent)
        for section, table in raw.items():
            cls = _SECTIONS.get(section)
            if cls is None:
                msg = _unknown(section, _SECTIONS).replace("unknown key", "unknown section")
                raise ConfigError(source, section, _toml_repr(table), msg)
            if not isinstance(table, dict):
                raise ConfigError(
                    source, section, _toml_repr(table), f"expected a table [{section}]"
                )
            for name, value in table.items():
                key = f"{section}.{name}"
                fname, converted = _check_value(cls, key, value, source, ctx)
                values[section][fname] = converted

    if overrides:
        ctx = _Context(base_dir=Path.cwd())
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            cls = _SECTIONS.get(section)
            if cls is None or not name:
                raise ConfigError(
                    override_source,
                    key,
                    _toml_repr(value),
                    "unknown key; expected SECTION.KEY with SECTION one of " + ", ".join(_SECTIONS),
                )
            fname, converted = _check_value(cls, key, value, override_source, ctx)
            values[section][fname] = converted

    sections = {name: cls(**values[name]) for name, cls in _SECTIONS.items()}
    return Config(**sections, source=source_path)


# ---------------------------------------------------------------------------------------------
# Documentation generated from the fields (docs/config.md).


def render_docs() -> str:
    """The reference of every configuration key, as Markdown (the text of docs/config.md)."""
    out = [
        "# siprouter.toml reference",
        "",
        "<!-- Generated from siprouter/config.py by `python3 -m siprouter.config > docs/config.md`;"
        " do not edit. -->",
        "",
        "`siprouter run` reads this file when given `--config FILE` (or when the environment "
        "variable `SIPROUTER_CONFIG` names it); without either it uses the embedded defaults "
        "below. Command-line flags override the file. Unknown sections and keys are errors.",
        "",
    ]
    for section, cls in _SECTIONS.items():
        out.append(f"## [{section}]")
        out.append("")
        summary = (cls.__doc__ or "").split(":", 1)[-1].strip()
        out.append(summary[:1].upper() + summary[1:])
        out.append("")
        out.append("| key | type | default | meaning |")
        out.append("|-----|------|---------|---------|")
        for f in dataclasses.fields(cls):
            m = f.metadata
            out.append(f"| `{f.name}` | {m['type']} | {m['default_doc']} | {m['doc']} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render_docs())
