# SPDX-License-Identifier: Apache-2.0
"""docs/rpc.md, generated from the commands themselves:
``python3 -m siprouter.mgmt.docs > docs/rpc.md``.

The commands documented are those of ``siprouter.mgmt.commands`` and of every class in
the modules of ``siprouter.modules`` that has methods marked with ``rpc`` — the same
definitions the server registers, read from the classes (no server is started). A test
compares the file with this output, so the reference cannot drift from the code.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys

import siprouter.modules
from siprouter.mgmt.commands import CoreCommands, SystemCommands
from siprouter.mgmt.dbtext import DbTextCommands
from siprouter.mgmt.errors import ErrorCode
from siprouter.mgmt.registry import Command, rpc_methods
from siprouter.mgmt.stats import StatsCommands

__all__ = ["documented_commands", "render_docs"]


def _module_classes() -> list[type]:
    """Classes with RPC methods defined in ``siprouter.modules``: its modules and those
    of its packages (a module may be a folder, like ``dispatcher/``)."""
    found: list[type] = []
    seen: set[type] = set()
    infos = pkgutil.walk_packages(siprouter.modules.__path__, "siprouter.modules.")
    for info in sorted(infos, key=lambda i: i.name):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls not in seen and cls.__module__.startswith("siprouter.modules.") \
                    and any(True for _ in rpc_methods(cls)):
                seen.add(cls)
                found.append(cls)
    return found


def documented_commands() -> list[Command]:
    """Every command the server can register, described from its class, sorted by name.

    :raises ValueError: a command name defined twice.
    """
    commands: dict[str, Command] = {}
    for cls in (SystemCommands, CoreCommands, StatsCommands, DbTextCommands,
                *_module_classes()):
        for name, fn in rpc_methods(cls):
            if name in commands:
                raise ValueError(f"command {name} is defined twice "
                                 f"(again in {cls.__module__}.{cls.__qualname__})")
            commands[name] = Command(name, fn, unbound=True)
    return [commands[n] for n in sorted(commands)]


_INTRO = f"""\
# Management commands (JSON-RPC 2.0)

<!-- Generated from the command definitions by `python3 -m siprouter.mgmt.docs > docs/rpc.md`;
do not edit. -->

A running siprouter answers [JSON-RPC 2.0](https://www.jsonrpc.org/specification) requests
on a UNIX socket (`siprouter.sock` in the data directory; `[mgmt] unix_socket`) and over HTTP
at `http://127.0.0.1:5080/RPC` (`[mgmt] http_listen`); see docs/config.md, section `[mgmt]`.

From the command line (arguments by position, or `name=value`; the result is printed as
JSON; exit status 0 on success, 1 when the command failed, 2 when no server is running):

    siprouter rpc core.uptime
    siprouter rpc system.methodHelp ul.rm
    siprouter rpc log.set_level level=debug

Over HTTP (`Content-Type: application/json` is required; with `[mgmt] token` set, also
`Authorization: Bearer TOKEN`):

    curl -s -H 'Content-Type: application/json' http://127.0.0.1:5080/RPC \\
         -d '{{"jsonrpc": "2.0", "method": "core.info", "id": 1}}'

Parameters are given by position (array) or by name (object). Values are converted to the
type in the signature: `"5"` is accepted for an `int`, `"true"` for a `bool`. Batches
(arrays of requests) and notifications (no `id`) work as the specification says.

| code | meaning |
|------|---------|
| {ErrorCode.PARSE_ERROR:d} | the body is not JSON |
| {ErrorCode.INVALID_REQUEST:d} | not a JSON-RPC 2.0 request (or an empty or too large batch) |
| {ErrorCode.METHOD_NOT_FOUND:d} | no such command (the message names the closest ones) |
| {ErrorCode.INVALID_PARAMS:d} | parameters do not fit the signature (the message names the parameter) |
| {ErrorCode.INTERNAL_ERROR:d} | a bug in the command (logged by the server with its traceback) |
| {ErrorCode.SERVER_ERROR:d} | the command failed; the message says why |
| {ErrorCode.UNAUTHORIZED:d} | HTTP only: missing or wrong token (HTTP status 401) |
"""


def render_docs() -> str:
    """The text of docs/rpc.md."""
    out = [_INTRO]
    group = None
    for cmd in documented_commands():
        g = cmd.name.partition(".")[0]
        if g != group:
            group = g
            out.append(f"## {g}\n")
        out.append(f"### `{cmd.signature}`\n")
        out.append((cmd.doc or "(no description)") + "\n")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render_docs())
