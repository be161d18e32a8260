# SPDX-License-Identifier: Apache-2.0
"""Dispatcher destination sets: the list file format and database rows, good and bad
(a bad entry rejects the whole list, naming every problem with its file and line)."""

from __future__ import annotations

import pytest

from siprouter.modules.dispatcher import (
    INACTIVE,
    PROBING,
    Destination,
    DestinationSet,
    DispatcherListError,
    load_list_file,
    parse_attrs,
    parse_list,
    parse_state,
    sets_from_rows,
)

GOOD_LIST = """\
# gateways
1 sip:10.0.0.1:5060

1   sip:gw2.example.com;transport=tcp   1
   # indented comment
2 sip:10.0.1.1 2 10 weight=50;duid=pstn1;maxload=20
2 sip:10.0.1.2 3 20
2 sips:10.0.1.3:5061 0 10 duid=pstn3
"""


def test_good_list_file_sets_flags_priority_attrs(tmp_path):
    path = tmp_path / "dispatcher.list"
    path.write_text(GOOD_LIST)
    sets = load_list_file(path)
    assert sorted(sets) == [1, 2]
    one = sets[1]
    assert [d.uri for d in one] == ["sip:10.0.0.1:5060", "sip:gw2.example.com;transport=tcp"]
    assert [d.state for d in one] == [0, INACTIVE]
    assert one.destinations[0].usable and not one.destinations[1].usable
    assert one.destinations[0].sip_uri.host == "10.0.0.1"
    assert one.destinations[0].sip_uri.port == 5060

    two = sets[2]
    # Higher priority first; equal priorities keep the file's order.
    assert [d.uri for d in two] == ["sip:10.0.1.2", "sip:10.0.1.1", "sips:10.0.1.3:5061"]
    p20, p10a, p10b = two.destinations
    assert (p20.priority, p20.state, p20.state_name) == (20, INACTIVE | PROBING,
                                                        "inactive,probing")
    assert p10a.state == PROBING and p10a.state_name == "probing"
    assert p10a.attrs == {"weight": 50, "duid": "pstn1", "maxload": 20}
    assert (p10a.weight, p10a.duid, p10a.maxload) == (50, "pstn1", 20)
    assert (p10b.weight, p10b.duid, p10b.maxload) == (0, "pstn3", 0)
    assert p10b.setid == 2 and p10b.sip_uri.scheme == "sips"
    assert two.find("sip:10.0.1.1") is p10a
    assert two.find("sip:10.9.9.9") is None


def test_empty_and_comment_only_lists_give_no_sets():
    assert parse_list("") == {}
    assert parse_list("# nothing\n\n   \n#1 sip:10.0.0.1\n") == {}


def test_bad_lines_reject_the_whole_file_with_every_problem(tmp_path):
    path = tmp_path / "dispatcher.list"
    path.write_text(
        "1 sip:10.0.0.1\n"            # 1 good
        "x sip:10.0.0.2\n"            # 2 bad set id
        "# comment\n"                 # 3
        "1 http://10.0.0.3\n"         # 4 not a SIP URI
        "1 sip:10.0.0.4 nope\n"       # 5 bad flags
        "1 sip:10.0.0.5 0 high\n"     # 6 bad priority
        "1 sip:10.0.0.6 0 0 weight\n"  # 7 bad attributes
        "1\n"                         # 8 no URI
        "1 sip:10.0.0.7 0 0 a=b extra\n"  # 9 too many fields
        "1 sip:10.0.0.8 0 0 maxload=-1\n"  # 10 bad maxload
        "1 sip:@@@\n"                 # 11 unparseable URI
    )
    with pytest.raises(DispatcherListError) as info:
        load_list_file(path)
    problems = info.value.problems
    lines = [int(p.split(":")[1]) for p in problems]
    assert lines == [2, 4, 5, 6, 7, 8, 9, 10, 11]
    for p in problems:
        assert p.startswith(f"{path}:")
        assert ": expected " in p
    assert "set id" in problems[0]
    assert "SIP URI" in problems[1]
    assert "flags" in problems[2]
    assert "priority" in problems[3]
    assert "name=value" in problems[4]
    assert "maxload" in problems[7]
    assert str(info.value).count("\n") == len(problems) - 1


