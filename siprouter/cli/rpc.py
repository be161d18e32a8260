# SPDX-License-Identifier: Apache-2.0
"""Commands that talk to the running server: ``siprouter rpc METHOD [ARGS…]`` (what
kamcmd does) and ``siprouter ul show [AOR]`` / ``siprouter ul rm AOR [CONTACT]``.

They connect to the server's UNIX socket — ``[mgmt] unix_socket``, by default
``siprouter.sock`` in the data directory, found through ``--config`` /
``SIPROUTER_CONFIG`` / ``--data-dir`` exactly as the server finds it — or, with
``--url``, over HTTP. They hold no logic: the server's commands do the work
(docs/rpc.md).

Exit status: 0 success; 1 the command failed (the server's message is printed);
2 no server is running (or the configuration is unusable), with a message saying where
we tried.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from siprouter.cli.main import build_config, config_option, main

__all__ = ["rpc", "ul", "EXIT_FAILED", "EXIT_UNAVAILABLE"]

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2

# ``name=value`` arguments are named parameters; anything else (a SIP URI with
# ``;transport=tcp`` included: its "=" comes after a ":") is positional.
_NAMED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z", re.DOTALL)


def _connection_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--timeout", type=float, default=10.0, show_default=True,
                     metavar="SECONDS", help="How long to wait for the server.")(f)
    f = click.option("--token", envvar="SIPROUTER_TOKEN", show_envvar=True, metavar="TOKEN",
                     help="Bearer token for HTTP (default: [mgmt] token).")(f)
    f = click.option("--url", envvar="SIPROUTER_URL", show_envvar=True, metavar="URL",
                     help="Talk HTTP to this URL (http://HOST:PORT/RPC) instead of the "
                     "UNIX socket.")(f)
    f = click.option("--data-dir", type=click.Path(path_type=Path), metavar="DIR",
                     help="Data directory of the server (where its socket is). Replaces "
                     "[server] data_dir.")(f)
    return config_option(f)


def _fail(message: str, status: int) -> None:
    click.echo(f"siprouter: {message}", err=True)
    sys.exit(status)


def _client(config_path: Path | None, data_dir: Path | None, url: str | None,
            token: str | None, timeout: float) -> Any:
    """The client for the server the configuration names (exits 2 when there is none)."""
    from siprouter.mgmt.client import MgmtClient
    from siprouter.mgmt.endpoints import http_url, unix_socket_path

    config = build_config(config_path, {
        "server.data_dir": str(data_dir) if data_dir is not None else None})
    mcfg = config.mgmt
    token = token or mcfg.token
    try:
        if url:
            return MgmtClient(url=url, token=token, timeout=timeout)
        if not mcfg.enabled:
            _fail("management is disabled in the configuration ([mgmt] enabled = false); "
                  "use --url to reach a server elsewhere", EXIT_UNAVAILABLE)
        path = unix_socket_path(mcfg.unix_socket, config.server.data_dir)
        if path is not None:
            return MgmtClient(unix_socket=path, timeout=timeout)
        if mcfg.http_listen:
            return MgmtClient(url=http_url(mcfg.http_listen), token=token, timeout=timeout)
    except ValueError as e:
        _fail(str(e), EXIT_UNAVAILABLE)
    _fail('the configuration has no management listener ([mgmt] unix_socket and http_listen '
          'are both ""); use --url', EXIT_UNAVAILABLE)
    raise AssertionError("unreachable")


def _call(client: Any, method: str, params: Any = None) -> Any:
    """``client.call`` with the CLI's exits: 1 for a failed command, 2 for no server."""
    from siprouter.mgmt.client import MgmtCallError, MgmtUnavailable

    try:
        return client.call(method, params)
    except MgmtUnavailable as e:
        _fail(str(e), EXIT_UNAVAILABLE)
    except MgmtCallError as e:
        details = ""
        if isinstance(e.data, list) and all(isinstance(d, str) for d in e.data):
            details = "".join(f"\n  {d}" for d in e.data)  # e.g. the lines of a bad list
        _fail(f"{e.message} (error {e.code}){details}", EXIT_FAILED)


def _params(args: tuple[str, ...]) -> list[str] | dict[str, str] | None:
    """kamcmd-style arguments: all positional, or all ``name=value``."""
    if not args:
        return None
    named = [_NAMED.match(a) for a in args]
    if all(named):
        return {m.group(1): m.group(2) for m in named if m}
    if any(named):
        raise click.UsageError("give the parameters all by position or all as name=value")
    return list(args)


def _print_json(result: Any) -> None:
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))


