# SPDX-License-Identifier: Apache-2.0
"""The registry of management commands: each defined once, as a ``group.verb`` name bound
to a Python function whose signature and docstring are the command's parameters and help.

How this works
--------------
``add(name, fn)`` reads ``fn``'s signature once (annotations evaluated) and builds, for
each parameter, a converter from the JSON value (or the string typed on the command
line) to the annotated type. ``call(name, params)`` binds ``params`` — a list
(positional) or an object (named), as in JSON-RPC 2.0 §4.2 — to the parameters, converts
each value and calls the function, awaiting it when it returns an awaitable. A call that
does not fit raises :class:`InvalidParams` naming the parameter and what it expects; an
unknown name raises :class:`MethodNotFound` with the closest names.

Conversions by annotation: ``str`` (numbers are accepted and turned into text, as
kamcmd sends ``1000`` for an AOR), ``int`` (also ``"5"``, never ``true``), ``float``,
``bool`` (also ``"true"``/``"false"``/``"1"``/``"0"``/``"yes"``/``"no"``/``"on"``/``"off"``),
``Literal[...]`` of strings or integers, ``list``/``list[X]``, ``dict`` (also as JSON
text), ``X | None`` (``null`` accepted), unions (first type that fits); anything else,
or no annotation, passes through unchanged.

Modules mark their commands with :func:`siprouter.modules.rpc`; ``add_object`` registers
every marked method of an instance.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from siprouter.mgmt.errors import InvalidParams, MethodNotFound
from siprouter.modules import RPC_ATTRIBUTE

__all__ = ["Command", "CommandRegistry", "Param", "rpc_methods"]

_TRUE = frozenset(("true", "1", "yes", "on"))
_FALSE = frozenset(("false", "0", "no", "off"))


class _Mismatch(Exception):
    """A value that does not fit a converter (internal; becomes InvalidParams)."""


_Convert = Callable[[Any], Any]


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    raise _Mismatch


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise _Mismatch
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip(), 10)
        except ValueError:
            pass
    raise _Mismatch


def _to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise _Mismatch
    if isinstance(v, int | float):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            raise _Mismatch from None
    else:
        raise _Mismatch
    if not math.isfinite(f):
        raise _Mismatch
    return f


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        low = v.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _Mismatch


def _json_text(v: Any, kind: type) -> Any:
    """A list/dict given as JSON text (command-line arguments are strings)."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise _Mismatch from None
    if not isinstance(v, kind):
        raise _Mismatch
    return v


_SIMPLE: dict[Any, tuple[_Convert, str]] = {
    str: (_to_str, "a string"),
    int: (_to_int, "an integer"),
    float: (_to_float, "a number"),
    bool: (_to_bool, "a boolean (true or false)"),
}


def _converter(ann: Any) -> tuple[_Convert | None, str]:
    """(convert function or None for "pass through", what is expected in words)."""
    if ann is inspect.Parameter.empty or ann is Any or ann is object:
        return None, "any value"
    simple = _SIMPLE.get(ann)
    if simple is not None:
        return simple
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in args if a is not type(None)]
        nullable = len(options) < len(args)
        parts = [_converter(a) for a in options]
        if any(c is None for c, _ in parts):
            return None, "any value"
        expected = " or ".join(d for _, d in parts) + (" or null" if nullable else "")

        def union(v: Any) -> Any:
            if v is None and nullable:
                return None
            for convert, _ in parts:
                try:
                    return convert(v)  # type: ignore[misc]
                except _Mismatch:
                    continue
            raise _Mismatch

        return union, expected
    if origin is typing.Literal:
        choices = tuple(args)
        expected = "one of " + ", ".join(repr(c) for c in choices)

        def literal(v: Any) -> Any:
            for c in choices:
                if v == c and type(v) is type(c):
                    return c
                if isinstance(v, str) and not isinstance(c, str) and v.strip() == str(c):
                    return c
            raise _Mismatch

        return literal, expected
    if ann is list or origin is list or ann is tuple or origin is tuple:
        item = _converter(args[0])[0] if origin is list and args else None

        def listing(v: Any) -> list[Any]:
            out = _json_text(v, list)
            return [item(x) for x in out] if item is not None else out

        return listing, "a list"
    if ann is dict or origin is dict:
        return (lambda v: _json_text(v, dict)), "an object"
    return None, f"a {getattr(ann, '__name__', ann)}"


class Param:
    """One parameter of a command: ``name``, ``required``, ``default``, ``expected``
    (what it takes, in words) and the converter."""

    __slots__ = ("name", "required", "default", "expected", "convert", "positional_only")

    def __init__(self, p: inspect.Parameter) -> None:
        self.name = p.name
        self.required = p.default is inspect.Parameter.empty
        self.default = None if self.required else p.default
        self.convert, self.expected = _converter(p.annotation)
        self.positional_only = p.kind is inspect.Parameter.POSITIONAL_ONLY


