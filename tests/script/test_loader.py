# SPDX-License-Identifier: Apache-2.0
"""Loading routing scripts: what loads, and errors that name the file and the line."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from siprouter.script.loader import DEFAULT_SCRIPT, LoadedScript, ScriptError, load_script


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in tmp_path, so a script is named by a relative path as an operator would."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- what loads ----------------------------------------------------------------------


def test_file_script_with_both_routes(in_tmp):
    write(in_tmp / "route.py", """
        async def request_route(req, ctx):
            return "request"

        def reply_route(res, ctx):
            return "reply"
    """)
    script = load_script("route.py")
    assert isinstance(script, LoadedScript)
    assert script.name == "route.py"
    assert script.path == in_tmp / "route.py"
    assert script.request_async is True
    assert script.reply_async is False
    assert script.reply_route(None, None) == "reply"
    assert script.module.__file__ == str(in_tmp / "route.py")


def test_reply_route_is_optional(in_tmp):
    write(in_tmp / "route.py", "def request_route(req, ctx): pass\n")
    script = load_script(in_tmp / "route.py")  # a Path works too
    assert script.reply_route is None
    assert script.request_async is False


def test_loading_twice_runs_the_new_source(in_tmp):
    # Same size and (very likely) same mtime second: a .pyc-trusting loader would run
    # the old code here.
    path = write(in_tmp / "route.py", "VERSION = 1\ndef request_route(req, ctx): return VERSION\n")
    first = load_script("route.py")
    write(in_tmp / "route.py", "VERSION = 2\ndef request_route(req, ctx): return VERSION\n")
    assert path.stat().st_size == len("VERSION = 1\ndef request_route(req, ctx): return VERSION\n")
    second = load_script("route.py")
    assert second.request_route(None, None) == 2
    # The first generation keeps working with its own globals (messages in flight).
    assert first.request_route(None, None) == 1
    assert first.module is not second.module


def test_scripts_with_the_same_file_name_do_not_clobber_each_other(tmp_path):
    a = write(tmp_path / "a" / "route.py", "def request_route(req, ctx): return 'a'\n")
    b = write(tmp_path / "b" / "route.py", "def request_route(req, ctx): return 'b'\n")
    route_before = sys.modules.get("route")
    sa, sb = load_script(a), load_script(b)
    assert sa.request_route(None, None) == "a"
    assert sb.request_route(None, None) == "b"
    assert sa.module.__name__ != sb.module.__name__
    assert sys.modules.get("route") is route_before
    assert sys.modules[sa.module.__name__] is sa.module
    assert sys.modules[sb.module.__name__] is sb.module


def test_reload_retires_the_previous_generation_from_sys_modules(in_tmp):
    write(in_tmp / "route.py", "def request_route(req, ctx): pass\n")
    first = load_script("route.py")
    second = load_script("route.py")
    assert first.module.__name__ not in sys.modules
    assert sys.modules[second.module.__name__] is second.module


def test_dataclasses_and_odd_file_names_work(in_tmp):
    # dataclasses look their module up in sys.modules while the class is built.
    write(in_tmp / "my-route v2.py", """
        from __future__ import annotations
        from dataclasses import dataclass

        @dataclass
        class Rule:
            prefix: str
            target: str

        RULES = [Rule("+49", "sip:gw1.example.net")]

        def request_route(req, ctx):
            return RULES[0].target
    """)
    script = load_script("my-route v2.py")
    assert script.request_route(None, None) == "sip:gw1.example.net"
    assert script.module.__name__.isidentifier()


def test_file_script_can_import_a_module_beside_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    write(tmp_path / "conf" / "siprouter_test_helpers_beside.py", "GATEWAY = 'sip:10.0.0.5'\n")
    write(tmp_path / "conf" / "route.py", """
        from siprouter_test_helpers_beside import GATEWAY

        def request_route(req, ctx):
            return GATEWAY
    """)
    try:
        script = load_script(tmp_path / "conf" / "route.py")
        assert script.request_route(None, None) == "sip:10.0.0.5"
        assert sys.path[-1] == str(tmp_path / "conf")
    finally:
        sys.modules.pop("siprouter_test_helpers_beside", None)


def test_default_script_when_spec_is_none():
    script = load_script(None)
    assert script.name == DEFAULT_SCRIPT
    assert script.path is None
    assert script.request_route.__module__ == script.module.__name__


@pytest.fixture
def package(tmp_path, monkeypatch):
    """An importable package ``opsroute`` with a script using a relative import."""
    write(tmp_path / "opsroute" / "__init__.py", "")
    write(tmp_path / "opsroute" / "helpers.py", "TARGET = 'sip:10.0.0.9'\n")
    write(tmp_path / "opsroute" / "main.py", """
        from .helpers import TARGET

        async def request_route(req, ctx):
            return TARGET

        class Router:
            def __init__(self, name):
                self.name = name

            def request_route(self, req, ctx):
                return self.name

        ROUTER = Router("object")

        def just_a_route(req, ctx):
            return "function"
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n == "opsroute" or n.startswith("opsroute.")]:
        del sys.modules[name]


