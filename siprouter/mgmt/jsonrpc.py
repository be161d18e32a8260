# SPDX-License-Identifier: Apache-2.0
"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) over any byte transport:
``await JsonRpcProcessor(registry).process(body)`` returns the response body, or None
when there is nothing to answer (notifications only). No sockets here; the HTTP and UNIX
socket server (``siprouter.mgmt.server``) and the tests call it the same way.

What is answered (spec section in brackets):

- a single request → one response object; a batch (array) → an array of the responses
  of its non-notification members, in order; an empty array → one -32600 error [§6];
- a notification (no ``id`` member) runs but is never answered, not even on error [§4.1];
- unparsable JSON (or not UTF-8) → -32700 with id null [§5.1];
- not a request object, ``jsonrpc`` not ``"2.0"``, ``method`` not a string, ``params``
  neither array nor object, ``id`` neither string, number nor null → -32600 (answered
  even without ``id``: the member that makes it a notification cannot be trusted);
- unknown method → -32601 naming the closest commands; parameters that do not fit the
  command's signature → -32602 naming the parameter;
- a command raising ``RpcError`` → its code, message and data;
- anything else a command raises, or a result that is not JSON-serialisable → -32603
  "Internal error", logged with its traceback; the exception text is never sent.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any

from siprouter.mgmt.errors import ErrorCode, RpcError
from siprouter.mgmt.registry import CommandRegistry

__all__ = ["JsonRpcProcessor", "MAX_BATCH", "encode", "error_response"]

log = logging.getLogger("siprouter.mgmt")

# Most requests in one batch. A batch runs its calls one after another on the event loop;
# a few hundred is more than any tool sends (kamcmd sends one), and bounds the work one
# HTTP request can queue.
MAX_BATCH = 256


def _fallback(obj: Any) -> Any:
    """JSON for the few non-JSON types commands naturally return."""
    if isinstance(obj, Enum):
        return obj.name
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    for name in ("to_dict", "as_dict"):
        method = getattr(obj, name, None)
        if callable(method):
            return method()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def encode(obj: Any) -> bytes:
    """``obj`` as compact JSON bytes (UTF-8; NaN and infinities refused).

    :raises TypeError, ValueError: when ``obj`` cannot be written as JSON.
    """
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=_fallback).encode()


def error_response(code: int, message: str, rid: Any = None, data: Any = None) -> bytes:
    """A response object carrying an error (id null unless given)."""
    err: dict[str, Any] = {"code": int(code), "message": message}
    if data is not None:
        err["data"] = data
    try:
        return encode({"jsonrpc": "2.0", "error": err, "id": rid})
    except (TypeError, ValueError):  # data a command put in its RpcError is not JSON
        log.error("RPC error data is not JSON serialisable: %r", data)
        del err["data"]
        return encode({"jsonrpc": "2.0", "error": err, "id": rid})


def _valid_id(rid: Any) -> bool:
    return rid is None or isinstance(rid, str) or (
        isinstance(rid, int | float) and not isinstance(rid, bool))


class JsonRpcProcessor:
    """Answers JSON-RPC 2.0 requests with the commands of ``registry``."""

    def __init__(self, registry: CommandRegistry, *, max_batch: int = MAX_BATCH) -> None:
        self.registry = registry
        self.max_batch = max_batch

    async def process(self, data: bytes) -> bytes | None:
        """The response body for the request body ``data``; None when nothing is to be
        answered (a notification, or a batch of notifications only). Never raises for
        bad input."""
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return error_response(ErrorCode.PARSE_ERROR, "Parse error: the body is not JSON")
        if isinstance(obj, list):
            if not obj:
                return error_response(ErrorCode.INVALID_REQUEST,
                                      "Invalid Request: empty batch")
            if len(obj) > self.max_batch:
                return error_response(ErrorCode.INVALID_REQUEST,
                                      f"Invalid Request: more than {self.max_batch} "
                                      f"requests in one batch")
            parts = [r for r in [await self._one(item) for item in obj] if r is not None]
            return b"[" + b",".join(parts) + b"]" if parts else None
        return await self._one(obj)

    async def _one(self, req: Any) -> bytes | None:
        if not isinstance(req, dict):
            return error_response(ErrorCode.INVALID_REQUEST,
                                  "Invalid Request: expected a request object")
        rid = req.get("id")
        if not _valid_id(rid):
            return error_response(ErrorCode.INVALID_REQUEST,
                                  "Invalid Request: id must be a string, a number or null")
        if req.get("jsonrpc") != "2.0":
            return error_response(ErrorCode.INVALID_REQUEST,
                                  'Invalid Request: "jsonrpc" must be "2.0"', rid)
        method = req.get("method")
        if not isinstance(method, str):
            return error_response(ErrorCode.INVALID_REQUEST,
                                  'Invalid Request: "method" must be a string', rid)
        params = req.get("params")
        if "params" in req and not isinstance(params, list | dict):
            return error_response(ErrorCode.INVALID_REQUEST,
                                  'Invalid Request: "params" must be an array or an object',
                                  rid)
        notification = "id" not in req
        if log.isEnabledFor(logging.DEBUG):
            log.debug("rpc %s", method, extra={"params": params})
        try:
            result = await self.registry.call(method, params)
        except RpcError as e:
            if notification:
                return None
            return error_response(e.code, e.message, rid, e.data)
        except Exception:
            log.exception("RPC command %s failed", method)
            if notification:
                return None
            return error_response(ErrorCode.INTERNAL_ERROR, "Internal error", rid)
        if notification:
            return None
        try:
            return encode({"jsonrpc": "2.0", "result": result, "id": rid})
        except (TypeError, ValueError):
            log.exception("RPC command %s returned a result that is not JSON", method)
            return error_response(ErrorCode.INTERNAL_ERROR, "Internal error", rid)
