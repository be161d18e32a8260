# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the management tests: a started ``MgmtServer`` (factory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from siprouter.mgmt.registry import CommandRegistry
from siprouter.mgmt.server import MgmtServer


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