def test_module_reference_with_relative_import(package):
    script = load_script("opsroute.main")
    assert script.name == "opsroute.main"
    assert script.path is None
    assert script.request_async
    assert script.module.__name__.startswith("opsroute.")  # inside its package
    assert sys.modules.get("opsroute.main") is not script.module  # the real name is left alone


def test_module_reference_reload_sees_edits(package):
    load_script("opsroute.main")
    write(package / "opsroute" / "main.py", "def request_route(req, ctx): return 'edited'\n")
    assert load_script("opsroute.main").request_route(None, None) == "edited"


def test_module_reference_to_an_object_or_a_function(package):
    assert load_script("opsroute.main:ROUTER").request_route(None, None) == "object"
    script = load_script("opsroute.main:just_a_route")
    assert script.request_route(None, None) == "function"
    assert script.reply_route is None


# --- errors name the file and the line -----------------------------------------------


def test_syntax_error_names_file_and_line(in_tmp):
    write(in_tmp / "route.py", """
        async def request_route(req, ctx):
            if req.method == "INVITE"
                req.reply(404)
    """)
    with pytest.raises(ScriptError) as info:
        load_script("route.py")
    assert str(info.value).startswith("route.py:2: ")
    assert "expected ':'" in str(info.value)
    assert (info.value.filename, info.value.lineno) == ("route.py", 2)
    assert isinstance(info.value.__cause__, SyntaxError)


def test_indentation_error_names_file_and_line(in_tmp):
    write(in_tmp / "route.py", "def request_route(req, ctx):\n    pass\n  x = 1\n")
    with pytest.raises(ScriptError, match=r"^route\.py:3: "):
        load_script("route.py")


def test_exception_at_import_names_the_innermost_script_line(in_tmp):
    write(in_tmp / "route.py", """
        import json

        def build_table():
            return json.loads("{not json")

        TABLE = build_table()

        def request_route(req, ctx):
            pass
    """)
    with pytest.raises(ScriptError) as info:
        load_script("route.py")
    # Line 4 (inside build_table, the call into json), not line 6 and not json's own file.
    assert str(info.value).startswith("route.py:4: JSONDecodeError: ")
    assert info.value.lineno == 4


def test_name_error_at_import(in_tmp):
    write(in_tmp / "route.py", "x = 1\nLIMIT = undefined_name + 1\n")
    with pytest.raises(ScriptError, match=r"^route\.py:2: NameError: name 'undefined_name'"):
        load_script("route.py")


def test_failed_import_of_a_missing_module(in_tmp):
    write(in_tmp / "route.py", "import os\n\nimport no_such_module_here\n")
    with pytest.raises(ScriptError, match=r"^route\.py:3: ModuleNotFoundError: "):
        load_script("route.py")


