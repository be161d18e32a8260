# SPDX-License-Identifier: Apache-2.0
"""Wiring: configuration → transports, proxy core, routing script, reload, signals.

``run(config)`` is what ``siprouter run`` calls; ``Server`` is the same thing as an
object tests can start and stop inside their own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from siprouter.config import Config, ConfigError
from siprouter.mgmt.commands import mgmt_for_server
from siprouter.mgmt.errors import MgmtConfigError
from siprouter.proxy.core import ProxyCore
from siprouter.proxy.myself import Myself
from siprouter.script.api import make_proxy_core
from siprouter.script.loader import ScriptError
from siprouter.script.reload import ScriptReloader
from siprouter.transaction.timers import Timers
from siprouter.transport.manager import TransportLimits, TransportManager

__all__ = ["Server", "run"]

log = logging.getLogger("siprouter.server")


class Server:
    """One siprouter process: listens, routes, reloads its script.

    :raises ScriptError: from ``start`` when the routing script cannot be loaded.
    :raises OSError: from ``start`` when a socket cannot be bound (the message names it).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.core: ProxyCore | None = None
        self.transport: TransportManager | None = None
        self.reloader: ScriptReloader | None = None
        #: The management listener (``siprouter.mgmt.MgmtServer``); None when disabled.
        self.mgmt: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        cfg = self.config
        tc = cfg.transaction
        try:
            timers = Timers(t1=tc.t1, t2=tc.t2, t4=tc.t4, fr_timer=tc.fr_timer,
                            fr_inv_timer=tc.fr_inv_timer)
        except ValueError as e:
            raise ConfigError(str(cfg.source or "configuration"), "transaction", None,
                              str(e)) from None
        # [mgmt] is checked now, before any socket opens; it listens once the core runs.
        try:
            self.mgmt = mgmt_for_server(self)
        except MgmtConfigError as e:
            raise ConfigError(str(cfg.source or "configuration"), e.key, e.value,
                              e.expected) from None
        core = make_proxy_core(None, myself=Myself(cfg.server.domains, (), cfg.server.hostname),
                               params=dict(cfg.routing.params), next_hop=cfg.routing.next_hop,
                               timers=timers)
        # The reloader takes its change baseline at the first load, so an edit made
        # while we start is not missed.
        self.reloader = ScriptReloader(str(cfg.routing.script), core.set_script,
                                       watch=cfg.routing.reload_on_change)
        script = self.reloader.load()
        core.set_script(script)
        log.info("routing script: %s", script.name)
        limits = TransportLimits(
            max_message_size=cfg.transport.max_message_size,
            tcp_idle_timeout=cfg.transport.tcp_idle_timeout,
            max_connections_per_source=cfg.transport.max_connections_per_source,
        )
        transport = TransportManager(
            [(s.proto, s.host, s.port) for s in cfg.server.listen], core.on_message,
            limits=limits, on_stream_error=core.on_stream_error)
        await transport.start()
        core.transport = transport
        # Only now are the real ports known (port 0 asks for any free one).
        core.local = Myself(cfg.server.domains, transport.sockets, cfg.server.hostname,
                            is_local_ip=transport.is_local)
        self.core, self.transport = core, transport
        log.info("listening on %s", ", ".join(str(s) for s in transport.sockets))
        if self.mgmt is not None:
            await self.mgmt.start()

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            self.reloader.install_sighup(loop)
        if cfg.routing.reload_on_change:
            self._tasks.append(asyncio.ensure_future(self.reloader.run()))

    async def stop(self) -> None:
        if self.mgmt is not None:
            await self.mgmt.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.core is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.core.drain(), 2.0)
        if self.transport is not None:
            await self.transport.close()


async def serve(config: Config) -> int:
    """Run until SIGTERM or SIGINT; returns the exit status."""
    # Signal handlers first: a SIGTERM that arrives while we bind must still stop us
    # cleanly (exit 0), not kill the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = Server(config)
    try:
        await server.start()
    except (ScriptError, ConfigError) as e:
        log.error("%s", e)
        await server.stop()
        return 2
    except OSError as e:
        log.error("cannot listen: %s", e)
        await server.stop()
        return 1
    await stop.wait()
    log.info("stopping")
    await server.stop()
    return 0


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (the ``uvloop`` extra), plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(config: Config) -> int:
    """Run the server in the foreground (``siprouter run``). Returns the exit status."""
    loop = _new_event_loop()
    log.debug("event loop: %s", type(loop).__module__)
    try:
        return loop.run_until_complete(serve(config))
    finally:
        loop.close()
