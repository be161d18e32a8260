# SPDX-License-Identifier: Apache-2.0
"""Loading the operator's routing script.

A script is named by a *spec*:

- a file: ``"route.py"``, ``"/etc/siprouter/route.py"`` or a ``Path`` (a string counts
  as a file when it ends in ``.py`` or contains a path separator, as in the config);
- a module: ``"pkg.module"``, or ``"pkg.module:attr"`` where ``attr`` is an object
  with ``request_route`` (and maybe ``reply_route``) attributes, or is itself the
  ``request_route`` function;
- ``None``: the shipped default script, ``siprouter.script.default``.

How this works
--------------
Every load executes the source afresh, so a second load of the same file sees the
edits (this is what reload uses). We compile the source ourselves instead of going
through ``importlib``'s file loader: that loader trusts a cached ``.pyc`` whose recorded
mtime (whole seconds) and size match, so an edit within the same second that keeps the
size would load the *old* code. The fresh module gets a unique name
(``siprouter_script_<n>_<stem>``, or ``<package>.__script_<n>_<leaf>`` for a module
inside a package so relative imports still work) and is put in ``sys.modules`` under
that name only, never under a name another import owns. The previous generation of the
same script is removed from ``sys.modules``; functions still running keep their module
alive through their globals.

A file script's directory is added to the end of ``sys.path`` (once), so the script can
import modules that sit beside it. Those are imported once, like any import: a reload
runs the script again but does not re-import its helpers.

A module reference that has no Python source (an extension module, say) is imported the
normal way and cannot be reloaded.

Every failure is a ``ScriptError`` whose message starts with ``file:line:`` when there
is a line to blame, so an operator can jump straight to it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import itertools
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_SCRIPT", "LoadedScript", "ScriptError", "load_script", "script_from_module",
           "is_file_spec"]

#: The module loaded when no script is configured.
DEFAULT_SCRIPT = "siprouter.script.default"

_counter = itertools.count(1)
# spec name -> the sys.modules key of its latest generation (to retire the previous one).
_generations: dict[str, str] = {}


class ScriptError(Exception):
    """The routing script cannot be used. ``str(e)`` is one line meant for the operator,
    ``"route.py:12: invalid syntax"``; ``filename`` and ``lineno`` say where (``lineno``
    is None when no line is to blame). The underlying exception is the ``__cause__``."""

    def __init__(self, message: str, filename: str | None = None,
                 lineno: int | None = None) -> None:
        super().__init__(message)
        self.filename = filename
        self.lineno = lineno


@dataclass(frozen=True, slots=True)
class LoadedScript:
    """A loaded routing script: its route functions, ready to call.

    ``name`` is the spec as given (file path or module reference); ``path`` the script's
    file for a file spec, else None. ``request_async`` / ``reply_async`` tell whether the
    function returns an awaitable (``async def``), so the caller need not inspect it per
    message.
    """

    name: str
    path: Path | None
    request_route: Callable[..., Any]
    reply_route: Callable[..., Any] | None
    module: types.ModuleType
    request_async: bool = False
    reply_async: bool = False


def is_file_spec(spec: str | os.PathLike[str]) -> bool:
    """Does this spec name a file (rather than a module)? Same rule as the config."""
    if isinstance(spec, os.PathLike):
        return True
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def load_script(spec: str | os.PathLike[str] | None) -> LoadedScript:
    """Load a routing script; each call executes its source afresh.

    :param spec: file path, ``"pkg.module"``, ``"pkg.module:attr"``, or None for the
        shipped default script.
    :raises ScriptError: the file cannot be read, has a syntax error, raises while being
        executed, or does not define a usable ``request_route(req, ctx)`` — the message
        names the file and the line.
    """
    if spec is None:
        spec = DEFAULT_SCRIPT
    if is_file_spec(spec):
        return _load_file(spec)
    return _load_module_ref(str(spec))


def script_from_module(module: types.ModuleType, name: str | None = None) -> LoadedScript:
    """Wrap an already imported module as a script, without executing it again (the
    testing kit's ``ScriptTester(route_module)``).

    :raises ScriptError: no usable ``request_route(req, ctx)`` in it.
    """
    display = getattr(module, "__file__", None) or module.__name__
    return _finish(name or module.__name__, None, module, module, display)


# --- files ---------------------------------------------------------------------------


def _load_file(spec: str | os.PathLike[str]) -> LoadedScript:
    name = os.fspath(spec)
    path = Path(name).absolute()
    try:
        source = path.read_bytes()
    except OSError as e:
        raise ScriptError(f"{name}: cannot read the script: {e.strerror or e}", name) from e
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    modname = f"siprouter_script_{next(_counter)}_{stem}"
    module = types.ModuleType(modname)
    module.__file__ = str(path)
    module.__spec__ = importlib.machinery.ModuleSpec(modname, None, origin=str(path))
    module.__spec__.has_location = True
    module.__package__ = ""
    # As when Python runs a file, the script's directory is importable, so it can
    # ``import helpers`` from beside it. Appended, so it cannot shadow the stdlib.
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.append(directory)
    _execute(source, path, name, module, spec_key=str(path))
    return _finish(name, path, module, module, name)


# --- module references ---------------------------------------------------------------


def _load_module_ref(spec: str) -> LoadedScript:
    modref, colon, attr = spec.partition(":")
    if not modref or (colon and not attr) or not all(p.isidentifier() for p in modref.split(".")):
        raise ScriptError(
            f"{spec}: not a script file or module reference (expected \"route.py\", "
            "\"pkg.module\" or \"pkg.module:attr\")"
        )
    try:
        found = importlib.util.find_spec(modref)
    except ModuleNotFoundError as e:  # a parent package is missing
        raise ScriptError(f"{spec}: no module named {e.name!r}") from e
    except Exception as e:  # importing a parent package raised
        raise _error_from_exception(e, None, spec) from e
    if found is None:
        raise ScriptError(f"{spec}: no module named {modref!r}")

    origin = found.origin
    if origin and origin.endswith(".py") and found.loader is not None and os.path.isfile(origin):
        path = Path(origin)
        try:
            source = path.read_bytes()
        except OSError as e:
            raise ScriptError(f"{origin}: cannot read the script: {e.strerror or e}", origin) from e
        is_package = found.submodule_search_locations is not None
        leaf = modref.rpartition(".")[2]
        parent = modref if is_package else modref.rpartition(".")[0]
        unique = f"__script_{next(_counter)}_{leaf}"
        # Inside the same package, so ``from . import helpers`` resolves as it would for
        # the module imported normally.
        modname = f"{parent}.{unique}" if parent and not is_package else unique
        module = types.ModuleType(modname)
        module.__file__ = origin
        mspec = importlib.machinery.ModuleSpec(modname, None, origin=origin, is_package=is_package)
        mspec.has_location = True
        if is_package:
            module.__path__ = list(found.submodule_search_locations or ())
            mspec.submodule_search_locations = module.__path__
            module.__package__ = modname
        else:
            module.__package__ = parent
        module.__spec__ = mspec
        _execute(source, path, origin, module, spec_key=modref)
    else:
        # No source we can execute afresh (extension module, zip import …): import it.
        try:
            module = importlib.import_module(modref)
        except Exception as e:
            raise _error_from_exception(e, origin, origin or spec) from e
        path = Path(origin) if origin else None

    target: Any = module
    if attr:
        target = module
        for part in attr.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise ScriptError(f"{spec}: module {modref} has no attribute {attr!r}",
                                  origin) from None
        if not hasattr(target, "request_route") and callable(target):
            # "pkg.module:my_route": the object is the request route itself.
            fn = target
            _check_signature(fn, "request_route", origin or modref)
            return _make(spec, None, module, fn, None)
    return _finish(spec, None, module, target, origin or modref)


# --- shared --------------------------------------------------------------------------


def _execute(source: bytes, path: Path, display: str, module: types.ModuleType,
             spec_key: str) -> None:
    """Compile and run ``source`` as ``module``; registered in sys.modules on success."""
    filename = str(path)
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as e:
        line = e.lineno
        where = f"{display}:{line}" if line else display
        msg = e.msg or "invalid syntax"
        text = (e.text or "").strip()
        detail = f" (column {e.offset}: {text!r})" if text and e.offset else (f" ({text!r})" if text else "")
        raise ScriptError(f"{where}: {msg}{detail}", display, line) from e
    except ValueError as e:  # e.g. "source code string cannot contain null bytes"
        raise ScriptError(f"{display}: {e}", display) from e

    modname = module.__name__
    sys.modules[modname] = module
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as e:  # sys.exit() in a script is an error like any other
        sys.modules.pop(modname, None)
        raise _error_from_exception(e, filename, display) from e
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    previous = _generations.get(spec_key)
    _generations[spec_key] = modname
    if previous is not None and previous != modname:
        sys.modules.pop(previous, None)


def _error_from_exception(e: BaseException, filename: str | None, display: str) -> ScriptError:
    """``file:line: Type: text`` for the innermost frame of ``filename`` in the traceback."""
    lineno = None
    tb = e.__traceback__
    while tb is not None:
        if filename is None or tb.tb_frame.f_code.co_filename == filename:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    where = f"{display}:{lineno}" if lineno else display
    text = str(e)
    what = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return ScriptError(f"{where}: {what}", display, lineno)


def _finish(name: str, path: Path | None, module: types.ModuleType, holder: Any,
            display: str) -> LoadedScript:
    request_route = getattr(holder, "request_route", None)
    if request_route is None:
        raise ScriptError(f"{display}: no request_route(req, ctx) defined", display)
    _check_signature(request_route, "request_route", display)
    reply_route = getattr(holder, "reply_route", None)
    if reply_route is not None:
        _check_signature(reply_route, "reply_route", display)
    return _make(name, path, module, request_route, reply_route)


def _make(name: str, path: Path | None, module: types.ModuleType,
          request_route: Callable[..., Any], reply_route: Callable[..., Any] | None) -> LoadedScript:
    return LoadedScript(
        name=name,
        path=path,
        request_route=request_route,
        reply_route=reply_route,
        module=module,
        request_async=_is_async(request_route),
        reply_async=reply_route is not None and _is_async(reply_route),
    )


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with ``async def __call__``
    )


def _where_defined(fn: Any, display: str) -> str:
    """``file:line`` of a function's ``def`` (the script's display name for its own file)."""
    target = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(target, "__code__", None)
    if code is None:
        code = getattr(getattr(target, "__call__", None), "__code__", None)  # noqa: B004
    if code is None:
        return display
    filename = code.co_filename
    if filename != display and os.path.isabs(filename) and Path(display).absolute() == Path(filename):
        filename = display  # the script's own file, as the operator named it
    return f"{filename}:{code.co_firstlineno}"


def _check_signature(fn: Any, what: str, display: str) -> None:
    expected = f"{what}(req, ctx)"
    if not callable(fn):
        raise ScriptError(f"{display}: {what} is not a function (expected {expected})", display)
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        where = _where_defined(fn, display)
        raise ScriptError(f"{where}: {what} is a generator; expected def or async def {expected}",
                          where.rpartition(":")[0] or display, _line_of(where))
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C callable: we cannot tell; trust it
    try:
        sig.bind(None, None)
    except TypeError:
        where = _where_defined(fn, display)
        params = str(sig.replace(return_annotation=sig.empty))
        fname = getattr(fn, "__name__", what)
        role = "" if fname == what else f" (used as {what})"
        raise ScriptError(
            f"{where}: {fname}{params}{role} must take exactly two positional parameters: "
            f"{expected}",
            where.rpartition(":")[0] or display, _line_of(where),
        ) from None


def _line_of(where: str) -> int | None:
    tail = where.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None
