# SPDX-License-Identifier: Apache-2.0
"""JSON-RPC 2.0 error codes and the errors the management layer raises itself.

A command reports a failure the caller can act on by raising
:class:`siprouter.modules.RpcError` (code, message, data); the two subclasses here are
the ones the registry raises when a call names no command or gives the wrong
parameters. Their messages are written for the operator (they name the parameter and
what is expected) and are safe to send: they never contain a traceback.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from siprouter.modules import RpcError

__all__ = ["ErrorCode", "MethodNotFound", "InvalidParams", "MgmtConfigError", "RpcError"]


class ErrorCode(IntEnum):
    """The codes of JSON-RPC 2.0 §5.1, and the server-defined ones (-32000 to -32099)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    #: A command failed (``RpcError``'s default code).
    SERVER_ERROR = -32000
    #: The HTTP request had no token or a wrong one.
    UNAUTHORIZED = -32001


class MethodNotFound(RpcError):
    """No command of that name. ``data`` holds ``{"method": name}`` and, when some
    registered name is close, ``"did_you_mean"``."""

    def __init__(self, name: str, close: list[str]) -> None:
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        data: dict[str, Any] = {"method": name}
        if close:
            data["did_you_mean"] = close
        super().__init__(f"Method not found: {name!r}{hint}", ErrorCode.METHOD_NOT_FOUND, data)


class InvalidParams(RpcError):
    """The parameters do not fit the command's signature. ``param`` names the
    parameter (None when the problem is the list as a whole)."""

    def __init__(self, method: str, detail: str, param: str | None = None,
                 expected: str | None = None) -> None:
        data: dict[str, Any] = {"method": method}
        if param is not None:
            data["param"] = param
        if expected is not None:
            data["expected"] = expected
        super().__init__(f"Invalid params for {method}: {detail}", ErrorCode.INVALID_PARAMS, data)
        self.param = param


class MgmtConfigError(ValueError):
    """A ``[mgmt]`` setting is unusable (e.g. a non-loopback HTTP address without a
    token). ``key`` is the dotted key (``"mgmt.token"``), ``value`` the offending value
    rendered as TOML or None, ``expected`` what would be accepted; the server turns it
    into its ``ConfigError``."""

    def __init__(self, key: str, value: str | None, expected: str) -> None:
        where = f"{key} = {value}: " if value is not None else f"{key}: "
        super().__init__(where + expected)
        self.key = key
        self.value = value
        self.expected = expected
