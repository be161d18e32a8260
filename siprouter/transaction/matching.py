# SPDX-License-Identifier: Apache-2.0
"""Which transaction a message belongs to (RFC 3261 §17.1.3, §17.2.3, §9.2).

Keys are plain tuples, to be used as dict keys by whoever stores the transactions.

Server side (§17.2.3): a request whose top Via branch starts with the magic cookie
``z9hG4bK`` was sent by an RFC 3261 client; its transaction is named by the branch, the
sent-by of the top Via and the method, with ACK counted as INVITE (an ACK for a non-2xx
final belongs to the INVITE's transaction). Otherwise the RFC 2543 rules apply: the
Request-URI, From tag, Call-ID, CSeq number, top Via and method, and -- for methods other
than INVITE/ACK -- the To tag. For INVITE and ACK the To tag is left out of the key,
because the ACK carries the tag of the response while the INVITE usually carries none;
the RFC asks that the ACK's To tag equal the tag of the response the server sent, which
the caller checks with :func:`ack_to_tag_matches`.

Client side (§17.1.3): a response names its client transaction by the branch of its top
Via and the method in its CSeq (a CANCEL shares its INVITE's branch).
"""

from __future__ import annotations

from siprouter.sip.errors import SipParseError

__all__ = [
    "MAGIC_COOKIE",
    "server_key",
    "cancel_target_key",
    "client_key",
    "response_client_key",
    "ack_to_tag_matches",
]

MAGIC_COOKIE = "z9hG4bK"

# Parameters this server itself adds to the top Via of a received request (§18.2.1,
# RFC 3581 §4); they are left out of the RFC 2543 Via comparison so that a key computed
# after the received/rport stamping equals one computed before.
_STAMPED_VIA_PARAMS = frozenset(("received", "rport"))


def _top_via(msg):
    via = msg.top_via
    if via is None:
        raise SipParseError("Missing Via", 400)
    return via


def _key_2543(req, via, method: str) -> tuple:
    # §17.2.3, for requests from RFC 2543 clients: "the Request-URI, To tag, From tag,
    # Call-ID, CSeq, and top Via header field match those of the request which created the
    # transaction" (ACK: CSeq number only, To tag against the response's, see the module
    # docstring). The Request-URI is compared as written: retransmissions repeat it.
    params = tuple(sorted((k, v) for k, v in via.params.items() if k not in _STAMPED_VIA_PARAMS))
    top_via = (via.transport, via.host, via.port, params)
    to_tag = None if method == "INVITE" else req.to.tag
    return ("2543", req.ruri, to_tag, req.from_.tag, req.call_id, req.cseq.seq, top_via, method)


def server_key(req) -> tuple:
    """The key of the server transaction a request belongs to (§17.2.3).

    An ACK gets its INVITE's key (it matches the INVITE transaction it acknowledges);
    a CANCEL gets a key of its own (use :func:`cancel_target_key` for the INVITE's).

    :raises SipParseError: no top Via, or one that does not parse (and, for RFC 2543
        requests, a bad From, To or CSeq).
    """
    # Flat on purpose: this runs for every request the proxy receives.
    via = req.top_via
    if via is None:
        raise SipParseError("Missing Via", 400)
    method = req.method
    if method == "ACK":
        method = "INVITE"
    branch = via.params.get("branch")
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        # §17.2.3: branch, sent-by (host lower-cased by the Via parser) and method.
        return ("3261", branch, via.host, via.port, method)
    return _key_2543(req, via, method)


def cancel_target_key(cancel_req) -> tuple:
    """The key of the INVITE server transaction a CANCEL cancels (§9.2: the CANCEL is
    matched as if its method were the INVITE's).

    :raises SipParseError: as :func:`server_key`.
    """
    via = _top_via(cancel_req)
    branch = via.params.get("branch")
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, via.host, via.port, "INVITE")
    return _key_2543(cancel_req, via, "INVITE")


def client_key(branch: str, method: str) -> tuple:
    """The key under which to store a client transaction sent with ``branch`` (§17.1.3).

    For an ACK there is no client transaction; CANCEL has its own (same branch).
    """
    return (branch, method)


def response_client_key(res) -> tuple | None:
    """The key of the client transaction a response belongs to (§17.1.3): the branch of
    its top Via and its CSeq method; None when it cannot match any (no Via or branch, or
    a CSeq method of ACK, which never has a client transaction).

    :raises SipParseError: a top Via or CSeq that does not parse.
    """
    via = res.top_via
    if via is None:
        return None
    branch = via.params.get("branch")
    if branch is None:
        return None
    method = res.cseq.method
    if method == "ACK":
        return None
    return (branch, method)


def ack_to_tag_matches(ack, sent_to_tag: str | None) -> bool:
    """Does an ACK that matched an INVITE server transaction acknowledge the response
    this server sent (the RFC 2543 rule of §17.2.3: the ACK's To tag equals the To tag
    of that response)? Always True for an ACK from an RFC 3261 client, whose branch
    already tells: an ACK for a 2xx has a branch of its own.

    :raises SipParseError: a top Via or To that does not parse.
    """
    via = _top_via(ack)
    branch = via.params.get("branch")
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return True
    return ack.to.tag == sent_to_tag
