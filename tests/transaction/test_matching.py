"""Transaction matching (RFC 3261 §17.1.3, §17.2.3, §9.2): keys of requests and responses."""

from __future__ import annotations

import pytest

from siprouter.sip.errors import SipParseError
from siprouter.sip.message import parse_message
from siprouter.transaction.matching import (
    MAGIC_COOKIE,
    ack_to_tag_matches,
    cancel_target_key,
    client_key,
    response_client_key,
    server_key,
)

BRANCH = MAGIC_COOKIE + "776asdhds"


def request(method="INVITE", *, via="SIP/2.0/UDP pc33.atlanta.example.com;branch=" + BRANCH,
            ruri="sip:bob@biloxi.example.com", to_tag=None, from_tag="1928301774",
            call_id="a84b4c76e66710", cseq=None):
    to = "Bob <sip:bob@biloxi.example.com>" + (f";tag={to_tag}" if to_tag else "")
    cseq = cseq or f"314159 {'INVITE' if method == 'ACK' else method}"
    lines = [f"{method} {ruri} SIP/2.0"]
    if via is not None:
        lines.append(f"Via: {via}")
    lines += [
        "Max-Forwards: 70",
        f"To: {to}",
        f"From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq}",
        "Content-Length: 0",
    ]
    return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())


def response(status=180, *, branch="z9hG4bKproxy1", method="INVITE"):
    via = (f"SIP/2.0/UDP proxy.example.com;branch={branch}, "
           f"SIP/2.0/UDP pc33.atlanta.example.com;branch={BRANCH}") if branch else \
        "SIP/2.0/UDP proxy.example.com"
    text = (f"SIP/2.0 {status} Whatever\r\nVia: {via}\r\n"
            "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
            "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
            f"Call-ID: a84b4c76e66710\r\nCSeq: 314159 {method}\r\nContent-Length: 0\r\n\r\n")
    return parse_message(text.encode())


# -- RFC 3261 requests: branch, sent-by, method ------------------------------------------------

def test_3261_key_is_branch_sent_by_and_method():
    assert server_key(request()) == ("3261", BRANCH, "pc33.atlanta.example.com", None, "INVITE")


def test_retransmission_has_the_same_key_and_another_branch_does_not():
    assert server_key(request()) == server_key(request())
    other = request(via="SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKother")
    assert server_key(other) != server_key(request())


def test_ack_matches_its_invite():
    # §17.2.3: "the method of the request matches the one that created the transaction,
    # except for ACK, where the method of the request that created the transaction is INVITE".
    ack = request("ACK", to_tag="a6c85cf")
    assert server_key(ack) == server_key(request())


def test_cancel_has_its_own_key_and_names_the_invite():
    cancel = request("CANCEL")
    invite = request()
    assert server_key(cancel) != server_key(invite)
    assert server_key(cancel)[-1] == "CANCEL"
    assert cancel_target_key(cancel) == server_key(invite)


def test_other_methods_with_the_same_branch_are_other_transactions():
    assert server_key(request("BYE")) != server_key(request())
    assert server_key(request("BYE"))[-1] == "BYE"


def test_sent_by_host_is_compared_without_case():
    upper = request(via="SIP/2.0/UDP PC33.Atlanta.EXAMPLE.com;branch=" + BRANCH)
    assert server_key(upper) == server_key(request())


def test_sent_by_port_and_host_are_part_of_the_key():
    with_port = request(via=f"SIP/2.0/UDP pc33.atlanta.example.com:5070;branch={BRANCH}")
    other_host = request(via=f"SIP/2.0/UDP 192.0.2.1;branch={BRANCH}")
    keys = {server_key(request()), server_key(with_port), server_key(other_host)}
    assert len(keys) == 3
    assert server_key(with_port)[3] == 5070


def test_3261_key_ignores_everything_but_the_via_and_method():
    # A retransmission is recognised by the branch alone; From, Call-ID, R-URI don't count.
    assert server_key(request(call_id="zzz", ruri="sip:x@y")) == server_key(request())


def test_cookie_is_case_sensitive():
    # "z9hG4bK" exactly (§8.1.1.7); anything else falls back to the RFC 2543 rules.
    r = request(via="SIP/2.0/UDP pc33.atlanta.example.com;branch=Z9HG4BK776asdhds")
    assert server_key(r)[0] == "2543"


def test_no_via_is_a_parse_error():
    with pytest.raises(SipParseError) as info:
        server_key(request(via=None))
    assert info.value.status_hint == 400
    with pytest.raises(SipParseError):
        cancel_target_key(request("CANCEL", via=None))


# -- RFC 2543 fallback -------------------------------------------------------------------------

OLD_VIA = "SIP/2.0/UDP pc33.atlanta.example.com;branch=776asdhds"
NO_BRANCH = "SIP/2.0/UDP pc33.atlanta.example.com"


