# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the management tests: a started ``MgmtServer`` and a started ``Server``
(factories)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mgmt_support import server_config

from siprouter.mgmt.registry import CommandRegistry
from siprouter.mgmt.server import MgmtServer
from siprouter.server import Server


@pytest.fixture
async def mgmt_factory(tmp_path: Path):
    """``await make(registry, **kwargs)``: a started MgmtServer on 127.0.0.1 port 0 and a
    socket in tmp_path unless told otherwise; every one is stopped at the end."""
    started: list[MgmtServer] = []

    async def make(registry: CommandRegistry | None = None, **kwargs: Any) -> MgmtServer:
        kwargs.setdefault("http_listen", "127.0.0.1:0")
        kwargs.setdefault("unix_socket", tmp_path / "m.sock")
        server = MgmtServer(registry if registry is not None else CommandRegistry(), **kwargs)
        started.append(server)
        await server.start()
        return server

    yield make
    for server in started:
        await server.stop()


@pytest.fixture
async def start_server(tmp_path: Path):
    """``await start(**overrides)`` → a started Server (``server_config``; keys as
    ``section__key``); every one is stopped at the end."""
    servers: list[Server] = []

    async def start(**overrides: Any) -> Server:
        server = Server(server_config(tmp_path, **overrides))
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in servers:
        await server.stop()
