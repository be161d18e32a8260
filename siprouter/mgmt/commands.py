# SPDX-License-Identifier: Apache-2.0
"""The core management commands of a running server, and the wiring that gives a
``siprouter.server.Server`` its ``MgmtServer``.

Commands are methods marked with :func:`siprouter.modules.rpc`, like the modules' own
(``ul.*`` from Location …): ``SystemCommands`` (the registry describing itself) and
``CoreCommands`` (the server: version, uptime, info, reload, log level, tm, dialogs).
They read the server's attributes when called (``core``, ``transport``, ``reloader``,
``config``), so they are registered before the server has finished starting.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any, Literal

from siprouter import __version__
from siprouter.mgmt.dbtext import DbTextCommands
from siprouter.mgmt.endpoints import DEFAULT_HTTP_LISTEN, unix_socket_path
from siprouter.mgmt.errors import ErrorCode, RpcError
from siprouter.mgmt.metrics import render_metrics
from siprouter.mgmt.registry import CommandRegistry
from siprouter.mgmt.server import MgmtServer
from siprouter.mgmt.stats import StatsCommands
from siprouter.modules import rpc
from siprouter.sip.errors import LocalProtocolError

__all__ = ["CoreCommands", "SystemCommands", "mgmt_for_server", "register_server_commands"]

LogLevel = Literal["debug", "info", "warning", "error"]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class SystemCommands:
    """``system.*``: what a registry can say about itself (XML-RPC introspection names,
    as Kamailio)."""

    def __init__(self, registry: CommandRegistry) -> None:
        self.registry = registry

    @rpc("system.listMethods")
    def list_methods(self) -> list[str]:
        """The names of every command, sorted."""
        return self.registry.names()

    @rpc("system.methodHelp")
    def method_help(self, name: str) -> str:
        """The signature and description of the command ``name``."""
        return self.registry.help(name)


class _ErrorCapture(logging.Handler):
    """Collects the error lines the reloader logs while one reload runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {exc}"
        self.lines.append(text)