@pytest.mark.parametrize("via", [OLD_VIA, NO_BRANCH], ids=["old-branch", "no-branch"])
def test_2543_retransmission_matches(via):
    key = server_key(request(via=via))
    assert key[0] == "2543"
    assert server_key(request(via=via)) == key


@pytest.mark.parametrize("change", [
    {"ruri": "sip:carol@biloxi.example.com"},
    {"from_tag": "other"},
    {"call_id": "other"},
    {"cseq": "314160 INVITE"},
    {"via": "SIP/2.0/UDP pc34.atlanta.example.com"},
    {"via": "SIP/2.0/TCP pc33.atlanta.example.com"},
    {"via": "SIP/2.0/UDP pc33.atlanta.example.com:5070"},
    {"via": "SIP/2.0/UDP pc33.atlanta.example.com;branch=1"},
])
def test_2543_each_field_counts(change):
    base = dict(via=NO_BRANCH)
    base.update(change)
    assert server_key(request(**base)) != server_key(request(via=NO_BRANCH))


def test_2543_ack_matches_invite_and_to_tag_is_checked_separately():
    invite = request(via=NO_BRANCH)
    ack = request("ACK", via=NO_BRANCH, to_tag="srv-tag")
    assert server_key(ack) == server_key(invite)
    assert ack_to_tag_matches(ack, "srv-tag")
    assert not ack_to_tag_matches(ack, "other-tag")
    assert not ack_to_tag_matches(ack, None)


def test_2543_ack_for_another_cseq_does_not_match():
    ack = request("ACK", via=NO_BRANCH, to_tag="t", cseq="314160 ACK")
    assert server_key(ack) != server_key(request(via=NO_BRANCH))


def test_3261_ack_to_tag_always_matches():
    assert ack_to_tag_matches(request("ACK", to_tag="whatever"), "srv-tag")


def test_2543_cancel_names_the_invite():
    invite = request(via=NO_BRANCH)
    cancel = request("CANCEL", via=NO_BRANCH)
    assert server_key(cancel) != server_key(invite)
    assert cancel_target_key(cancel) == server_key(invite)


def test_2543_non_invite_key_includes_the_to_tag():
    # §17.2.3: "Request-URI, To tag, From tag, Call-ID, CSeq (including the method), and
    # top Via"; only INVITE/ACK leave the To tag to ack_to_tag_matches.
    a = request("BYE", via=NO_BRANCH, to_tag="one")
    b = request("BYE", via=NO_BRANCH, to_tag="two")
    assert server_key(a) != server_key(b)
    assert server_key(a) == server_key(request("BYE", via=NO_BRANCH, to_tag="one"))


def test_2543_key_is_unchanged_by_received_and_rport_stamping():
    # The proxy core stamps received/rport into the top Via (§18.2.1, RFC 3581): a key
    # computed after that must equal one computed before.
    before = server_key(request(via=NO_BRANCH + ";rport"))
    stamped = request(via=NO_BRANCH + ";rport")
    stamped.replace_top_via(NO_BRANCH + ";rport=5062;received=192.0.2.9")
    assert server_key(stamped) == before


def test_2543_via_parameter_order_and_case_do_not_matter():
    a = request(via=NO_BRANCH + ";ttl=16;maddr=239.1.1.1")
    b = request(via=NO_BRANCH + ";MADDR=239.1.1.1;ttl=16")
    assert server_key(a) == server_key(b)


# -- responses to client transactions (§17.1.3) ------------------------------------------------

def test_response_key_is_branch_and_cseq_method():
    res = response(180)
    assert response_client_key(res) == client_key("z9hG4bKproxy1", "INVITE")


def test_cancel_response_matches_the_cancel_transaction_not_the_invite():
    res = response(200, method="CANCEL")
    assert response_client_key(res) == client_key("z9hG4bKproxy1", "CANCEL")
    assert response_client_key(res) != client_key("z9hG4bKproxy1", "INVITE")


def test_response_with_a_foreign_branch_matches_nothing_we_sent():
    ours = {client_key("z9hG4bKproxy1", "INVITE")}
    assert response_client_key(response(200, branch="z9hG4bKsomeoneelse")) not in ours


def test_response_without_branch_or_for_ack_has_no_key():
    assert response_client_key(response(200, branch=None)) is None
    assert response_client_key(response(200, method="ACK")) is None


def test_response_with_a_bad_via_is_a_parse_error():
    res = parse_message(b"SIP/2.0 200 OK\r\nVia: garbage here here\r\nCSeq: 1 INVITE\r\n"
                        b"Content-Length: 0\r\n\r\n")
    with pytest.raises(SipParseError):
        response_client_key(res)
