# SPDX-License-Identifier: Apache-2.0
"""``dbt.dump`` / ``dbt.reload`` on a real ``Server`` whose database is a db_text
directory (text:///DIR), called over real HTTP; what the server sees is checked with real
SIP REGISTERs over UDP on 127.0.0.1 (Digest authentication reads ``subscriber``)."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from mgmt_support import call

from siprouter.mgmt.errors import ErrorCode
from siprouter.script.testing import make_request, sip_text
from siprouter.server import Server
from siprouter.sip.digest import compute_ha1, compute_response


@pytest.fixture
def dbdir(tmp_path: Path) -> Path:
    return tmp_path / "dbtext"


async def _text_server(start_server, dbdir: Path) -> Server:
    # flush_interval=none: only dbt.dump (and stop) write the files, so the test sees
    # what dbt.dump did, not the background write-back.
    return await start_server(database__url=f"text://{dbdir}?flush_interval=none",
                              usrloc__db_mode=1, server__domains=["example.com"])


async def _exchange(server: Server, sock: socket.socket, text: str) -> str:
    loop = asyncio.get_running_loop()
    port = server.transport.sockets[0].port
    await loop.sock_sendto(sock, sip_text(text), ("127.0.0.1", port))
    return (await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)).decode()


async def _register(server: Server, user: str, password: str) -> int:
    """A REGISTER for sip:USER@example.com answered with Digest credentials (RFC 3261
    §22.4); returns the final status of the authenticated attempt."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        here = f"127.0.0.1:{sock.getsockname()[1]}"
        aor = f"sip:{user}@example.com"
        contact = {"Contact": f"<sip:{user}@{here}>"}
        first = await _exchange(server, sock, make_request(
            "REGISTER", "sip:example.com", from_=aor, to=f"<{aor}>", via_host=here,
            headers=contact))
        assert first.startswith("SIP/2.0 401"), first
        challenge = re.search(r"(?im)^WWW-Authenticate: *Digest (.*)$", first).group(1)
        params = dict(re.findall(r'(\w+)="?([^",\r]*)"?', challenge))
        realm, nonce = params["realm"], params["nonce"]
        ha1 = compute_ha1(user, realm, password)
        if params.get("qop"):
            response = compute_response(ha1, nonce, "REGISTER", "sip:example.com",
                                        qop="auth", nc="00000001", cnonce="0a4f113b")
            auth = (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", '
                    f'uri="sip:example.com", response="{response}", qop=auth, '
                    f'nc=00000001, cnonce="0a4f113b"')
        else:
            response = compute_response(ha1, nonce, "REGISTER", "sip:example.com")
            auth = (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", '
                    f'uri="sip:example.com", response="{response}"')
        second = await _exchange(server, sock, make_request(
            "REGISTER", "sip:example.com", from_=aor, to=f"<{aor}>", via_host=here,
            cseq=2, headers={**contact, "Authorization": auth}))
        return int(second.split(None, 2)[1])


async def test_commands_are_listed_and_documented(start_server, dbdir: Path) -> None:
    server = await _text_server(start_server, dbdir)
    names = (await call(server.mgmt.url, "system.listMethods"))["result"]
    assert {"dbt.dump", "dbt.reload"} <= set(names)
    helptext = (await call(server.mgmt.url, "system.methodHelp", ["dbt.reload"]))["result"]
    assert helptext.startswith("dbt.reload(table: str | None = None)")


async def test_a_row_added_to_the_file_is_used_after_reload(start_server,
                                                             dbdir: Path) -> None:
    server = await _text_server(start_server, dbdir)
    url = server.mgmt.url
    subscriber = dbdir / "subscriber"
    assert subscriber.read_text().startswith("id(int,auto) username(string)")
    # Not in the file yet: the credentials are refused.
    assert await _register(server, "carol", "carol-secret") == 401

    with subscriber.open("a") as f:
        f.write("7:carol:example.com:carol-secret::\n")
    # Caching mode: the server goes on with what it loaded until told to read again.
    assert await _register(server, "carol", "carol-secret") == 401
    out = await call(url, "dbt.reload", ["subscriber"])
    assert out["result"] == {"reloaded": [{"database": f"text://{dbdir}?flush_interval=none",
                                           "tables": ["subscriber"]}]}
    assert await _register(server, "carol", "carol-secret") == 200
    assert await _register(server, "carol", "wrong") != 200

    # A reload of everything drops a row removed from the file.
    subscriber.write_text(subscriber.read_text().replace(
        "7:carol:example.com:carol-secret::\n", ""))
    tables = (await call(url, "dbt.reload"))["result"]["reloaded"][0]["tables"]
    assert {"subscriber", "location", "version"} <= set(tables)
    assert await _register(server, "carol", "carol-secret") == 401


async def test_a_change_made_by_the_server_is_written_by_dump(start_server,
                                                              dbdir: Path) -> None:
    server = await _text_server(start_server, dbdir)
    url = server.mgmt.url
    (dbdir / "subscriber").open("a").write("1:dave:example.com:dave-pw::\n")
    await call(url, "dbt.reload", ["subscriber"])
    location = dbdir / "location"
    before = location.read_text()
    assert "dave" not in before

    assert await _register(server, "dave", "dave-pw") == 200  # usrloc saves the binding
    await asyncio.sleep(0.2)
    assert location.read_text() == before  # flush_interval=none: nothing written yet
    out = (await call(url, "dbt.dump"))["result"]
    assert out["dumped"][0]["tables"] == ["location"]
    text = location.read_text()
    assert text.startswith(before.splitlines()[0])  # the same header
    assert re.search(r"(?m)^\d+:[^:\n]*:dave:", text), text  # ruid, username = dave
    assert "sip\\:dave@127.0.0.1" in text  # the contact, ':' escaped as db_text does
    # Nothing changed since: a second dump writes nothing; one table by name is allowed.
    assert (await call(url, "dbt.dump"))["result"]["dumped"][0]["tables"] == []
    assert (await call(url, "dbt.dump", ["location"]))["result"]["dumped"][0]["tables"] == []


async def test_a_bad_row_is_an_error_naming_file_and_line(start_server,
                                                         dbdir: Path) -> None:
    server = await _text_server(start_server, dbdir)
    url = server.mgmt.url
    subscriber = dbdir / "subscriber"
    with subscriber.open("a") as f:
        f.write("1:erin:example.com:erin-pw::\n")
        f.write("not-a-number:frank:example.com:frank-pw::\n")
    out = await call(url, "dbt.reload", ["subscriber"])
    err = out["error"]
    assert err["code"] == ErrorCode.SERVER_ERROR
    assert f"{subscriber}:3: expected column 'id' (int)" in err["message"], err
    assert "Traceback" not in err["message"]
    # The readable rows are in use all the same.
    assert await _register(server, "erin", "erin-pw") == 200

    out = await call(url, "dbt.reload", ["nosuchtable"])
    assert "no table nosuchtable" in out["error"]["message"]
    out = await call(url, "dbt.dump", ["nosuchtable"])
    assert "no table nosuchtable" in out["error"]["message"]


async def test_a_server_on_sqlite_answers_a_clear_error(start_server) -> None:
    server = await start_server()  # the embedded SQLite database
    url = server.mgmt.url
    names = (await call(url, "system.listMethods"))["result"]
    assert {"dbt.dump", "dbt.reload"} <= set(names)
    for method in ("dbt.dump", "dbt.reload"):
        err = (await call(url, method))["error"]
        assert err["code"] == ErrorCode.SERVER_ERROR
        assert err["message"] == ("dbt.* needs a db_text database (text:///DIR); "
                                  "this server uses sqlite")
