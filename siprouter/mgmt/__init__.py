# SPDX-License-Identifier: Apache-2.0
"""Management: one registry of ``group.verb`` commands, served as JSON-RPC 2.0 over HTTP
and a UNIX socket, and called by the ``siprouter`` command line.

- ``registry``: ``CommandRegistry`` (signatures, conversions, help);
- ``jsonrpc``: ``JsonRpcProcessor``, bytes in, bytes out;
- ``server``: ``MgmtServer`` (aiohttp), the listeners and who may call;
- ``commands``: the core commands of a running server, ``mgmt_for_server``;
- ``client``: ``MgmtClient``, the synchronous client of the CLI (stdlib only);
- ``docs``: docs/rpc.md, generated from the commands.

Names are imported lazily: the CLI imports the client without loading aiohttp.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CommandRegistry",
    "CoreCommands",
    "ErrorCode",
    "InvalidParams",
    "JsonRpcProcessor",
    "MethodNotFound",
    "MgmtCallError",
    "MgmtClient",
    "MgmtConfigError",
    "MgmtServer",
    "MgmtUnavailable",
    "RpcError",
    "SystemCommands",
    "mgmt_for_server",
]

_WHERE = {
    "CommandRegistry": "registry",
    "CoreCommands": "commands",
    "ErrorCode": "errors",
    "InvalidParams": "errors",
    "JsonRpcProcessor": "jsonrpc",
    "MethodNotFound": "errors",
    "MgmtCallError": "client",
    "MgmtClient": "client",
    "MgmtConfigError": "errors",
    "MgmtServer": "server",
    "MgmtUnavailable": "client",
    "RpcError": "errors",
    "SystemCommands": "commands",
    "mgmt_for_server": "commands",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'siprouter.mgmt' has no attribute {name!r}")
    return getattr(importlib.import_module(f"siprouter.mgmt.{module}"), name)
