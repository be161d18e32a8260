# SPDX-License-Identifier: Apache-2.0
"""Wiring: configuration → transports, proxy core, routing script, reload, signals.

``run(config)`` is what ``siprouter run`` calls; ``Server`` is the same thing as an
object tests can start and stop inside their own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
from pathlib import Path
from typing import Any

from siprouter.config import Config, ConfigError
from siprouter.mgmt.commands import mgmt_for_server
from siprouter.mgmt.errors import MgmtConfigError
from siprouter.modules.auth import Auth
from siprouter.modules.dispatcher import Dispatcher, DispatcherListError
from siprouter.modules.location import Location
from siprouter.modules.registrar import Registrar
from siprouter.proxy.core import ProxyCore
from siprouter.proxy.myself import Myself
from siprouter.script.api import make_proxy_core
from siprouter.script.loader import ScriptError
from siprouter.script.reload import ScriptReloader
from siprouter.sip.errors import LocalProtocolError
from siprouter.storage import Storage, StorageError, database_url, open_storage, url_scheme
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
        #: The database (``[database] url``) the modules keep their data in.
        self.storage: Storage | None = None
        #: The feature modules, by the name the script reaches them as (``ctx.<name>``);
        #: their management commands are registered from here.
        self.modules: dict[str, Any] = {}
        self._extra_storages: list[Storage] = []
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
        self.modules = await self._start_modules()
        core = make_proxy_core(None, myself=Myself(cfg.server.domains, (), cfg.server.hostname),
                               params=dict(cfg.routing.params), next_hop=cfg.routing.next_hop,
                               timers=timers, modules=self.modules)
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
        dispatcher = self.modules.get("dispatcher")
        if dispatcher is not None:
            # Health probing (ds_ping_*) sends OPTIONS through the transaction layer;
            # algorithm 10's call counts end with the calls' dialogs.
            if core.tm.dialogs is not None:
                core.tm.dialogs.add_listener(dispatcher.dialog_changed)
            await dispatcher.start(pinger=core.tm.ping)
        log.info("listening on %s", ", ".join(str(s) for s in transport.sockets))
        if self.mgmt is not None:
            await self.mgmt.start()

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            self.reloader.install_sighup(loop)
        if cfg.routing.reload_on_change:
            self._tasks.append(asyncio.ensure_future(self.reloader.run()))

    async def _start_modules(self) -> dict[str, Any]:
        """Open the database and build the modules the script sees: ``auth``,
        ``registrar`` and ``location``. The embedded SQLite database (and any SQLite or
        db_text one) gets its tables created when they are missing, so ``siprouter user
        add`` then ``siprouter run`` just works; a server database must have been set up
        with ``siprouter db init`` (or Kamailio's kamdbctl)."""
        cfg = self.config
        url = database_url(cfg.database.url, cfg.server.data_dir)
        local_file = url_scheme(url) in ("sqlite", "text")
        if local_file:
            Path(cfg.server.data_dir).mkdir(parents=True, exist_ok=True)
        storage = open_storage(url)
        await storage.open()
        self.storage = storage
        if local_file:
            await storage.ensure_tables()
        ul = cfg.usrloc
        location = Location(storage, db_mode=ul.db_mode, timer_interval=ul.timer_interval)
        await location.start()
        reg = cfg.registrar
        registrar = Registrar(location, default_expires=reg.default_expires,
                              min_expires=reg.min_expires, max_expires=reg.max_expires,
                              max_contacts=reg.max_contacts, use_domain=ul.use_domain,
                              min_expires_mode=reg.min_expires_mode)
        ac = cfg.auth
        secret = ac.secret.encode() if ac.secret else os.urandom(32)
        auth = Auth(storage, secret=secret, nonce_expire=ac.nonce_expire,
                    algorithms=ac.algorithms, qop=ac.qop, calculate_ha1=ac.calculate_ha1,
                    use_domain=ul.use_domain, accept_no_qop=ac.accept_no_qop,
                    nonce_count=ac.nonce_count)
        log.info("database: %s; location db_mode %d, %d contacts loaded",
                 url_scheme(url), ul.db_mode, location.n_contacts)
        modules: dict[str, Any] = {"auth": auth, "registrar": registrar, "location": location}
        if cfg.dispatcher.enabled:
            modules["dispatcher"] = await self._start_dispatcher(url)
        return modules

    async def _start_dispatcher(self, main_url: str) -> Dispatcher:
        """The dispatcher of ``[dispatcher]``: its sets from ``list_file`` or from the
        ``db_url`` database's table (the main database when the URL is the same)."""
        cfg = self.config
        dc = cfg.dispatcher
        params = dataclasses.asdict(dc)
        params.pop("db_url")
        params["list_file"] = None if dc.list_file is None else str(dc.list_file)
        params["options_reply_codes"] = list(dc.options_reply_codes) or None
        storage = None
        if dc.db_url is not None:
            if dc.db_url == main_url:
                storage = self.storage
            else:
                storage = open_storage(dc.db_url)
                await storage.open()
                self._extra_storages.append(storage)
        source = str(cfg.source or "configuration")
        try:
            dispatcher = Dispatcher.from_params(params, storage=storage)
            await dispatcher.load()  # probing starts with the core (start_probing)
        except DispatcherListError as e:
            key = "list_file" if dc.list_file is not None else "db_url"
            raise ConfigError(source, f"dispatcher.{key}", str(dc.list_file or dc.db_url),
                              "a valid destination list: " + "; ".join(e.problems)) from None
        except LocalProtocolError as e:
            raise ConfigError(source, "dispatcher", None, str(e)) from None
        log.info("dispatcher: %d sets loaded", len(dispatcher.sets))
        return dispatcher

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
        dispatcher = self.modules.get("dispatcher")
        if dispatcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dispatcher.stop(), 5.0)
        for storage in self._extra_storages:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(storage.close(), 5.0)
        location = self.modules.get("location")
        if location is not None:
            # db_mode 2: what is not written yet goes to the database now.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(location.stop(), 10.0)
        if self.storage is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.storage.close(), 5.0)


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
    except StorageError as e:
        log.error("database: %s", e)
        await server.stop()
        return 1
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


# The cyclic garbage collector's thresholds for a running server (CPython's defaults are
# 700, 10, 10). A proxy keeps every UDP transaction for Timer J/K/L/M (32 s): ~200,000
# live objects at 500 calls/s, and each full collection walks them all. A generation-1
# collection every 100 young ones instead of every 10 makes full collections about ten
# times rarer; measured on S2 (../shared/bench, 500 calls/s): collector time 0.96 s ->
# 0.57 s per run, server CPU per call -6 %, same RSS (docs/performance.md).
GC_THRESHOLDS = (700, 100, 10)


def run(config: Config) -> int:
    """Run the server in the foreground (``siprouter run``). Returns the exit status."""
    gc.set_threshold(*GC_THRESHOLDS)
    loop = _new_event_loop()
    log.debug("event loop: %s", type(loop).__module__)
    try:
        return loop.run_until_complete(serve(config))
    finally:
        loop.close()
