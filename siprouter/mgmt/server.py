# SPDX-License-Identifier: Apache-2.0
"""The management listener: JSON-RPC 2.0 over HTTP (``POST /RPC``) and over a local UNIX
socket, both served by aiohttp from one ``JsonRpcProcessor``.

How this works
--------------
``MgmtServer`` checks its settings when it is built (before the server opens any SIP
socket) and binds its sockets itself in ``start``, so the real port is known when port 0
was asked for and the UNIX socket gets mode 0600 before it accepts anyone (``listen``
is called by aiohttp after the ``chmod``).

Who may call (issue 7):

- The UNIX socket needs no token: the file's mode (0600, the user running siprouter)
  is the check. A socket file left by a server that died is replaced; one a live server
  answers on is an error (two servers must not share a data directory's socket).
- HTTP bound to a loopback address needs no token unless one is configured; any other
  address is refused at start without ``mgmt.token``. With a token every HTTP request
  needs ``Authorization: Bearer TOKEN``, compared in constant time
  (``hmac.compare_digest``); otherwise the answer is HTTP 401 with a JSON-RPC error.
- Browsers: a web page the operator visits can send requests to 127.0.0.1 too. HTTP
  requests must therefore carry ``Content-Type: application/json`` (a cross-site form
  or ``fetch`` cannot send that without a CORS preflight, which this server never
  grants), and without a token the ``Host`` header must name a loopback address or
  ``localhost`` (a DNS-rebinding page sends its own host name).

Answers are HTTP 200 with the JSON-RPC response (errors included), or 204 when the
request held only notifications.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from siprouter.mgmt.endpoints import (
    DEFAULT_HTTP_LISTEN,
    METRICS_PATH,
    RPC_PATH,
    SOCKET_NAME,
    is_loopback,
    parse_listen,
    unix_socket_path,
)
from siprouter.mgmt.errors import ErrorCode, MgmtConfigError
from siprouter.mgmt.jsonrpc import JsonRpcProcessor, error_response
from siprouter.mgmt.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from siprouter.mgmt.registry import CommandRegistry

__all__ = [
    "MgmtServer",
    "DEFAULT_HTTP_LISTEN",
    "SOCKET_NAME",
    "MAX_BODY",
    "RPC_PATH",
    "is_loopback",
    "parse_listen",
    "unix_socket_path",
]

log = logging.getLogger("siprouter.mgmt")

# Largest request body: a batch of MAX_BATCH small calls fits many times over.
MAX_BODY = 1024 * 1024
# Seconds ``stop`` waits for requests still being answered.
_SHUTDOWN_TIMEOUT = 2.0
_JSON_TYPES = ("application/json", "application/json-rpc")


def _host_of(host_header: str) -> str:
    """The host of a Host header value, without port and brackets."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


