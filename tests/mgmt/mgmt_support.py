# SPDX-License-Identifier: Apache-2.0
"""A real HTTP / UNIX-socket JSON-RPC client for the management tests (aiohttp), and the
configuration of the real servers they talk to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from siprouter.config import Config, load_config


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


def server_config(tmp_path: Path, **overrides: Any) -> Config:
    """A server on UDP 127.0.0.1 port 0 with management on HTTP 127.0.0.1 port 0 and its
    socket in tmp_path/data; ``overrides`` keys are ``section__key``."""
    values: dict[str, Any] = {
        "server.listen": ["udp:127.0.0.1:0"],
        "server.data_dir": str(tmp_path / "data"),
        "mgmt.http_listen": "127.0.0.1:0",
        "routing.reload_on_change": False,
    }
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(None, values)
