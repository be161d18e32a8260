# SPDX-License-Identifier: Apache-2.0
"""Fixtures for transport tests: every async test runs on plain asyncio and on uvloop,
and managers are built by a factory that closes them afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from transport_helpers import Inbox

from siprouter.transport.manager import TransportLimits, TransportManager
from siprouter.transport.types import Source, parse_socket_spec

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a test dependency
    uvloop = None


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
    factories: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


MakeManager = Callable[..., Awaitable[tuple[TransportManager, Inbox]]]


@pytest.fixture
async def make_manager() -> AsyncIterator[MakeManager]:
    """``await make_manager("udp:127.0.0.1:0", ..., limits=..., on_stream_error=...)``
    returns a started manager and the inbox its messages go to."""
    made: list[TransportManager] = []

    async def make(*specs: str, limits: TransportLimits | None = None,
                   on_message: Callable[[bytes, Source], None] | None = None,
                   **kwargs: Any) -> tuple[TransportManager, Inbox]:
        inbox = Inbox()
        manager = TransportManager(
            [parse_socket_spec(s) for s in specs or ("udp:127.0.0.1:0",)],
            on_message or inbox,
            limits=limits or TransportLimits(),
            **kwargs,
        )
        made.append(manager)
        await manager.start()
        return manager, inbox

    yield make
    for manager in made:
        await manager.close()