def test_one_bad_line_rejects_all_good_ones():
    with pytest.raises(DispatcherListError) as info:
        parse_list("1 sip:10.0.0.1\n2 sip:10.0.0.2\n3 sip:10.0.0.3 x\n", "ds.list")
    assert info.value.problems == [
        "ds.list:3: expected flags as a non-negative integer (1 inactive, 2 probing), "
        "got 'x'"]


def test_unreadable_file_is_a_list_error(tmp_path):
    missing = tmp_path / "nope.list"
    with pytest.raises(DispatcherListError) as info:
        load_list_file(missing)
    assert info.value.problems[0].startswith(f"{missing}: expected a readable")


def test_parse_attrs():
    assert parse_attrs("weight=5; duid=a ;maxload=3;") == {"weight": 5, "duid": "a",
                                                           "maxload": 3}
    assert parse_attrs("socket=udp:1.2.3.4:5060") == {"socket": "udp:1.2.3.4:5060"}
    with pytest.raises(ValueError, match="expected weight"):
        parse_attrs("weight=heavy")
    with pytest.raises(ValueError, match="expected attributes"):
        parse_attrs("=x")


def test_sets_from_rows_with_kamailio_and_custom_columns():
    rows = [
        {"setid": 1, "destination": "sip:10.0.0.1", "flags": 0, "priority": 0,
         "attrs": ""},
        {"setid": 1, "destination": "sip:10.0.0.2", "flags": 2, "priority": 5,
         "attrs": "weight=10"},
        {"setid": 3, "destination": "sip:10.0.0.3", "flags": None, "priority": None,
         "attrs": None},
    ]
    sets = sets_from_rows(rows)
    assert [d.uri for d in sets[1]] == ["sip:10.0.0.2", "sip:10.0.0.1"]
    assert sets[1].destinations[0].state == PROBING
    assert sets[1].destinations[0].weight == 10
    assert sets[3].destinations[0].state == 0

    custom = [{"groupid": "7", "uri": "sip:10.0.0.9", "dstflags": "1"}]
    sets = sets_from_rows(custom, setid_col="groupid", destination_col="uri",
                          flags_col="dstflags")
    assert sets[7].destinations[0].state == INACTIVE
    assert sets[7].destinations[0].priority == 0


def test_bad_rows_reject_the_table():
    rows = [{"setid": 1, "destination": "sip:10.0.0.1"},
            {"setid": "one", "destination": "sip:10.0.0.2"},
            {"setid": 2, "destination": None}]
    with pytest.raises(DispatcherListError) as info:
        sets_from_rows(rows, table_name="my_dispatcher")
    assert [p.split(":")[0] for p in info.value.problems] == ["my_dispatcher row 2",
                                                               "my_dispatcher row 3"]


def test_destination_and_set_directly():
    d = Destination(4, "sip:10.0.0.1", 0, 0, {"weight": 2})
    assert d.usable and d.state_name == "active" and d.weight == 2
    d.state = INACTIVE
    assert not d.usable and d.state_name == "inactive"
    s = DestinationSet(4, [d])
    assert len(s) == 1 and list(s) == [d] and s.setid == 4


@pytest.mark.parametrize(("text", "state"), [
    ("a", 0), ("A", 0), ("1", 0), ("i", INACTIVE), ("I", INACTIVE), ("0", INACTIVE),
    ("p", PROBING), ("P", PROBING), ("2", PROBING), ("ip", INACTIVE | PROBING),
])
def test_parse_state_letters(text, state):
    assert parse_state(text) == state


def test_parse_state_refuses_others():
    for bad in ("", "x", "3", "active"):
        with pytest.raises(ValueError, match="expected a state"):
            parse_state(bad)


def test_as_dict_for_listing():
    d = parse_list("5 sip:10.0.0.1 2 7 duid=x\n")[5].destinations[0]
    assert d.as_dict() == {"uri": "sip:10.0.0.1", "state": "probing", "flags": PROBING,
                           "priority": 7, "attrs": {"duid": "x"}}