class Command:
    """A registered command: its ``name``, the function, its parameters and its help.

    ``unbound``: ``fn`` is a class's plain function, described without an instance (for
    the generated docs); its first parameter (``self``) is left out and ``call`` cannot
    work.

    :raises ValueError: when the function takes ``*args`` or ``**kwargs`` (a command's
        parameters must be named, so that they can be checked and documented).
    """

    __slots__ = ("name", "fn", "params", "signature", "doc", "_by_name")

    def __init__(self, name: str, fn: Callable[..., Any], *, unbound: bool = False) -> None:
        try:
            sig = inspect.signature(fn, eval_str=True)
        except (NameError, TypeError, SyntaxError):  # an annotation that cannot be evaluated
            sig = inspect.signature(fn)
        if unbound:  # a class's function, described for the docs: drop ``self``
            sig = sig.replace(parameters=list(sig.parameters.values())[1:])
        for p in sig.parameters.values():
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise ValueError(f"command {name}: *args/**kwargs are not allowed; "
                                 f"name every parameter")
        self.name = name
        self.fn = fn
        self.params = tuple(Param(p) for p in sig.parameters.values())
        self._by_name = {p.name: p for p in self.params}
        #: ``name(params) -> result``, as written in the function's signature.
        self.signature = name + str(sig).replace("typing.", "")
        #: The docstring, dedented; "" when there is none.
        self.doc = inspect.cleandoc(inspect.getdoc(fn) or "")

    def help(self) -> str:
        """The signature line, a blank line and the docstring."""
        return f"{self.signature}\n\n{self.doc}" if self.doc else self.signature

    def bind(self, params: Any) -> tuple[list[Any], dict[str, Any]]:
        """Check and convert ``params`` (list, dict or None) for a call.

        :raises InvalidParams: wrong count, unknown or missing name, value of the wrong
            type; the message names the parameter and what it expects.
        """
        given: dict[str, Any]
        if params is None:
            given = {}
        elif isinstance(params, list | tuple):
            if len(params) > len(self.params):
                names = ", ".join(p.name for p in self.params) or "none"
                raise InvalidParams(self.name, f"takes at most {len(self.params)} "
                                    f"parameter(s) ({names}), got {len(params)}")
            given = {p.name: v for p, v in zip(self.params, params, strict=False)}
        elif isinstance(params, dict):
            for key in params:
                if key not in self._by_name:
                    names = list(self._by_name)
                    close = difflib.get_close_matches(str(key), names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    expected = ("expected one of " + ", ".join(names)) if names \
                        else "it takes no parameters"
                    raise InvalidParams(self.name, f"unknown parameter {key!r}{hint}; "
                                        f"{expected}", param=str(key))
            given = params
        else:
            raise InvalidParams(self.name, "params must be a list or an object")
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                value = given[p.name]
                if p.convert is not None:
                    try:
                        value = p.convert(value)
                    except _Mismatch:
                        raise InvalidParams(
                            self.name, f"parameter {p.name!r} expects {p.expected}, "
                            f"got {_show(value)}", param=p.name, expected=p.expected) from None
            elif p.required:
                raise InvalidParams(self.name, f"missing parameter {p.name!r} ({p.expected})",
                                    param=p.name, expected=p.expected)
            else:
                continue
            if p.positional_only:
                args.append(value)
            else:
                kwargs[p.name] = value
        return args, kwargs

    async def call(self, params: Any = None) -> Any:
        """Bind ``params`` and run the command (awaiting it when it is async).

        :raises InvalidParams: as ``bind``; anything the command raises propagates.
        """
        args, kwargs = self.bind(params)
        result = self.fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def _show(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def rpc_methods(obj: Any) -> Iterator[tuple[str, Callable[..., Any]]]:
    """The methods of ``obj`` marked with :func:`siprouter.modules.rpc`, as
    (command name, bound method). On a class: (name, plain function), for documentation."""
    cls = obj if isinstance(obj, type) else type(obj)
    seen: set[str] = set()
    for klass in cls.__mro__:
        for attr, raw in vars(klass).items():
            if attr in seen:
                continue
            seen.add(attr)
            fn = raw.__func__ if isinstance(raw, staticmethod | classmethod) else raw
            name = getattr(fn, RPC_ATTRIBUTE, None)
            if isinstance(name, str):
                yield name, getattr(obj, attr)


class CommandRegistry:
    """The management commands of one server: ``add``/``add_object`` at start-up,
    ``call`` from the transports, ``names``/``help`` for ``system.*`` and the docs."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, name: str, fn: Callable[..., Any]) -> Command:
        """Register ``fn`` as the command ``name`` (``"group.verb"``).

        :raises ValueError: for a name that is not ``group.verb``, one already
            registered, or a function with ``*args``/``**kwargs``.
        """
        group, dot, verb = name.partition(".")
        if not dot or not group or not verb:
            raise ValueError(f'a command name is "group.verb", not {name!r}')
        if name in self._commands:
            raise ValueError(f"command {name} is registered twice")
        cmd = Command(name, fn)
        self._commands[name] = cmd
        return cmd

    def add_object(self, obj: Any) -> list[str]:
        """Register every method of ``obj`` marked with ``siprouter.modules.rpc``.

        :returns: the names registered.
        :raises ValueError: as ``add``.
        """
        names = []
        for name, method in rpc_methods(obj):
            self.add(name, method)
            names.append(name)
        return names

    def add_objects(self, objects: Iterable[Any]) -> list[str]:
        """``add_object`` for each of ``objects``."""
        return [name for obj in objects for name in self.add_object(obj)]

    def names(self) -> list[str]:
        """Every command name, sorted."""
        return sorted(self._commands)

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __len__(self) -> int:
        return len(self._commands)

    def get(self, name: str) -> Command:
        """The command ``name``.

        :raises MethodNotFound: with the closest names as a hint.
        """
        cmd = self._commands.get(name)
        if cmd is None:
            raise MethodNotFound(name, difflib.get_close_matches(name, self._commands, n=3))
        return cmd

    def commands(self) -> list[Command]:
        """Every command, sorted by name."""
        return [self._commands[n] for n in self.names()]

    def help(self, name: str) -> str:
        """Signature and docstring of ``name``.

        :raises MethodNotFound: as ``get``.
        """
        return self.get(name).help()

    async def call(self, name: str, params: Any = None) -> Any:
        """Run the command ``name`` with ``params`` (list, dict or None).

        :raises MethodNotFound: no such command.
        :raises InvalidParams: the parameters do not fit.
        """
        return await self.get(name).call(params)
