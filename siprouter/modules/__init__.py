# SPDX-License-Identifier: Apache-2.0
"""Feature modules: registrar, location, auth, dispatcher … one file (or folder) each.

A module is a class the server builds from its configuration and hands to the routing
script as an attribute of ``ctx`` (``ctx.registrar``, ``ctx.auth`` …). Its management
commands are its own methods, marked with :func:`rpc`; the management layer
(``siprouter.mgmt``) finds them on the instance, so a module never imports it::

    class Location:
        @rpc("ul.lookup")
        async def rpc_lookup(self, aor: str) -> list[dict]:
            \"\"\"The bindings of one address of record.\"\"\"
            ...

A command's parameters are its signature (after ``self``), typed by its annotations
(``str``, ``int``, ``float``, ``bool``, optionals of those); its help text is its
docstring; it returns JSON-serialisable data and reports a failure the caller can act
on by raising :class:`RpcError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["RPC_ATTRIBUTE", "RpcError", "rpc"]

F = TypeVar("F", bound=Callable[..., Any])

# The attribute ``rpc`` sets on a method: the command's name.
RPC_ATTRIBUTE = "__rpc_name__"


class RpcError(Exception):
    """A management command failed in a way the caller should hear about (unknown AOR,
    bad state name …). ``code`` is the JSON-RPC error code (-32000 to -32099 are for
    the server's own errors); ``data`` optional details."""

    def __init__(self, message: str, code: int = -32000, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data


def rpc(name: str) -> Callable[[F], F]:
    """Mark a method as the management command ``name`` (``"group.verb"``, e.g.
    ``"ul.dump"``)."""
    group, dot, verb = name.partition(".")
    if not dot or not group or not verb:
        raise ValueError(f'an RPC command name is "group.verb", not {name!r}')

    def mark(fn: F) -> F:
        setattr(fn, RPC_ATTRIBUTE, name)
        return fn

    return mark
