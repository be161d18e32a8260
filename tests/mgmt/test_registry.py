# SPDX-License-Identifier: Apache-2.0
"""CommandRegistry: registration, parameter binding and conversion, help, errors."""

from __future__ import annotations

from typing import Literal

import pytest

from siprouter.mgmt.errors import ErrorCode, InvalidParams, MethodNotFound
from siprouter.mgmt.registry import CommandRegistry, rpc_methods
from siprouter.modules import rpc


class Demo:
    """A module-like object with marked and unmarked methods."""

    def __init__(self) -> None:
        self.removed: list[tuple[str, str | None]] = []

    @rpc("demo.rm")
    async def rm(self, aor: str, contact: str | None = None) -> dict[str, object]:
        """Remove AOR, or one contact of it."""
        self.removed.append((aor, contact))
        return {"aor": aor, "contact": contact}

    @rpc("demo.add")
    def add(self, a: int, b: int = 1) -> int:
        """Sum of two integers."""
        return a + b

    def not_a_command(self) -> None:
        raise AssertionError("must not be registered")


class MoreDemo(Demo):
    @rpc("demo.mul")
    def mul(self, a: float, b: float) -> float:
        return a * b


def typed(i: int, f: float, b: bool, s: str, level: Literal["debug", "info"],
          items: list[int], table: dict, maybe: int | None = None, anything=None) -> dict:
    """Every supported annotation."""
    return {"i": i, "f": f, "b": b, "s": s, "level": level, "items": items,
            "table": table, "maybe": maybe, "anything": anything}


@pytest.fixture
def reg() -> CommandRegistry:
    r = CommandRegistry()
    r.add_object(MoreDemo())
    r.add("demo.typed", typed)
    return r


async def test_positional_and_named_calls(reg: CommandRegistry) -> None:
    assert await reg.call("demo.add", [2, 3]) == 5
    assert await reg.call("demo.add", {"a": 2}) == 3
    assert await reg.call("demo.add", ["2"]) == 3  # a CLI string for an int
    assert await reg.call("demo.rm", ["alice"]) == {"aor": "alice", "contact": None}
    assert await reg.call("demo.rm", {"aor": "alice", "contact": "sip:a@h"}) == {
        "aor": "alice", "contact": "sip:a@h"}


async def test_no_params_is_like_an_empty_list(reg: CommandRegistry) -> None:
    reg.add("demo.ping", lambda: "pong")
    assert await reg.call("demo.ping") == "pong"
    assert await reg.call("demo.ping", []) == "pong"
    assert await reg.call("demo.ping", {}) == "pong"


async def test_conversions_by_annotation(reg: CommandRegistry) -> None:
    out = await reg.call("demo.typed", ["5", "2.5", "yes", 1000, "info", "[1, 2]",
                                        '{"k": 1}'])
    assert out == {"i": 5, "f": 2.5, "b": True, "s": "1000", "level": "info",
                   "items": [1, 2], "table": {"k": 1}, "maybe": None, "anything": None}
    out = await reg.call("demo.typed", {"i": 7, "f": 3, "b": False, "s": "x", "level": "debug",
                                        "items": ["4"], "table": {}, "maybe": None,
                                        "anything": [1]})
    assert (out["i"], out["f"], out["b"], out["items"], out["maybe"], out["anything"]) == (
        7, 3.0, False, [4], None, [1])
    assert isinstance(out["f"], float)
    out = await reg.call("demo.typed", {"i": 7.0, "f": 0, "b": "off", "s": "", "level": "info",
                                        "items": [], "table": {}, "maybe": "12"})
    assert (out["i"], out["b"], out["maybe"]) == (7, False, 12)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("i", True, "an integer"),       # a boolean is not an integer
    ("i", 5.5, "an integer"),
    ("i", "five", "an integer"),
    ("f", "nan", "a number"),
    ("f", "1e999", "a number"),
    ("b", "maybe", "a boolean (true or false)"),
    ("b", 2, "a boolean (true or false)"),
    ("s", None, "a string"),
    ("s", [1], "a string"),
    ("level", "trace", "one of 'debug', 'info'"),
    ("items", "[1,", "a list"),
    ("items", ["x"], "a list"),
    ("table", [1], "an object"),
    ("maybe", "x", "an integer or null"),
])
async def test_wrong_type_names_the_parameter_and_what_it_expects(
        reg: CommandRegistry, name: str, value: object, expected: str) -> None:
    good = {"i": 1, "f": 1.0, "b": True, "s": "s", "level": "info", "items": [], "table": {}}
    with pytest.raises(InvalidParams) as exc:
        await reg.call("demo.typed", {**good, name: value})
    err = exc.value
    assert err.code == ErrorCode.INVALID_PARAMS
    assert f"parameter {name!r} expects {expected}" in err.message
    assert err.data == {"method": "demo.typed", "param": name, "expected": expected}


