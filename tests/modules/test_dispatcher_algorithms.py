# SPDX-License-Identifier: Apache-2.0
"""Dispatcher selection algorithms on requests parsed from SIP text: stickiness and
spread of the hashes, exact fairness of round robin and weights, random against a
chi-square bound, the URI hash flags, skipping, use_default and failover order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from siprouter.modules.dispatcher import (
    ALG_AUTH_USERNAME,
    ALG_CALL_LOAD,
    ALG_CALLID,
    ALG_FROM_URI,
    ALG_HASH_STRING,
    ALG_PARALLEL,
    ALG_PRIORITY,
    ALG_RANDOM,
    ALG_ROUND_ROBIN,
    ALG_RURI,
    ALG_TO_URI,
    ALG_WEIGHT,
    FLAG_HASH_USER_ONLY,
    INACTIVE,
    PROBING,
    Selector,
    compile_hash_template,
    parse_list,
    stable_hash,
    uri_hash_key,
)
from siprouter.sip.errors import LocalProtocolError
from siprouter.sip.message import parse_message
from siprouter.sip.uri import parse_uri

UNKNOWN_ALG = 99
# Chi-square critical value for 5 degrees of freedom at p = 0.001.
CHI2_5DOF_P001 = 20.515


def invite(*, call_id: str = "c1@host", from_uri: str = "sip:alice@a.example",
           to_uri: str = "sip:bob@b.example", ruri: str = "sip:bob@b.example",
           cseq: int = 1, extra: str = "") -> object:
    text = (f"INVITE {ruri} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <{from_uri}>;tag=f1\r\n"
            f"To: <{to_uri}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} INVITE\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n")
    return parse_message(text.encode())


def auth_header(user: str, name: str = "Proxy-Authorization") -> str:
    return (f'{name}: Digest username="{user}", realm="example.com", nonce="n1", '
            'uri="sip:bob@b.example", response="0123456789abcdef0123456789abcdef"\r\n')


def make_set(n: int = 4, setid: int = 1, lines: str = ""):
    text = lines or "".join(f"{setid} sip:10.0.0.{i + 1}\n" for i in range(n))
    return parse_list(text)[setid]


def chosen(sel) -> str:
    return sel.current.uri


# What each hash algorithm hashes: (algorithm, selector options, request for key i, a
# request with the same key but everything else different).
def _req_callid(k, other=False):
    return invite(call_id=k, from_uri=f"sip:x{other}@h", cseq=7 if other else 1)


def _req_from(k, other=False):
    return invite(from_uri=f"sip:{k}@example.com", call_id=f"o{other}{k}")


def _req_to(k, other=False):
    return invite(to_uri=f"sip:{k}@example.com", call_id=f"o{other}{k}")


def _req_ruri(k, other=False):
    return invite(ruri=f"sip:{k}@example.com", call_id=f"o{other}{k}")


def _req_auth(k, other=False):
    name = "Authorization" if other else "Proxy-Authorization"
    return invite(extra=auth_header(k, name), call_id=f"o{other}{k}")


def _req_account(k, other=False):
    return invite(extra=f"X-Account: {k}\r\n", call_id=f"o{other}{k}")


HASHES = [
    pytest.param(ALG_CALLID, {}, _req_callid, id="0-callid"),
    pytest.param(ALG_FROM_URI, {}, _req_from, id="1-from"),
    pytest.param(ALG_TO_URI, {}, _req_to, id="2-to"),
    pytest.param(ALG_RURI, {}, _req_ruri, id="3-ruri"),
    pytest.param(ALG_AUTH_USERNAME, {}, _req_auth, id="5-authuser"),
    pytest.param(ALG_HASH_STRING, {"hash_key": "{header:X-Account}"}, _req_account,
                 id="7-template"),
    pytest.param(ALG_HASH_STRING, {"hash_key": lambda req: req.header("X-Account")},
                 _req_account, id="7-callable"),
]


@pytest.mark.parametrize(("alg", "opts", "build"), HASHES)
def test_hash_sends_the_same_key_to_the_same_destination(alg, opts, build):
    dset = make_set(5)
    selector = Selector(**opts)
    for i in range(50):
        key = f"key{i}-{random.Random(i).getrandbits(32):x}"
        first = chosen(selector.select(dset, alg, build(key)))
        for _ in range(3):
            assert chosen(selector.select(dset, alg, build(key, other=True))) == first


@pytest.mark.parametrize(("alg", "opts", "build"), HASHES)
def test_hash_spreads_10000_keys_within_10_percent(alg, opts, build):
    n, keys = 4, 10_000
    dset = make_set(n)
    selector = Selector(**opts)
    counts = Counter(chosen(selector.select(dset, alg, build(f"user{i}")))
                     for i in range(keys))
    expected = keys / n
    assert len(counts) == n
    for uri, c in counts.items():
        assert abs(c - expected) <= 0.10 * expected, (uri, c)


def test_stable_hash_is_fixed_across_processes():
    # CRC-32 of b"abc" is 0x352441C2; the mix multiplies by 0x9E3779B1 mod 2**32.
    assert stable_hash("abc") == (0x352441C2 * 0x9E3779B1) & 0xFFFFFFFF
    assert stable_hash(b"abc") == stable_hash("abc")


def test_round_robin_is_exactly_fair_and_per_set():
    sets = parse_list("1 sip:10.0.0.1\n1 sip:10.0.0.2\n1 sip:10.0.0.3\n"
                      "2 sip:10.0.1.1\n2 sip:10.0.1.2\n")
    selector = Selector()
    req = invite()
    seq1 = [chosen(selector.select(sets[1], ALG_ROUND_ROBIN, req)) for _ in range(300)]
    seq2 = [chosen(selector.select(sets[2], ALG_ROUND_ROBIN, req)) for _ in range(7)]
    assert Counter(seq1) == {"sip:10.0.0.1": 100, "sip:10.0.0.2": 100, "sip:10.0.0.3": 100}
    assert seq1[:4] == ["sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3", "sip:10.0.0.1"]
    # Set 2 rotates on its own, untouched by set 1's 300 selections.
    assert seq2 == ["sip:10.0.1.1", "sip:10.0.1.2"] * 3 + ["sip:10.0.1.1"]


def test_round_robin_stays_fair_when_a_destination_is_skipped():
    dset = make_set(4)
    dset.destinations[1].state = INACTIVE
    selector = Selector()
    seq = [chosen(selector.select(dset, ALG_ROUND_ROBIN, invite())) for _ in range(300)]
    assert Counter(seq) == {"sip:10.0.0.1": 100, "sip:10.0.0.3": 100, "sip:10.0.0.4": 100}


def test_auth_username_without_credentials_falls_back_to_round_robin():
    dset = make_set(3)
    selector = Selector()
    seq = [chosen(selector.select(dset, ALG_AUTH_USERNAME, invite())) for _ in range(6)]
    assert seq == ["sip:10.0.0.1", "sip:10.0.0.2", "sip:10.0.0.3"] * 2


def test_random_passes_chi_square():
    n, draws = 6, 60_000
    dset = make_set(n)
    selector = Selector(rng=random.Random(20261126))
    req = invite()
    counts = Counter(chosen(selector.select(dset, ALG_RANDOM, req)) for _ in range(draws))
    expected = draws / n
    chi2 = sum((counts[d.uri] - expected) ** 2 / expected for d in dset)
    assert len(counts) == n
    assert chi2 < CHI2_5DOF_P001


def test_flag_1_hashes_the_username_only():
    a = parse_uri("sip:alice@a.example")
    b = parse_uri("sip:alice@b.example:5080")
    assert uri_hash_key(a, FLAG_HASH_USER_ONLY) == uri_hash_key(b, FLAG_HASH_USER_ONLY)
    assert uri_hash_key(a) != uri_hash_key(b)
    dset = make_set(16)
    user_only = Selector(flags=FLAG_HASH_USER_ONLY)
    full = Selector()
    picks_user_only = set()
    picks_full = set()
    for host in ("a.example", "b.example:5080", "10.1.2.3", "c.example:7000", "d.example"):
        req = invite(from_uri=f"sip:alice@{host}")
        picks_user_only.add(chosen(user_only.select(dset, ALG_FROM_URI, req)))
        picks_full.add(chosen(full.select(dset, ALG_FROM_URI, req)))
    assert len(picks_user_only) == 1
    assert len(picks_full) > 1


@pytest.mark.parametrize(("x", "y", "same"), [
    ("sip:alice@h.example", "sip:alice@h.example:5060", True),
    ("sips:alice@h.example", "sips:alice@h.example:5061", True),
    ("sip:alice@h.example", "sip:alice@h.example:5061", False),
    ("sips:alice@h.example", "sips:alice@h.example:5060", False),
    ("sip:alice@h.example:5070", "sip:alice@h.example:5080", False),
    ("sip:alice@h.example;transport=tcp", "sip:alice@h.example", True),
])
def test_port_counts_only_when_not_the_scheme_default(x, y, same):
    kx, ky = uri_hash_key(parse_uri(x)), uri_hash_key(parse_uri(y))
    assert (kx == ky) is same
    dset = make_set(8)
    if same:
        sel = Selector()
        assert chosen(sel.select(dset, ALG_RURI, invite(ruri=x))) == \
            chosen(sel.select(dset, ALG_RURI, invite(ruri=y)))


def test_unknown_algorithm_picks_the_first_entry():
    dset = make_set(4)
    selector = Selector()
    for i in range(5):
        sel = selector.select(dset, UNKNOWN_ALG, invite(call_id=f"c{i}"))
        assert chosen(sel) == "sip:10.0.0.1"
    dset.destinations[0].state = PROBING
    assert chosen(selector.select(dset, UNKNOWN_ALG, invite())) == "sip:10.0.0.2"


def test_inactive_and_probing_destinations_are_never_selected():
    dset = make_set(4)
    dset.destinations[0].state = INACTIVE
    dset.destinations[2].state = PROBING
    selector = Selector(rng=random.Random(1))
    for alg in (ALG_CALLID, ALG_FROM_URI, ALG_ROUND_ROBIN, ALG_RANDOM, ALG_PRIORITY,
                ALG_WEIGHT, UNKNOWN_ALG):
        for i in range(200):
            sel = selector.select(dset, alg, invite(call_id=f"k{i}",
                                                    from_uri=f"sip:u{i}@h"))
            assert {d.uri for d in sel.candidates} <= {"sip:10.0.0.2", "sip:10.0.0.4"}
            assert len(sel.candidates) == 2


def test_no_usable_destination_gives_an_empty_selection():
    dset = make_set(2)
    for d in dset:
        d.state = INACTIVE
    sel = Selector().select(dset, ALG_CALLID, invite())
    assert not sel and sel.current is None and sel.next_destination() is None


def test_failover_walks_the_remaining_destinations_in_order():
    dset = make_set(4)
    dset.destinations[2].state = INACTIVE
    selector = Selector()
    sel = selector.select(dset, ALG_ROUND_ROBIN, invite())
    sel = selector.select(dset, ALG_ROUND_ROBIN, invite())  # second in the rotation
    assert [d.uri for d in sel.candidates] == ["sip:10.0.0.2", "sip:10.0.0.4",
                                               "sip:10.0.0.1"]
    assert [d.uri for d in sel.remaining] == ["sip:10.0.0.4", "sip:10.0.0.1"]
    assert sel.next_destination().uri == "sip:10.0.0.4"
    assert sel.next_destination().uri == "sip:10.0.0.1"
    assert sel.next_destination() is None
    assert sel.next_destination() is None and sel.remaining == []


class TestUseDefault:
    def test_last_destination_is_only_the_last_resort(self):
        dset = make_set(4)
        selector = Selector(use_default=True, rng=random.Random(3))
        for alg in (ALG_CALLID, ALG_ROUND_ROBIN, ALG_RANDOM, ALG_PRIORITY):
            for i in range(100):
                sel = selector.select(dset, alg, invite(call_id=f"c{i}"))
                assert chosen(sel) != "sip:10.0.0.4"
                assert sel.candidates[-1].uri == "sip:10.0.0.4"
                assert len(sel.candidates) == 4

    def test_round_robin_rotates_over_the_others(self):
        dset = make_set(4)
        selector = Selector(use_default=True)
        seq = [chosen(selector.select(dset, ALG_ROUND_ROBIN, invite())) for _ in range(90)]
        assert Counter(seq) == {"sip:10.0.0.1": 30, "sip:10.0.0.2": 30, "sip:10.0.0.3": 30}

    def test_default_is_chosen_when_the_others_are_down(self):
        dset = make_set(3)
        dset.destinations[0].state = INACTIVE
        dset.destinations[1].state = PROBING
        sel = Selector(use_default=True).select(dset, ALG_CALLID, invite())
        assert [d.uri for d in sel.candidates] == ["sip:10.0.0.3"]
        assert not Selector().select(dset, ALG_CALLID, invite()).candidates[:-1]

    def test_without_use_default_the_last_one_is_an_ordinary_member(self):
        dset = make_set(4)
        selector = Selector()
        seq = [chosen(selector.select(dset, ALG_ROUND_ROBIN, invite())) for _ in range(4)]
        assert seq[-1] == "sip:10.0.0.4"

    def test_a_single_destination_set_still_selects_it(self):
        sel = Selector(use_default=True).select(make_set(1), ALG_CALLID, invite())
        assert [d.uri for d in sel.candidates] == ["sip:10.0.0.1"]


def test_priority_picks_the_highest_usable_first():
    dset = make_set(lines="1 sip:10.0.0.1 0 1\n1 sip:10.0.0.2 0 30\n1 sip:10.0.0.3 0 20\n")
    selector = Selector()
    sel = selector.select(dset, ALG_PRIORITY, invite())
    assert [d.uri for d in sel.candidates] == ["sip:10.0.0.2", "sip:10.0.0.3",
                                               "sip:10.0.0.1"]
    dset.destinations[0].state = INACTIVE
    assert chosen(selector.select(dset, ALG_PRIORITY, invite())) == "sip:10.0.0.3"


def test_weights_give_exact_shares():
    dset = make_set(lines="1 sip:10.0.0.1 0 0 weight=50\n1 sip:10.0.0.2 0 0 weight=30\n"
                          "1 sip:10.0.0.3 0 0 weight=20\n1 sip:10.0.0.4 0 0 weight=0\n")
    selector = Selector()
    seq = [chosen(selector.select(dset, ALG_WEIGHT, invite())) for _ in range(300)]
    assert Counter(seq) == {"sip:10.0.0.1": 150, "sip:10.0.0.2": 90, "sip:10.0.0.3": 60}
    # Interleaved, not in blocks.
    assert seq[:3] != ["sip:10.0.0.1"] * 3
    # The weight-0 one is still a failover candidate.
    sel = selector.select(dset, ALG_WEIGHT, invite())
    assert "sip:10.0.0.4" in [d.uri for d in sel.candidates]


def test_weights_all_zero_share_equally():
    dset = make_set(3)
    selector = Selector()
    seq = [chosen(selector.select(dset, ALG_WEIGHT, invite())) for _ in range(30)]
    assert Counter(seq) == {"sip:10.0.0.1": 10, "sip:10.0.0.2": 10, "sip:10.0.0.3": 10}


def test_call_load_picks_the_least_loaded_below_maxload():
    dset = make_set(lines="1 sip:10.0.0.1 0 0 duid=a;maxload=5\n"
                          "1 sip:10.0.0.2 0 0 duid=b;maxload=5\n"
                          "1 sip:10.0.0.3 0 0 maxload=0\n")
    calls = {"a": 3, "b": 1, "sip:10.0.0.3": 2}
    selector = Selector(active_calls=calls)
    sel = selector.select(dset, ALG_CALL_LOAD, invite())
    assert [d.uri for d in sel.candidates] == ["sip:10.0.0.2", "sip:10.0.0.3",
                                               "sip:10.0.0.1"]
    calls.update(a=5, b=5)  # both at maxload: only the unlimited one is left
    sel = selector.select(dset, ALG_CALL_LOAD, invite())
    assert [d.uri for d in sel.candidates] == ["sip:10.0.0.3"]
    by_callable = Selector(active_calls=lambda d: {"a": 0}.get(d.duid, 9))
    assert chosen(by_callable.select(dset, ALG_CALL_LOAD, invite())) == "sip:10.0.0.1"
    with pytest.raises(LocalProtocolError):
        Selector().select(dset, ALG_CALL_LOAD, invite())


def test_parallel_selects_every_usable_destination():
    dset = make_set(4)
    dset.destinations[1].state = INACTIVE
    sel = Selector().select(dset, ALG_PARALLEL, invite())
    assert sel.parallel
    assert [d.uri for d in sel.candidates] == ["sip:10.0.0.1", "sip:10.0.0.3",
                                               "sip:10.0.0.4"]


class TestHashString:
    def test_template_fields(self):
        key = compile_hash_template("{from_user}|{to_host}|{header:X-A}|{method}|{call_id}")
        req = invite(from_uri="sip:al@a.example", to_uri="sip:bo@b.example:5070",
                     call_id="cid", extra="X-A: 42\r\n")
        assert key(req) == "al|b.example|42|INVITE|cid"
        assert compile_hash_template("{header:X-Missing}x")(req) == "x"

    def test_bad_templates_are_refused(self):
        for bad in ("{nope}", "{header}", "{call_id!r}", "{call_id", "{ruri:>5}"):
            with pytest.raises(LocalProtocolError):
                compile_hash_template(bad)

    def test_without_hash_key_is_an_error(self):
        with pytest.raises(LocalProtocolError, match="hash_pvar"):
            Selector().select(make_set(2), ALG_HASH_STRING, invite())

    def test_empty_key_selects_nothing(self):
        sel = Selector(hash_key="{header:X-Account}").select(make_set(2), ALG_HASH_STRING,
                                                             invite())
        assert not sel
