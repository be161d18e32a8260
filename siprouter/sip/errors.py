# SPDX-License-Identifier: Apache-2.0
"""The two error families of the pure layers (see STYLE.md §2).

``RemoteProtocolError``: the peer sent something we cannot accept. It carries the
status to answer with (``status_hint``) and a short, fixed reason phrase. Neither the
exception text nor any received bytes ever go back to the peer: the transport boundary
builds the reply from ``status_hint`` and ``reason`` only.

``LocalProtocolError``: our code or an operator's script misused the API (a second
terminal action on one request, an edit on a header that cannot be edited ...).
"""

from __future__ import annotations

__all__ = ["RemoteProtocolError", "SipParseError", "LocalProtocolError"]


class RemoteProtocolError(Exception):
    """The peer sent bad input.

    :param reason: short fixed reason phrase, safe to send to the peer (e.g. "Bad Via").
    :param status_hint: status to answer a request with (400, 413, 416, 420, 505, 513 …),
        or ``None`` when the message must be dropped without an answer.
    :param detail: free text for logs only; never sent.
    """

    def __init__(self, reason: str, status_hint: int | None = 400, detail: str = "") -> None:
        super().__init__(f"{status_hint} {reason}" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.status_hint = status_hint
        self.detail = detail


class SipParseError(RemoteProtocolError):
    """Bytes that do not form an acceptable SIP message (RFC 3261 §7, §25)."""


class LocalProtocolError(Exception):
    """Our own code, or the operator's routing script, used the API wrongly."""
