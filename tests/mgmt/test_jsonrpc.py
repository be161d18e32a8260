# SPDX-License-Identifier: Apache-2.0
"""JSON-RPC 2.0 processing, bytes in and bytes out (no sockets): the examples of the
specification (§7) and every error kind."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from siprouter.mgmt.errors import ErrorCode
from siprouter.mgmt.jsonrpc import JsonRpcProcessor
from siprouter.mgmt.registry import CommandRegistry
from siprouter.modules import RpcError

NOTIFIED: list[Any] = []


def _registry() -> CommandRegistry:
    reg = CommandRegistry()
    reg.add("math.subtract", lambda minuend, subtrahend: minuend - subtrahend)
    reg.add("math.sum", lambda a=0, b=0, c=0: a + b + c)
    reg.add("log.note", lambda text: NOTIFIED.append(text))

    async def get_data() -> list[Any]:
        return ["hello", 5]

    reg.add("demo.get_data", get_data)

    def fails() -> None:
        raise RpcError("AOR not found: bob", -32004, {"aor": "bob"})

    reg.add("demo.fails", fails)

    def crashes() -> None:
        raise RuntimeError("secret detail /etc/passwd")

    reg.add("demo.crashes", crashes)
    reg.add("demo.unserialisable", lambda: object())
    reg.add("demo.nan", lambda: float("nan"))
    reg.add("demo.types", lambda: {"path": Path("/x"), "set": {2, 1},
                                   "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                                   "code": ErrorCode.PARSE_ERROR})
    return reg


@pytest.fixture
def rpc():
    processor = JsonRpcProcessor(_registry(), max_batch=10)
    NOTIFIED.clear()

    async def call(body: str | bytes) -> Any:
        out = await processor.process(body.encode() if isinstance(body, str) else body)
        return None if out is None else json.loads(out)

    return call


async def test_positional_and_named_params(rpc) -> None:
    assert await rpc('{"jsonrpc": "2.0", "method": "math.subtract", "params": [42, 23], '
                     '"id": 1}') == {"jsonrpc": "2.0", "result": 19, "id": 1}
    assert await rpc('{"jsonrpc": "2.0", "method": "math.subtract", "params": '
                     '{"subtrahend": 23, "minuend": 42}, "id": "x"}') == {
        "jsonrpc": "2.0", "result": 19, "id": "x"}
    assert await rpc('{"jsonrpc": "2.0", "method": "demo.get_data", "id": null}') == {
        "jsonrpc": "2.0", "result": ["hello", 5], "id": None}


async def test_notification_runs_and_is_not_answered(rpc) -> None:
    assert await rpc('{"jsonrpc": "2.0", "method": "log.note", "params": ["hi"]}') is None
    assert NOTIFIED == ["hi"]
    # Errors of notifications are not answered either.
    assert await rpc('{"jsonrpc": "2.0", "method": "nope.nope"}') is None
    assert await rpc('{"jsonrpc": "2.0", "method": "demo.crashes"}') is None
    assert await rpc('{"jsonrpc": "2.0", "method": "demo.fails"}') is None


async def test_batch_as_in_the_specification(rpc) -> None:
    out = await rpc("""[
        {"jsonrpc": "2.0", "method": "math.sum", "params": [1, 2, 4], "id": "1"},
        {"jsonrpc": "2.0", "method": "log.note", "params": [7]},
        {"jsonrpc": "2.0", "method": "math.subtract", "params": [42, 23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "demo.get_data", "id": "9"}
    ]""")
    assert [r.get("id") for r in out] == ["1", "2", None, "5", "9"]
    assert out[0]["result"] == 7 and out[1]["result"] == 19
    assert out[2]["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert out[3]["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
    assert out[4]["result"] == ["hello", 5]
    assert NOTIFIED == [7]


async def test_batch_of_notifications_only_is_not_answered(rpc) -> None:
    assert await rpc('[{"jsonrpc": "2.0", "method": "log.note", "params": [1]},'
                     ' {"jsonrpc": "2.0", "method": "log.note", "params": [2]}]') is None
    assert NOTIFIED == [1, 2]


async def test_invalid_batches(rpc) -> None:
    assert await rpc("[]") == {"jsonrpc": "2.0", "id": None, "error": {
        "code": ErrorCode.INVALID_REQUEST, "message": "Invalid Request: empty batch"}}
    out = await rpc("[1, 2]")
    assert [r["error"]["code"] for r in out] == [ErrorCode.INVALID_REQUEST] * 2
    big = json.dumps([{"jsonrpc": "2.0", "method": "math.sum", "id": i} for i in range(11)])
    out = await rpc(big)
    assert out["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert "more than 10" in out["error"]["message"]


@pytest.mark.parametrize("body", [
    b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
    b'[{"jsonrpc": "2.0", "method": "math.sum", "id": "1"}, {"jsonrpc": "2.0", "method"]',
    b"",
    b"\xff\xfe{}",
    b"[" * 100000,
])
async def test_parse_error(rpc, body: bytes) -> None:
    out = await rpc(body)
    assert out["error"]["code"] == ErrorCode.PARSE_ERROR
    assert out["id"] is None


@pytest.mark.parametrize(("request_", "answered_id"), [
    ({"jsonrpc": "2.0", "method": 1, "params": "bar", "id": 3}, 3),
    ({"method": "math.sum", "id": 4}, 4),
    ({"jsonrpc": "1.0", "method": "math.sum", "id": 5}, 5),
    ({"jsonrpc": "2.0", "method": "math.sum", "params": 5, "id": 6}, 6),
    ({"jsonrpc": "2.0", "method": "math.sum", "params": "ab", "id": 6}, 6),
    ({"jsonrpc": "2.0", "method": "math.sum", "id": True}, None),
    ({"jsonrpc": "2.0", "method": "math.sum", "id": {"a": 1}}, None),
    ({"jsonrpc": "2.0", "method": "math.sum"} | {"params": None}, None),  # even without id
    ("just a string", None),
])
async def test_invalid_request(rpc, request_: Any, answered_id: Any) -> None:
    out = await rpc(json.dumps(request_))
    assert out["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert out["id"] == answered_id
    assert out["error"]["message"].startswith("Invalid Request: ")


async def test_method_not_found_hints(rpc) -> None:
    out = await rpc('{"jsonrpc": "2.0", "method": "math.sun", "id": 1}')
    assert out["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
    assert out["error"]["message"] == "Method not found: 'math.sun' (did you mean 'math.sum'?)"
    assert out["error"]["data"]["did_you_mean"][0] == "math.sum"


async def test_invalid_params(rpc) -> None:
    out = await rpc('{"jsonrpc": "2.0", "method": "math.subtract", "params": [1], "id": 1}')
    assert out["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert "missing parameter 'subtrahend'" in out["error"]["message"]
    assert out["error"]["data"]["param"] == "subtrahend"


async def test_rpc_error_is_passed_through(rpc) -> None:
    out = await rpc('{"jsonrpc": "2.0", "method": "demo.fails", "id": 1}')
    assert out == {"jsonrpc": "2.0", "id": 1, "error": {
        "code": -32004, "message": "AOR not found: bob", "data": {"aor": "bob"}}}


async def test_internal_error_is_logged_never_sent(rpc, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="siprouter.mgmt"):
        out = await rpc('{"jsonrpc": "2.0", "method": "demo.crashes", "id": 1}')
    assert out == {"jsonrpc": "2.0", "id": 1, "error": {
        "code": ErrorCode.INTERNAL_ERROR, "message": "Internal error"}}
    record = next(r for r in caplog.records if "demo.crashes" in r.getMessage())
    assert record.exc_info is not None and "secret detail" in str(record.exc_info[1])


@pytest.mark.parametrize("method", ["demo.unserialisable", "demo.nan"])
async def test_result_that_is_not_json_is_an_internal_error(rpc, caplog, method: str) -> None:
    with caplog.at_level(logging.ERROR, logger="siprouter.mgmt"):
        out = await rpc(json.dumps({"jsonrpc": "2.0", "method": method, "id": 1}))
    assert out["error"] == {"code": ErrorCode.INTERNAL_ERROR, "message": "Internal error"}
    assert any(method in r.getMessage() for r in caplog.records)


async def test_common_python_types_are_written_as_json(rpc) -> None:
    out = await rpc('{"jsonrpc": "2.0", "method": "demo.types", "id": 1}')
    assert out["result"] == {"path": "/x", "set": [1, 2], "when": "2024-01-02T03:04:05+00:00",
                             "code": -32700}
