# SPDX-License-Identifier: Apache-2.0
"""A synchronous JSON-RPC client for the ``siprouter`` command (stdlib only, so the CLI
starts fast): ``MgmtClient(unix_socket=PATH).call("ul.dump")`` or
``MgmtClient(url="http://127.0.0.1:5080/RPC", token=…)``.

It raises :class:`MgmtUnavailable` when no server answers (nothing listening, no socket
file, timeout) and :class:`MgmtCallError` when the server answered with an error.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MgmtClient", "MgmtCallError", "MgmtUnavailable"]


class MgmtUnavailable(Exception):
    """No server could be reached; the message says where we tried and why."""


class MgmtCallError(Exception):
    """The server answered with a JSON-RPC error: ``code``, ``message``, ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (error {code})")
        self.code = code
        self.message = message
        self.data = data


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class MgmtClient:
    """Calls management commands of a running server over its UNIX socket or HTTP.

    :param unix_socket: the server's socket file; or
    :param url: ``http://HOST:PORT/RPC``;
    :param token: sent as ``Authorization: Bearer TOKEN`` over HTTP.
    :param timeout: seconds to wait for connecting and for the answer.
    :raises ValueError: neither or both of ``unix_socket`` and ``url``, or a URL that is
        not ``http://``.
    """

    def __init__(self, *, unix_socket: str | os.PathLike[str] | None = None,
                 url: str | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        if (unix_socket is None) == (url is None):
            raise ValueError("give unix_socket or url")
        self.unix_socket = Path(unix_socket) if unix_socket is not None else None
        self.url = url
        self.token = token
        self.timeout = timeout
        self._ids = itertools.count(1)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"expected an http:// URL such as http://127.0.0.1:5080/RPC, "
                                 f"not {url!r}")
            self._host, self._port = parts.hostname, parts.port or 80
            self._path = parts.path or "/RPC"

    @property
    def target(self) -> str:
        """Where calls go, for messages."""
        return str(self.unix_socket) if self.unix_socket is not None else str(self.url)

    def call(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        """Run ``method`` on the server and return its result.

        :raises MgmtUnavailable: no server answered.
        :raises MgmtCallError: the command failed (or the token was refused).
        """
        rid = next(self._ids)
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params is not None:
            req["params"] = params
        status, body = self._post(json.dumps(req).encode())
        try:
            answer = json.loads(body)
        except ValueError:
            raise MgmtUnavailable(f"{self.target} answered HTTP {status} with something "
                                  f"that is not JSON-RPC") from None
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise MgmtUnavailable(f"{self.target} answered HTTP {status} with something that "
                                  f"is not a JSON-RPC response")
        error = answer.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise MgmtCallError(-32603, str(error))
            raise MgmtCallError(int(error.get("code", -32603)), str(error.get("message", "")),
                                error.get("data"))
        if answer.get("id") != rid:
            raise MgmtUnavailable(f"{self.target} answered another request (id mismatch)")
        return answer.get("result")

    def _post(self, body: bytes) -> tuple[int, bytes]:
        conn: http.client.HTTPConnection
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.unix_socket is not None:
            conn = _UnixConnection(os.fspath(self.unix_socket), self.timeout)
            path = "/RPC"
            not_running = f"no siprouter is running: cannot connect to {self.unix_socket}"
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            path = self._path
            not_running = f"no siprouter is running: cannot connect to {self.url}"
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
        try:
            try:
                conn.connect()
            except (FileNotFoundError, ConnectionRefusedError) as e:
                raise MgmtUnavailable(f"{not_running} ({e.strerror or e})") from None
            except TimeoutError:
                raise MgmtUnavailable(f"{not_running} (no answer within "
                                      f"{self.timeout:g} s)") from None
            except OSError as e:
                raise MgmtUnavailable(f"cannot connect to siprouter at {self.target}: "
                                      f"{e.strerror or e}") from None
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError:
                raise MgmtUnavailable(f"siprouter at {self.target} did not answer within "
                                      f"{self.timeout:g} s") from None
            except (OSError, http.client.HTTPException) as e:
                raise MgmtUnavailable(f"siprouter at {self.target} closed the connection: "
                                      f"{e}") from None
        finally:
            conn.close()
        return resp.status, data
