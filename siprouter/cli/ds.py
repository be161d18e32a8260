# SPDX-License-Identifier: Apache-2.0
"""``siprouter ds list|set-state|reload``: the dispatcher of the running server (what
kamcmd's ``dispatcher.list`` / ``dispatcher.set_state`` / ``dispatcher.reload`` do), over
the management socket or ``--url``, like ``siprouter ul``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from siprouter.cli.main import main
from siprouter.cli.rpc import _call, _client, _connection_options, _print_json, _table

__all__ = ["ds"]


@click.group("ds", context_settings={"help_option_names": ["-h", "--help"]})
def ds() -> None:
    """The dispatcher's destination sets in the running server."""


def _sets(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, dict):
        for key in ("sets", "SETS", "groups"):
            if isinstance(result.get(key), list):
                return result[key]
    return result if isinstance(result, list) else []


def _render_sets(result: Any) -> str:
    rows = [["SET", "DESTINATION", "STATE", "PRIORITY", "ATTRS"]]
    for s in _sets(result):
        setid = s.get("setid", s.get("id", ""))
        for d in s.get("destinations", s.get("targets", [])):
            attrs = d.get("attrs") or {}
            attr_text = ";".join(f"{k}={v}" for k, v in attrs.items()) \
                if isinstance(attrs, dict) else str(attrs)
            rows.append([str(setid), str(d.get("uri", "")),
                         str(d.get("state", d.get("flags", ""))),
                         str(d.get("priority", "")), attr_text])
    if len(rows) == 1:
        return "no destination sets"
    return _table(rows)


@ds.command("list")
@_connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
def ds_list(config_path: Path | None, data_dir: Path | None, url: str | None,
            token: str | None, timeout: float, as_json: bool) -> None:
    """Every destination set with its destinations and their states."""
    result = _call(_client(config_path, data_dir, url, token, timeout), "ds.list")
    if as_json:
        _print_json(result)
    else:
        click.echo(_render_sets(result))


@ds.command("set-state")
@_connection_options
@click.argument("state", type=click.Choice(["a", "i", "p"], case_sensitive=False))
@click.argument("group", type=int)
@click.argument("address")
def ds_set_state(config_path: Path | None, data_dir: Path | None, url: str | None,
                 token: str | None, timeout: float, state: str, group: int,
                 address: str) -> None:
    """Set destination ADDRESS of set GROUP active (a), inactive (i) or probing (p)."""
    result = _call(_client(config_path, data_dir, url, token, timeout), "ds.set_state",
                   [state.lower(), group, address])
    if isinstance(result, str):
        click.echo(result)
    else:
        _print_json(result)


@ds.command("reload")
@_connection_options
def ds_reload(config_path: Path | None, data_dir: Path | None, url: str | None,
              token: str | None, timeout: float) -> None:
    """Load the destination sets again (list file or table), all at once; a bad list is
    refused and the sets in use stay."""
    result = _call(_client(config_path, data_dir, url, token, timeout), "ds.reload")
    if isinstance(result, str):
        click.echo(result)
    else:
        _print_json(result)


main.add_command(ds)
