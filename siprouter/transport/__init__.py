# SPDX-License-Identifier: Apache-2.0
"""Transports: UDP and TCP listeners and senders (asyncio), host name resolution."""

from .manager import TransportLimits, TransportManager
from .resolver import Resolver
from .types import ListenSocket, Source, Target, parse_socket_spec

__all__ = [
    "ListenSocket",
    "Resolver",
    "Source",
    "Target",
    "TransportLimits",
    "TransportManager",
    "parse_socket_spec",
]