def test_sys_exit_in_a_script_is_an_error_not_an_exit(in_tmp):
    write(in_tmp / "route.py", "import sys\nsys.exit(3)\n")
    with pytest.raises(ScriptError, match=r"^route\.py:2: SystemExit"):
        load_script("route.py")


def test_failed_script_leaves_nothing_in_sys_modules(in_tmp):
    write(in_tmp / "route.py", "raise RuntimeError('no')\n")
    before = set(sys.modules)
    with pytest.raises(ScriptError, match=r"^route\.py:1: RuntimeError: no$"):
        load_script("route.py")
    assert set(sys.modules) == before


def test_missing_request_route(in_tmp):
    write(in_tmp / "route.py", "def reply_route(res, ctx):\n    pass\n")
    with pytest.raises(ScriptError) as info:
        load_script("route.py")
    assert str(info.value) == "route.py: no request_route(req, ctx) defined"


@pytest.mark.parametrize("signature", ["req", "req, ctx, extra", "", "*, req, ctx"])
def test_wrong_request_route_signature_names_the_def_line(in_tmp, signature):
    write(in_tmp / "route.py", f"""
        import logging


        async def request_route({signature}):
            pass
    """)
    with pytest.raises(ScriptError) as info:
        load_script("route.py")
    assert str(info.value).startswith(f"route.py:4: request_route({signature}) must take")
    assert info.value.lineno == 4


def test_defaults_and_star_args_are_accepted(in_tmp):
    write(in_tmp / "route.py", "def request_route(req, ctx, debug=False): pass\n"
                              "def reply_route(*args): pass\n")
    script = load_script("route.py")
    assert script.reply_route is not None


def test_wrong_reply_route_signature(in_tmp):
    write(in_tmp / "route.py", "def request_route(req, ctx): pass\n\ndef reply_route(res): pass\n")
    with pytest.raises(ScriptError, match=r"^route\.py:3: reply_route\(res\) must take"):
        load_script("route.py")


def test_request_route_that_is_not_a_function(in_tmp):
    write(in_tmp / "route.py", "request_route = 42\n")
    with pytest.raises(ScriptError, match=r"^route\.py: request_route is not a function"):
        load_script("route.py")


def test_generator_request_route_is_refused(in_tmp):
    write(in_tmp / "route.py", "async def request_route(req, ctx):\n    yield 1\n")
    with pytest.raises(ScriptError, match=r"^route\.py:1: request_route is a generator"):
        load_script("route.py")


def test_missing_file(in_tmp):
    with pytest.raises(ScriptError, match=r"^nothere\.py: cannot read the script: "):
        load_script("nothere.py")


def test_absolute_path_is_shown_as_given(tmp_path):
    path = write(tmp_path / "route.py", "x = 1\ny = (\n")
    with pytest.raises(ScriptError) as info:
        load_script(str(path))
    assert str(info.value).startswith(f"{path}:2: ")


def test_module_reference_errors(package):
    with pytest.raises(ScriptError, match=r"^opsroute\.nothing: no module named 'opsroute\.nothing'"):
        load_script("opsroute.nothing")
    with pytest.raises(ScriptError, match=r"^no_such_pkg\.route: no module named 'no_such_pkg'"):
        load_script("no_such_pkg.route")
    with pytest.raises(ScriptError, match=r"module opsroute\.main has no attribute 'NOPE'"):
        load_script("opsroute.main:NOPE")
    with pytest.raises(ScriptError, match=r"not a script file or module reference"):
        load_script("opsroute..main")
    # Errors in a module's source name its file, as for file scripts.
    bad = write(package / "opsroute" / "bad.py", "def request_route(req, ctx):\n    pass\n1/0\n")
    with pytest.raises(ScriptError) as info:
        load_script("opsroute.bad")
    assert str(info.value).startswith(f"{bad}:3: ZeroDivisionError")


def test_module_without_request_route_names_its_file(package):
    with pytest.raises(ScriptError) as info:
        load_script("opsroute.helpers")
    assert str(info.value) == f"{package / 'opsroute' / 'helpers.py'}: no request_route(req, ctx) defined"