async def test_missing_too_many_unknown(reg: CommandRegistry) -> None:
    with pytest.raises(InvalidParams, match=r"missing parameter 'aor' \(a string\)"):
        await reg.call("demo.rm", [])
    with pytest.raises(InvalidParams, match=r"takes at most 2 parameter\(s\) \(aor, contact\), "
                                            r"got 3"):
        await reg.call("demo.rm", ["a", "b", "c"])
    with pytest.raises(InvalidParams, match=r"unknown parameter 'contakt' \(did you mean "
                                            r"'contact'\?\); expected one of aor, contact"):
        await reg.call("demo.rm", {"aor": "a", "contakt": "b"})
    with pytest.raises(InvalidParams, match="params must be a list or an object"):
        await reg.call("demo.rm", "alice")


async def test_unknown_method_suggests_close_names(reg: CommandRegistry) -> None:
    with pytest.raises(MethodNotFound) as exc:
        await reg.call("demo.rn", [])
    assert exc.value.code == ErrorCode.METHOD_NOT_FOUND
    assert "did you mean 'demo.rm'?" in exc.value.message
    assert exc.value.data["did_you_mean"][0] == "demo.rm"
    with pytest.raises(MethodNotFound) as exc:
        await reg.call("zzz.qqq")
    assert "did you mean" not in exc.value.message


def test_add_object_finds_marked_methods_only_including_inherited() -> None:
    obj = MoreDemo()
    names = dict(rpc_methods(obj))
    assert set(names) == {"demo.rm", "demo.add", "demo.mul"}
    assert names["demo.add"] == obj.add  # bound to the instance
    reg = CommandRegistry()
    assert sorted(reg.add_object(obj)) == ["demo.add", "demo.mul", "demo.rm"]
    assert reg.names() == ["demo.add", "demo.mul", "demo.rm"]
    assert len(reg) == 3 and "demo.mul" in reg and "demo.not_a_command" not in reg


async def test_the_bound_instance_is_called() -> None:
    obj = Demo()
    reg = CommandRegistry()
    reg.add_object(obj)
    await reg.call("demo.rm", ["bob", "sip:bob@h"])
    assert obj.removed == [("bob", "sip:bob@h")]


def test_registration_errors() -> None:
    reg = CommandRegistry()
    reg.add("a.b", lambda: None)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a.b", lambda: None)
    with pytest.raises(ValueError, match="group.verb"):
        reg.add("nodot", lambda: None)

    def varargs(*args: int) -> None: ...

    with pytest.raises(ValueError, match=r"\*args/\*\*kwargs"):
        reg.add("a.c", varargs)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add_objects([Demo(), Demo()])


def test_help_is_signature_and_docstring(reg: CommandRegistry) -> None:
    assert reg.help("demo.rm") == (
        "demo.rm(aor: str, contact: str | None = None) -> dict[str, object]\n\n"
        "Remove AOR, or one contact of it.")
    assert reg.help("demo.mul") == "demo.mul(a: float, b: float) -> float"  # no docstring
    with pytest.raises(MethodNotFound):
        reg.help("demo.nope")


async def test_a_command_error_propagates(reg: CommandRegistry) -> None:
    def boom() -> None:
        raise KeyError("x")

    reg.add("demo.boom", boom)
    with pytest.raises(KeyError):
        await reg.call("demo.boom")
