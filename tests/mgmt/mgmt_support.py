# SPDX-License-Identifier: Apache-2.0
"""A real HTTP / UNIX-socket JSON-RPC client for the management tests (aiohttp)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp


async def post(target: str | Path, body: bytes | str | dict | list, *,
               headers: dict[str, str] | None = None,
               content_type: str | None = "application/json") -> tuple[int, Any, Any]:
    """POST ``body`` to ``target`` (an http:// URL, or a UNIX socket path for /RPC);
    returns (HTTP status, parsed JSON or None, response headers). Bounded by 5 s."""
    if isinstance(body, dict | list):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hdrs = dict(headers or {})
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    if isinstance(target, Path):
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=str(target))
        url = "http://localhost/RPC"
    else:
        connector = aiohttp.TCPConnector()
        url = target
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, \
            session.post(url, data=body, headers=hdrs) as resp:
        raw = await resp.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed, resp.headers


async def call(target: str | Path, method: str, params: Any = None,
               headers: dict[str, str] | None = None) -> Any:
    """One JSON-RPC call; returns the response object (result or error)."""
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        req["params"] = params
    status, out, _ = await post(target, req, headers=headers)
    assert status == 200, (status, out)
    return out