@click.command("rpc", context_settings={"ignore_unknown_options": True,
                                        "help_option_names": ["-h", "--help"]})
@_connection_options
@click.option("--json", "as_json", is_flag=True,
              help="Print a text result as a JSON string too (others are always JSON).")
@click.argument("method")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def rpc(config_path: Path | None, data_dir: Path | None, url: str | None, token: str | None,
        timeout: float, as_json: bool, method: str, args: tuple[str, ...]) -> None:
    """Run the management command METHOD on the running server and print its result as
    JSON (a text result, such as system.methodHelp's, as plain text).

    ARGS are the parameters, by position or all as name=value; they are converted to the
    types the command declares ("5" for an integer). `siprouter rpc system.listMethods`
    lists the commands, `siprouter rpc system.methodHelp METHOD` describes one.

    Exit status: 0 success, 1 the command failed, 2 no server is running.
    """
    params = _params(args)
    result = _call(_client(config_path, data_dir, url, token, timeout), method, params)
    if isinstance(result, str) and not as_json:
        click.echo(result)
    else:
        _print_json(result)


@click.group("ul", context_settings={"help_option_names": ["-h", "--help"]})
def ul() -> None:
    """The registered contacts of the running server (its location service)."""


def _get(d: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in d:
            return d[name]
    return None


def _aor_entries(result: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    """(AOR, contacts) pairs from ul.dump's ``{"aors": [...]}`` or ul.lookup's
    ``{"aor": …, "contacts": […]}``."""
    if isinstance(result, dict):
        if isinstance(result.get("aors"), list):
            result = result["aors"]
        else:
            result = [result]
    if not isinstance(result, list):
        return []
    out = []
    for item in result:
        if isinstance(item, dict):
            contacts = _get(item, "contacts", "bindings") or []
            out.append((str(_get(item, "aor") or ""), [c for c in contacts
                                                       if isinstance(c, dict)]))
    return out


def _expires_text(contact: dict[str, Any], now: float) -> str:
    left = contact.get("expires")
    if left is None and contact.get("expires_at") is not None:
        left = contact["expires_at"] - now
    if not isinstance(left, int | float):
        return "" if left is None else str(left)
    return "expired" if left <= 0 else f"{int(left)}s"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _render_bindings(entries: list[tuple[str, list[dict[str, Any]]]]) -> str:
    now = time.time()
    rows = [["AOR", "CONTACT", "EXPIRES", "Q", "RECEIVED", "USER-AGENT"]]
    n_contacts = 0
    for aor, contacts in entries:
        for c in contacts:
            n_contacts += 1
            q = c.get("q")
            rows.append([aor, str(_get(c, "contact", "uri") or ""), _expires_text(c, now),
                         "" if q is None else f"{q:g}" if isinstance(q, float) else str(q),
                         str(c.get("received") or ""), str(c.get("user_agent") or "")])
    if n_contacts == 0:
        return "no registered contacts"
    n_aors = sum(1 for _, contacts in entries if contacts)
    summary = f"{n_aors} AOR{'s' if n_aors != 1 else ''}, " \
              f"{n_contacts} contact{'s' if n_contacts != 1 else ''}"
    return _table(rows) + "\n" + summary


@ul.command("show")
@_connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@click.argument("aor", required=False)
def ul_show(config_path: Path | None, data_dir: Path | None, url: str | None,
            token: str | None, timeout: float, as_json: bool, aor: str | None) -> None:
    """Show every registered contact, or those of AOR (as stored: `alice`, or
    `alice@example.com` with use_domain). Exit status 1 when AOR has none."""
    client = _client(config_path, data_dir, url, token, timeout)
    result = _call(client, "ul.lookup", [aor]) if aor else _call(client, "ul.dump")
    if as_json:
        _print_json(result)
    else:
        click.echo(_render_bindings(_aor_entries(result)))


@ul.command("rm")
@_connection_options
@click.argument("aor")
@click.argument("contact", required=False)
def ul_rm(config_path: Path | None, data_dir: Path | None, url: str | None, token: str | None,
          timeout: float, aor: str, contact: str | None) -> None:
    """Remove every binding of AOR, or only the one whose contact URI is CONTACT.
    Exit status 1 when there is no such binding."""
    params = [aor, contact] if contact else [aor]
    result = _call(_client(config_path, data_dir, url, token, timeout), "ul.rm", params)
    removed = result.get("removed") if isinstance(result, dict) else None
    if isinstance(removed, int):
        click.echo(f"removed {removed} binding{'s' if removed != 1 else ''} of {aor}")
    else:
        _print_json(result)


main.add_command(rpc)
main.add_command(ul)
