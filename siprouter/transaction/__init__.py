# SPDX-License-Identifier: Apache-2.0
"""The transaction layer (RFC 3261 §17, RFC 6026): state machines, matching, timers. No I/O.

Nothing in this package imports asyncio, socket or time (a test checks it): the caller
passes the time in and carries out the actions the machines return.
"""

from siprouter.transaction.machines import (
    ACCEPTED,
    CALLING,
    CANCEL_BRANCH,
    COMPLETED,
    CONFIRMED,
    DELIVER,
    PROCEEDING,
    SEND,
    SEND_ACK,
    SEND_TRYING,
    TERMINATED,
    TERMINATED_STATE,
    TIMEOUT,
    TRANSPORT_ERROR,
    TRYING,
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
    action_names,
)
from siprouter.transaction.matching import (
    MAGIC_COOKIE,
    ack_to_tag_matches,
    cancel_target_key,
    client_key,
    response_client_key,
    server_key,
)
from siprouter.transaction.timers import DEFAULT_TIMERS, Timers

__all__ = [
    "ACCEPTED", "CALLING", "CANCEL_BRANCH", "COMPLETED", "CONFIRMED", "DELIVER",
    "PROCEEDING", "SEND", "SEND_ACK", "SEND_TRYING", "TERMINATED", "TERMINATED_STATE",
    "TIMEOUT", "TRANSPORT_ERROR", "TRYING",
    "ClientInvite", "ClientNonInvite", "ServerInvite", "ServerNonInvite", "action_names",
    "MAGIC_COOKIE", "ack_to_tag_matches", "cancel_target_key", "client_key",
    "response_client_key", "server_key",
    "DEFAULT_TIMERS", "Timers",
]