# How long dlg.terminate waits for the BYEs' answers: less than the CLI's 10 s timeout.
_BYE_WAIT = 5.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class CoreCommands:
    """``core.*``, ``log.*``, ``tm.*`` and ``dlg.*`` commands of one running server.

    :param server: a ``siprouter.server.Server`` (anything with its attributes).
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self.started_at = time.time()
        self._started_mono = time.monotonic()

    @rpc("core.version")
    def version(self) -> dict[str, str]:
        """siprouter's version, and Python's."""
        return {"name": "siprouter", "version": __version__,
                "python": sys.version.split()[0]}

    @rpc("core.uptime")
    def uptime(self) -> dict[str, Any]:
        """``now`` and ``up_since`` (UTC, ISO 8601) and ``uptime`` in seconds."""
        now = time.time()
        return {"now": _iso(now), "up_since": _iso(self.started_at),
                "uptime": round(time.monotonic() - self._started_mono, 3)}

    @rpc("core.info")
    def info(self) -> dict[str, Any]:
        """The process: pid, listen sockets, routing script, configuration file, data
        directory, domains and management endpoints."""
        srv = self.server
        cfg = srv.config
        transport = getattr(srv, "transport", None)
        reloader = getattr(srv, "reloader", None)
        mgmt = getattr(srv, "mgmt", None)
        loaded = getattr(reloader, "script", None)
        return {
            "version": __version__,
            "pid": os.getpid(),
            "workers": 1,  # one process, one event loop
            "listen": [str(s) for s in transport.sockets] if transport is not None else [],
            "script": str(cfg.routing.script),
            "script_name": getattr(loaded, "name", None),
            "config": str(cfg.source) if cfg.source is not None else None,
            "data_dir": str(cfg.server.data_dir),
            "domains": list(cfg.server.domains),
            "mgmt": {
                "http": mgmt.url if mgmt is not None else None,
                "unix_socket": str(mgmt.unix_path) if mgmt is not None and mgmt.unix_path
                else None,
            },
        }

    @rpc("core.reload")
    def reload(self) -> dict[str, Any]:
        """Load the routing script again and use it (as SIGHUP does). When it does not
        load, the running script stays and the error says why."""
        reloader = getattr(self.server, "reloader", None)
        if reloader is None:
            raise RpcError("the server has no routing script loaded yet")
        capture = _ErrorCapture()
        script_log = logging.getLogger("siprouter.script")
        script_log.addHandler(capture)
        try:
            ok = reloader.reload()
        finally:
            script_log.removeHandler(capture)
        if not ok:
            detail = "; ".join(capture.lines) or "the previous script stays in use"
            raise RpcError(f"script not reloaded: {detail}")
        return {"reloaded": True, "script": reloader.script.name}

    @rpc("log.set_level")
    def set_log_level(self, level: LogLevel, logger: str = "") -> dict[str, str]:
        """Set the lowest level logged, for every logger (``logger`` empty) or for one
        (e.g. ``siprouter.core``). Returns the level before and after."""
        target = logging.getLogger(logger or None)
        previous = logging.getLevelName(target.level).lower()
        target.setLevel(_LEVELS[level])
        return {"logger": logger or "root", "level": level, "previous": previous}

    def _tm(self) -> Any:
        core = getattr(self.server, "core", None)
        tm = getattr(core, "tm", None)
        if tm is None:
            raise RpcError("the transaction layer is not running")
        return tm

    @rpc("tm.stats")
    def tm_stats(self) -> dict[str, int]:
        """Transaction counters since start (Kamailio's tm statistics) and the
        transactions alive now (``active_server``, ``active_client``,
        ``active_cancels``)."""
        tm = self._tm()
        out = tm.stats.as_dict()
        out.update({f"active_{k}": v for k, v in tm.counts().items()})
        return out

    @rpc("dlg.list")
    def dlg_list(self) -> list[dict[str, Any]]:
        """The dialogs being tracked, oldest first, with their state, URIs and times."""
        dialogs = getattr(self._tm(), "dialogs", None)
        if dialogs is None:
            return []
        return [dialogs.as_dict(d) for d in dialogs]

    @rpc("dlg.terminate")
    async def dlg_terminate(self, id: str = "", call_id: str = "",
                            from_tag: str = "") -> dict[str, Any]:
        """End a confirmed dialog (Kamailio ``dlg.end_dlg``): the proxy sends BYE to the
        callee and to the caller itself (RFC 3261 §12.2.1.1, §15.1.1) and the dialog ends
        with reason "terminated by management". The dialog is named by ``id`` (as
        ``dlg.list`` shows it) or by ``call_id`` and ``from_tag``. Waits up to 5 s for
        both final responses and returns each BYE's Request-URI, Route, From, To, CSeq
        and ``status`` (null: no answer yet; the BYE is retransmitted until Timer F)."""
        tm = self._tm()
        dialogs = getattr(tm, "dialogs", None)
        if dialogs is None:
            raise RpcError("dialogs are not tracked by this server")
        if id:
            dlg = dialogs.get(id)
            name = id
        elif call_id and from_tag:
            name = f"with Call-ID {call_id!r} and From tag {from_tag!r}"
            dlg = next((d for d in dialogs if d.call_id == call_id and d.from_tag == from_tag),
                       None)
        else:
            raise RpcError("give the dialog's id (dlg.list shows it), or call_id and from_tag",
                           ErrorCode.INVALID_PARAMS, {"method": "dlg.terminate"})
        if dlg is None or not dlg.is_live:
            raise RpcError(f"no dialog {name}; dlg.list shows the live ones",
                           ErrorCode.INVALID_PARAMS, {"method": "dlg.terminate", "id": id})
        try:
            sent = await tm.end_dialog(dlg, "terminated by management", wait=_BYE_WAIT)
        except LocalProtocolError as e:
            raise RpcError(f"dialog {dlg.id} not terminated: {e}",
                           data={"id": dlg.id, "state": dlg.state.name}) from None
        return {"id": dlg.id, "call_id": dlg.call_id, "state_name": dlg.state.name,
                "end_reason": dlg.end_reason, "bye": sent}

    @rpc("dlg.terminate_dlg")
    async def dlg_terminate_dlg(self, callid: str, from_tag: str,
                                to_tag: str = "") -> dict[str, Any]:
        """Kamailio's ``dlg.terminate_dlg CALLID FROM_TAG [TO_TAG]``: dlg.terminate by
        Call-ID and tags."""
        if to_tag:
            dialogs = getattr(self._tm(), "dialogs", None) or ()
            if not any(d.call_id == callid and d.from_tag == from_tag and d.to_tag == to_tag
                       for d in dialogs):
                raise RpcError(f"no dialog with Call-ID {callid!r}, From tag {from_tag!r} "
                               f"and To tag {to_tag!r}; dlg.list shows the live ones",
                               ErrorCode.INVALID_PARAMS, {"method": "dlg.terminate_dlg"})
        return await self.dlg_terminate(call_id=callid, from_tag=from_tag)


def register_server_commands(registry: CommandRegistry, server: Any) -> None:
    """Register the system and core commands and those of every module in
    ``server.modules`` (a dict name → module object) on ``registry``."""
    registry.add_object(SystemCommands(registry))
    registry.add_object(CoreCommands(server))
    registry.add_object(StatsCommands(server))
    registry.add_object(DbTextCommands(server))  # dbt.*: an error unless text:///
    registry.add_objects(getattr(server, "modules", {}).values())


def mgmt_for_server(server: Any) -> MgmtServer | None:
    """The ``MgmtServer`` of ``server`` per its ``[mgmt]`` configuration, not started
    (None when ``enabled = false``). Its commands are registered when it starts.

    :raises MgmtConfigError: unusable ``[mgmt]`` settings.
    """
    cfg = server.config
    mcfg = cfg.mgmt
    if not mcfg.enabled:
        return None
    registry = CommandRegistry()

    def prepare() -> None:
        if not len(registry):  # once, even if start is retried
            register_server_commands(registry, server)

    stats = StatsCommands(server)

    async def metrics() -> bytes:
        return render_metrics(await stats.snapshot())

    return MgmtServer(
        registry,
        http_listen=mcfg.http_listen,
        unix_socket=unix_socket_path(mcfg.unix_socket, cfg.server.data_dir),
        token=mcfg.token,
        http_optional=mcfg.http_listen == DEFAULT_HTTP_LISTEN,
        prepare=prepare,
        metrics=metrics,
    )
