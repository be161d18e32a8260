# SPDX-License-Identifier: Apache-2.0
"""siprouter.config: defaults, file loading, overrides, and that every error names the
file, the key, the bad value and what is expected."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from siprouter.config import (
    DEFAULT_LISTEN,
    DEFAULT_SCRIPT,
    Config,
    ConfigError,
    ListenSpec,
    default_data_dir,
    load_config,
    render_docs,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a siprouter.toml in a temporary directory and return its path *as the operator
    would type it* (relative, cwd = that directory)."""
    monkeypatch.chdir(tmp_path)

    def _write(text: str, name: str = "siprouter.toml") -> Path:
        (tmp_path / name).write_text(text, encoding="utf-8")
        return Path(name)

    return _write


def error_of(path: Path | None, overrides: dict | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value


# --- defaults -------------------------------------------------------------------------------


def test_no_file_gives_embedded_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    config = load_config(None, {})
    assert config.source is None
    assert config.server.listen == (
        ListenSpec("udp", "127.0.0.1", 5060),
        ListenSpec("tcp", "127.0.0.1", 5060),
    )
    assert config.listen_is_default
    assert config.server.domains == ()
    assert config.server.hostname == socket.gethostname()
    assert config.server.data_dir == tmp_path / "xdg" / "siprouter"
    assert config.routing.script == DEFAULT_SCRIPT
    assert config.routing.next_hop is None
    assert config.routing.reload_on_change is True
    assert dict(config.routing.params) == {}
    assert (config.log.level, config.log.format) == ("info", "text")
    assert config.transport.max_message_size == 65535
    assert config.transport.tcp_idle_timeout == 120
    assert config.transport.max_connections_per_source == 32


def test_data_dir_default_follows_xdg() -> None:
    assert default_data_dir({"XDG_DATA_HOME": "/srv/xdg", "HOME": "/home/u"}) == Path(
        "/srv/xdg/siprouter"
    )
    assert default_data_dir({"HOME": "/home/u"}) == Path("/home/u/.local/share/siprouter")
    # XDG Base Directory spec: a relative value is invalid and must be ignored.
    assert default_data_dir({"XDG_DATA_HOME": "rel/dir", "HOME": "/home/u"}) == Path(
        "/home/u/.local/share/siprouter"
    )


def test_config_tree_is_frozen() -> None:
    config = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.domains = ("x",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.log = None  # type: ignore[misc]


def test_listen_spec_str_round_trips_ipv6() -> None:
    assert str(ListenSpec("tcp", "::1", 5060)) == "tcp:[::1]:5060"
    assert str(DEFAULT_LISTEN[0]) == "udp:127.0.0.1:5060"


# --- a good file ----------------------------------------------------------------------------


def test_full_file(write, tmp_path: Path) -> None:
    (tmp_path / "route.py").write_text("async def request_route(req, ctx): pass\n")
    path = write(
        """
[server]
listen = ["udp:127.0.0.1:5070", "tcp:[::1]:5070"]
domains = ["Example.COM", "10.0.0.1"]
hostname = "sip1.example.com"
data_dir = "data"

[routing]
script = "route.py"
next_hop = "sip:10.0.0.1:5060"
reload_on_change = false

[routing.params]
greeting = "hi"
limits = { calls = 3, codecs = ["pcmu", "pcma"] }

[log]
level = "DEBUG"
format = "json"

[transport]
max_message_size = 16384
tcp_idle_timeout = 30
max_connections_per_source = 8
"""
    )
    config = load_config(path)
    assert config.source == path
    assert config.server.listen == (
        ListenSpec("udp", "127.0.0.1", 5070),
        ListenSpec("tcp", "::1", 5070),
    )
    assert not config.listen_is_default
    assert config.server.domains == ("example.com", "10.0.0.1")
    assert config.server.hostname == "sip1.example.com"
    # relative paths in the file are relative to the file's directory
    assert config.server.data_dir == tmp_path / "data"
    assert config.routing.script == tmp_path / "route.py"
    assert config.routing.next_hop == "sip:10.0.0.1:5060"
    assert config.routing.reload_on_change is False
    assert config.routing.params["greeting"] == "hi"
    assert config.routing.params["limits"]["codecs"] == ("pcmu", "pcma")
    with pytest.raises(TypeError):
        config.routing.params["greeting"] = "changed"  # type: ignore[index]
    assert (config.log.level, config.log.format) == ("debug", "json")
    assert config.transport.max_message_size == 16384
    assert config.transport.tcp_idle_timeout == 30.0
    assert config.transport.max_connections_per_source == 8


def test_script_as_module_name(write) -> None:
    config = load_config(write('[routing]\nscript = "mypkg.routes"\n'))
    assert config.routing.script == "mypkg.routes"
    config = load_config(write('[routing]\nscript = "mypkg.routes:table"\n'))
    assert config.routing.script == "mypkg.routes:table"


def test_default_script_is_the_loaders() -> None:
    loader = pytest.importorskip("siprouter.script.loader")
    assert loader.DEFAULT_SCRIPT == DEFAULT_SCRIPT


def test_listen_port_defaults_to_5060_and_ipv6_is_normalized() -> None:
    config = load_config(None, {"server.listen": ["udp:127.0.0.1", "tcp:[0:0::1]:5070"]})
    assert config.server.listen == (
        ListenSpec("udp", "127.0.0.1", 5060),
        ListenSpec("tcp", "::1", 5070),
    )


def test_relative_paths_are_relative_to_the_file_not_cwd(tmp_path: Path, monkeypatch) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "route.py").write_text("")
    (etc / "siprouter.toml").write_text('[routing]\nscript = "route.py"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("etc/siprouter.toml")).routing.script == etc / "route.py"


# --- overrides ------------------------------------------------------------------------------


def test_overrides_beat_the_file(write, tmp_path: Path) -> None:
    (tmp_path / "other.py").write_text("")
    path = write(
        '[server]\nlisten = ["udp:127.0.0.1:5070"]\ndata_dir = "/var/lib/a"\n'
        '[log]\nlevel = "error"\nformat = "json"\n'
    )
    config = load_config(
        path,
        {
            "server.listen": ["tcp:127.0.0.1:5080"],
            "server.data_dir": "/var/lib/b",
            "routing.script": "other.py",
            "log.level": "debug",
        },
    )
    assert config.server.listen == (ListenSpec("tcp", "127.0.0.1", 5080),)
    assert config.server.data_dir == Path("/var/lib/b")
    assert config.routing.script == tmp_path / "other.py"
    assert config.log.level == "debug"
    assert config.log.format == "json"  # not overridden: the file's value stays


def test_none_override_means_not_given(write) -> None:
    path = write('[log]\nlevel = "warning"\n')
    assert load_config(path, {"log.level": None, "server.listen": None}).log.level == "warning"


def test_overrides_without_file_beat_defaults() -> None:
    config = load_config(None, {"server.listen": ["udp:[::1]:5062"]})
    assert config.server.listen == (ListenSpec("udp", "::1", 5062),)


def test_bad_override_names_command_line() -> None:
    err = error_of(None, {"server.listen": ["udp:127.0.0.1:70000"]})
    assert str(err) == (
        'command line: server.listen[0] = "udp:127.0.0.1:70000": expected PROTO:HOST:PORT with '
        "PROTO udp or tcp and PORT 1-65535"
    )


def test_unknown_override_key() -> None:
    err = error_of(None, {"server.colour": "blue"})
    assert err.source == "command line"
    assert err.key == "server.colour"
    assert "unknown key" in err.expected
    err = error_of(None, {"nosuch": 1})
    assert "SECTION.KEY" in err.expected


# --- errors ---------------------------------------------------------------------------------


def test_listen_port_out_of_range_message_is_exact(write) -> None:
    path = write('[server]\nlisten = ["udp:127.0.0.1:5060", "udp:1.2.3.4:99999"]\n')
    err = error_of(path)
    assert str(err) == (
        'siprouter.toml: server.listen[1] = "udp:1.2.3.4:99999": expected PROTO:HOST:PORT with '
        "PROTO udp or tcp and PORT 1-65535"
    )
    assert (err.source, err.key, err.value) == (
        "siprouter.toml",
        "server.listen[1]",
        '"udp:1.2.3.4:99999"',
    )


# One case per kind of error: (file text, dotted key, value as shown, part of the expectation).
# fmt: off
ERROR_CASES = [
    # wrong types and bad values
    ('[server]\nlisten = "udp:127.0.0.1:5060"', "server.listen", '"udp:127.0.0.1:5060"', "expected an array"),
    ("[server]\nlisten = []", "server.listen", "[]", "at least one"),
    ("[server]\nlisten = [5060]", "server.listen[0]", "5060", "PROTO:HOST:PORT"),
    ('[server]\nlisten = ["sctp:127.0.0.1:5060"]', "server.listen[0]", '"sctp:127.0.0.1:5060"', "PROTO udp or tcp"),
    ('[server]\nlisten = ["udp:127.0.0.1:"]', "server.listen[0]", '"udp:127.0.0.1:"', "PROTO:HOST:PORT"),
    ('[server]\nlisten = ["udp:localhost:5060"]', "server.listen[0]", '"udp:localhost:5060"', "PROTO:HOST:PORT"),
    ('[server]\nlisten = ["udp:127.0.0.1:5060", "udp:127.0.0.1:5060"]', "server.listen[1]",
     '"udp:127.0.0.1:5060"', "already server.listen[0]"),
    ('[server]\ndomains = "example.com"', "server.domains", '"example.com"', "array of domain names"),
    ('[server]\ndomains = ["ok.com", "bad domain"]', "server.domains[1]", '"bad domain"', "domain name or IP"),
    ('[server]\ndomains = ["example.com:5060"]', "server.domains[0]", '"example.com:5060"', "no port"),
    ("[server]\nhostname = 12", "server.hostname", "12", "host name or IP"),
    ("[server]\ndata_dir = 1", "server.data_dir", "1", "directory path"),
    ('[routing]\nreload_on_change = "yes"', "routing.reload_on_change", '"yes"', "true or false"),
    ("[routing]\nparams = 3", "routing.params", "3", "expected a table"),
    ('[routing]\nscript = "no/such/route.py"', "routing.script", '"no/such/route.py"', "does not exist"),
    ('[routing]\nscript = "not a module"', "routing.script", '"not a module"', "module name"),
    ('[log]\nlevel = "verbose"', "log.level", '"verbose"', 'expected one of "debug", "info", "warning", "error"'),
    ('[log]\nformat = "xml"', "log.format", '"xml"', 'expected one of "text", "json"'),
    ("[transport]\nmax_message_size = 10", "transport.max_message_size", "10", "integer from 1500"),
    ('[transport]\nmax_message_size = "64k"', "transport.max_message_size", '"64k"', "integer"),
    ("[transport]\nmax_connections_per_source = true", "transport.max_connections_per_source", "true", "integer"),
    ("[transport]\nmax_connections_per_source = 0", "transport.max_connections_per_source", "0", "from 1 to"),
    ("[transport]\ntcp_idle_timeout = 0", "transport.tcp_idle_timeout", "0", "greater than 0"),
    ("[transport]\ntcp_idle_timeout = -5.5", "transport.tcp_idle_timeout", "-5.5", "greater than 0"),
    ("[transport]\ntcp_idle_timeout = nan", "transport.tcp_idle_timeout", "nan", "number of seconds"),
    # unknown keys and sections: typos must not be ignored
    ("[server]\nlisen = []", "server.lisen", "[]",
     'unknown key; expected one of listen, domains, hostname, data_dir (did you mean "listen"?)'),
    ('[sever]\nlisten = ["udp:127.0.0.1:5060"]', "sever", '{listen = ["udp:127.0.0.1:5060"]}',
     'unknown section; expected one of server, routing, log, transport, database, transaction, usrloc, registrar, auth, dispatcher, mgmt (did you mean "server"?)'),
    ('[log]\nlevel = "info"\ncolour = true', "log.colour", "true", "unknown key"),
    ('server = "x"', "server", '"x"', "expected a table [server]"),
]
# fmt: on


@pytest.mark.parametrize("toml, key, value, expected", ERROR_CASES)
def test_error_names_file_key_value_and_expectation(write, toml, key, value, expected) -> None:
    err = error_of(write(toml + "\n"))
    assert err.source == "siprouter.toml"
    assert err.key == key
    assert err.value == value
    assert expected in err.expected
    assert str(err) == f"siprouter.toml: {key} = {value}: {err.expected}"


def test_next_hop_must_be_a_sip_uri(write) -> None:
    pytest.importorskip("siprouter.sip.uri", reason="the URI parser is written by another helper")
    err = error_of(write('[routing]\nnext_hop = "10.0.0.1:5060"\n'))
    assert (err.key, err.value) == ("routing.next_hop", '"10.0.0.1:5060"')
    assert "SIP URI" in err.expected
    err = error_of(write('[routing]\nnext_hop = "tel:+15551234"\n'))
    assert err.key == "routing.next_hop"
    assert load_config(
        write('[routing]\nnext_hop = "sips:proxy.example.com;transport=tcp"\n')
    ).routing.next_hop


def test_toml_syntax_error_names_file_and_line(write) -> None:
    err = error_of(write('[log]\nlevel = "info"\nformat = = "json"\n'))
    assert str(err).startswith("siprouter.toml: invalid TOML: ")
    assert "line 3" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    err = error_of(tmp_path / "nope.toml")
    assert str(err) == f"{tmp_path / 'nope.toml'}: cannot read: file not found"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    err = error_of(tmp_path)
    assert "is a directory" in str(err) and str(tmp_path) in str(err)


def test_not_utf8(write) -> None:
    path = write("")
    path.write_bytes(b'[log]\nlevel = "\xff"\n')
    err = error_of(path)
    assert str(err).startswith("siprouter.toml: expected UTF-8")


def test_data_dir_that_is_a_file(write, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    err = error_of(write('[server]\ndata_dir = "plain"\n'))
    assert err.key == "server.data_dir" and "not a directory" in err.expected


def test_long_values_are_shortened_in_messages(write) -> None:
    err = error_of(write('[log]\nlevel = "' + "x" * 500 + '"\n'))
    assert err.value is not None and len(err.value) <= 80 and err.value.endswith("...")


# --- generated docs -------------------------------------------------------------------------


def test_docs_list_every_key() -> None:
    text = render_docs()
    for section in ("server", "routing", "log", "transport"):
        assert f"## [{section}]" in text
        cls = type(getattr(Config(), section))
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text, f"{section}.{f.name} is not documented"


def test_readme_example_is_valid(tmp_path: Path) -> None:
    pytest.importorskip("siprouter.sip.uri", reason="the example sets routing.next_hop")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "siprouter.toml").write_text(example, encoding="utf-8")
    config = load_config(tmp_path / "siprouter.toml")
    assert config.server.domains == ("example.com",)
    assert config.routing.params["greeting"] == "hello"


def test_docs_file_is_up_to_date() -> None:
    on_disk = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert on_disk == render_docs(), "run: python3 -m siprouter.config > docs/config.md"


def test_dispatcher_section_with_kamailio_names(write, tmp_path: Path) -> None:
    path = write(
        '[dispatcher]\nlist_file = "dispatcher.list"\nflags = 2\nuse_default = 1\n'
        'ds_probing_threshold = 5\nds_ping_reply_codes = "403,404"\nds_ping_interval = 1\n')
    ds = load_config(path).dispatcher
    assert ds.enabled
    assert ds.list_file == tmp_path / "dispatcher.list"
    assert (ds.flags, ds.use_default, ds.ds_probing_threshhold) == (2, True, 5)
    assert ds.options_reply_codes == (403, 404)
    assert not load_config(None).dispatcher.enabled


@pytest.mark.parametrize(("line", "key", "expected"), [
    ("flags = 4", "dispatcher.flags", "expected an integer from 0 to 3"),
    ("options_reply_codes = [99]", "dispatcher.options_reply_codes", "SIP status codes"),
    ("ds_probing_mode = 2", "dispatcher.ds_probing_mode", "from 0 to 1"),
    ("use_default = 3", "dispatcher.use_default", "true or false"),
])
def test_dispatcher_errors_name_the_key(write, line: str, key: str, expected: str) -> None:
    err = error_of(write(f"[dispatcher]\n{line}\n"))
    assert err.key == key
    assert expected in str(err)
