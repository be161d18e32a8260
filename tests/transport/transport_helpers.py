# SPDX-License-Identifier: Apache-2.0
"""Helpers shared by the transport tests (imported by name: this directory is on
sys.path under pytest's default import mode)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from siprouter.transport.types import Source

# Upper bound for any single wait in these tests.
WAIT = 5.0


class Inbox:
    """Collects what a manager delivers; ``get`` waits (bounded) for the next one."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Source]] = asyncio.Queue()
        self.count = 0

    def __call__(self, data: bytes, source: Source) -> None:
        self.count += 1
        self.queue.put_nowait((data, source))

    async def get(self, timeout: float = WAIT) -> tuple[bytes, Source]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def empty(self) -> bool:
        return self.queue.empty()


async def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def recv_udp(sock: socket.socket, timeout: float = WAIT) -> tuple[bytes, tuple]:
    """Next datagram on a non-blocking test socket (polls; works on any loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return sock.recvfrom(65535)
        except BlockingIOError:
            if loop.time() > deadline:
                raise AssertionError("no datagram in time") from None
            await asyncio.sleep(0.002)


def udp_client(family: int = socket.AF_INET) -> socket.socket:
    """A non-blocking UDP socket bound to the loopback address of ``family``."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.setblocking(False)
    return sock