class MgmtServer:
    """Serves ``registry`` over HTTP and a UNIX socket.

    :param registry: the commands.
    :param http_listen: ``"HOST:PORT"``, or ``""``/None for no HTTP listener.
    :param unix_socket: path of the UNIX socket, or None for none.
    :param token: bearer token HTTP requests must carry; required when ``http_listen``
        is not a loopback address.
    :param http_optional: when binding HTTP fails (port taken), log a warning and run
        without it instead of failing ``start`` (the server sets it for the default
        address, so a busy 5080 does not stop a SIP server; the UNIX socket still serves).
    :param prepare: called at the beginning of ``start`` (the server registers its
        modules' commands there, once every module exists).
    :raises MgmtConfigError: a bad ``http_listen``, or a non-loopback one without token.
    """

    def __init__(self, registry: CommandRegistry, *, http_listen: str | None = DEFAULT_HTTP_LISTEN,
                 unix_socket: str | os.PathLike[str] | None = None, token: str | None = None,
                 http_optional: bool = False,
                 prepare: Callable[[], None] | None = None,
                 metrics: Callable[[], Awaitable[bytes]] | None = None) -> None:
        self.registry = registry
        #: Makes the ``GET /metrics`` text (Prometheus); None: no such route.
        self.metrics = metrics
        self.processor = JsonRpcProcessor(registry)
        self.token = token or None
        self._token_bytes = self.token.encode() if self.token else b""
        self.http_listen: tuple[str, int] | None = None
        if http_listen:
            try:
                self.http_listen = parse_listen(http_listen)
            except ValueError as e:
                raise MgmtConfigError("mgmt.http_listen", f'"{http_listen}"',
                                      f"{e}; expected HOST:PORT such as "
                                      f'"{DEFAULT_HTTP_LISTEN}", or "" for no HTTP') from None
            if not is_loopback(self.http_listen[0]) and not self.token:
                raise MgmtConfigError(
                    "mgmt.token", None,
                    f'mgmt.http_listen = "{http_listen}" is not a loopback address, so '
                    "management over HTTP needs a token: set mgmt.token (clients send "
                    '"Authorization: Bearer TOKEN"), or listen on 127.0.0.1')
        self.unix_socket = Path(unix_socket) if unix_socket is not None else None
        self.http_optional = http_optional
        self.prepare = prepare
        #: (host, port) HTTP is bound to once started (the real port when 0 was asked).
        self.http_address: tuple[str, int] | None = None
        #: The UNIX socket's path once it is bound.
        self.unix_path: Path | None = None
        self._runners: list[web.AppRunner] = []
        self._unix_inode: int | None = None

    @property
    def url(self) -> str | None:
        """``http://HOST:PORT/RPC`` once HTTP is listening, else None."""
        if self.http_address is None:
            return None
        host, port = self.http_address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{RPC_PATH}"

    # -- start / stop -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve.

        :raises OSError: a socket cannot be bound (the message names it), or another
            live server answers on the UNIX socket.
        """
        if self.prepare is not None:
            self.prepare()
        try:
            if self.unix_socket is not None:
                sock = self._bind_unix(self.unix_socket)
                await self._serve(sock, http=False)
                self.unix_path = self.unix_socket
                log.info("management on %s", self.unix_path)
            if self.http_listen is not None:
                try:
                    sock = self._bind_tcp(*self.http_listen)
                except OSError as e:
                    if not self.http_optional:
                        raise
                    log.warning("management over HTTP is off: %s (%s)%s", e,
                                "set [mgmt] http_listen to another address, or \"\" to "
                                "silence this",
                                "; the UNIX socket still serves" if self.unix_path else "")
                else:
                    await self._serve(sock, http=True)
                    host, port = sock.getsockname()[:2]
                    self.http_address = (host, port)
                    log.info("management on %s", self.url)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop listening, finish the requests being answered (bounded), remove the
        UNIX socket file. Safe to call when not started."""
        runners, self._runners = self._runners, []
        for runner in runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._unlink_own_socket()
        self.http_address = None
        self.unix_path = None

    async def _serve(self, sock: socket.socket, *, http: bool) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        handler = self._handle_http if http else self._handle_unix
        app.router.add_post(RPC_PATH, handler)
        if http and self.metrics is not None:
            app.router.add_get(METRICS_PATH, self._handle_metrics)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        self._runners.append(runner)
        site = web.SockSite(runner, sock)
        await site.start()  # calls sock.listen()

    def _bind_tcp(self, host: str, port: int) -> socket.socket:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, type_, proto, _, addr = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
        except OSError as e:
            sock.close()
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise OSError(e.errno, f"management HTTP {shown} (mgmt.http_listen): "
                                   f"{e.strerror or e}") from None
        sock.setblocking(False)
        return sock

    def _bind_unix(self, path: Path) -> socket.socket:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            sock.bind(os.fspath(path))
            bound = True
            # Before listen(): nobody can connect while the mode is still the umask's.
            os.chmod(path, 0o600)
            self._unix_inode = os.lstat(path).st_ino
        except OSError as e:
            sock.close()
            if bound:  # our file, never listened on
                with contextlib.suppress(OSError):
                    os.unlink(path)
            reason = e.strerror or str(e)
            if "too long" in str(e):
                reason = "path too long for a UNIX socket (at most 107 bytes)"
            raise OSError(e.errno or errno.EINVAL,
                          f"management socket {path} (mgmt.unix_socket): {reason}") from None
        sock.setblocking(False)
        return sock

    @staticmethod
    def _remove_stale_socket(path: Path) -> None:
        """Remove a socket file no server answers on; refuse a live one or a non-socket."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"management socket {path} (mgmt.unix_socket): "
                                        f"exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # left by a server that is gone
            log.info("replaced the stale management socket %s", path)
            return
        except OSError as e:
            raise OSError(e.errno, f"management socket {path} (mgmt.unix_socket): "
                                   f"cannot check it: {e.strerror or e}") from None
        finally:
            probe.close()
        raise OSError(errno.EADDRINUSE,
                      f"management socket {path}: another siprouter is running and answers "
                      f"on it (give this one its own server.data_dir or mgmt.unix_socket)")

    def _unlink_own_socket(self) -> None:
        inode, self._unix_inode = self._unix_inode, None
        if inode is None or self.unix_socket is None:
            return
        with contextlib.suppress(OSError):
            if os.lstat(self.unix_socket).st_ino == inode:  # not one a newer server made
                os.unlink(self.unix_socket)

    # -- requests ---------------------------------------------------------------------------

    async def _handle_unix(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request)

    async def _handle_metrics(self, request: web.Request) -> web.StreamResponse:
        """``GET /metrics`` for Prometheus: the same token and Host rules as ``/RPC``."""
        refused = self._refuse(request)
        if refused is not None:
            return refused
        assert self.metrics is not None
        body = await self.metrics()
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    def _refuse(self, request: web.Request) -> web.Response | None:
        """The answer to an HTTP request that may not be served (token, Host), else None."""
        if self.token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode(), self._token_bytes):
                return web.Response(
                    status=401, content_type="application/json",
                    headers={"WWW-Authenticate": 'Bearer realm="siprouter"'},
                    body=error_response(ErrorCode.UNAUTHORIZED, "Unauthorized: missing or "
                                        "wrong token (send Authorization: Bearer TOKEN)"))
        elif not is_loopback(_host_of(request.host)):
            return web.Response(
                status=403, content_type="application/json",
                body=error_response(ErrorCode.UNAUTHORIZED, "Forbidden: without mgmt.token "
                                    "the Host header must be a loopback address or localhost"))
        return None

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        if request.content_type not in _JSON_TYPES:
            return web.Response(
                status=415, content_type="application/json",
                body=error_response(ErrorCode.INVALID_REQUEST, "Unsupported media type: send "
                                    "Content-Type: application/json"))
        return await self._answer(request)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        out = await self.processor.process(body)
        if out is None:
            return web.Response(status=204)
        return web.Response(body=out, content_type="application/json")
