# SPDX-License-Identifier: Apache-2.0
"""``siprouter reload`` (kamcmd's ``core.reload`` / ``cfg.reload`` habit: load the routing
script of the running server again) and ``siprouter dbt dump|reload [TABLE]`` (the
db_text tables of the running server: ``dbt.dump`` / ``dbt.reload``).

Thin clients of the management commands (docs/rpc.md), with the exit statuses of the
other client commands: 0 done, 1 the server refused (its message is printed: the
script's error, the file and line of a bad row), 2 no server is running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from siprouter.cli.main import main
from siprouter.cli.rpc import _call, _client, _connection_options, _print_json

__all__ = ["reload", "dbt"]


@click.command("reload", context_settings={"help_option_names": ["-h", "--help"]})
@_connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
def reload(config_path: Path | None, data_dir: Path | None, url: str | None,
           token: str | None, timeout: float, as_json: bool) -> None:
    """Load the routing script of the running server again (as SIGHUP does). When the
    script does not load, the server keeps the one it runs and the error is printed
    (exit status 1). Exit status 2 when no server is running."""
    result = _call(_client(config_path, data_dir, url, token, timeout), "core.reload")
    if as_json or not isinstance(result, dict):
        _print_json(result)
    else:
        click.echo(f"reloaded routing script {result.get('script')}")


@click.group("dbt", context_settings={"help_option_names": ["-h", "--help"]})
def dbt() -> None:
    """The db_text tables (text:///DIR) of the running server."""


def _report(result: Any, key: str, verb: str, as_json: bool) -> None:
    entries = result.get(key) if isinstance(result, dict) else None
    if as_json or not isinstance(entries, list):
        _print_json(result)
        return
    nothing = "nothing to write" if verb == "wrote" else "no tables"
    for entry in entries:
        tables = entry.get("tables") or []
        what = f"{verb} {', '.join(tables)}" if tables else nothing
        click.echo(f"{entry.get('database')}: {what}")


@dbt.command("dump")
@_connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@click.argument("table", required=False)
def dbt_dump(config_path: Path | None, data_dir: Path | None, url: str | None,
             token: str | None, timeout: float, as_json: bool, table: str | None) -> None:
    """Write the changed tables (or TABLE) to their files now."""
    client = _client(config_path, data_dir, url, token, timeout)
    result = _call(client, "dbt.dump", [table] if table else None)
    _report(result, "dumped", "wrote", as_json)


@dbt.command("reload")
@_connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@click.argument("table", required=False)
def dbt_reload(config_path: Path | None, data_dir: Path | None, url: str | None,
               token: str | None, timeout: float, as_json: bool, table: str | None) -> None:
    """Read the tables (or TABLE) again from their files, dropping unwritten changes.
    Exit status 1, naming file and line, when a line cannot be read (the rest is loaded)."""
    client = _client(config_path, data_dir, url, token, timeout)
    result = _call(client, "dbt.reload", [table] if table else None)
    _report(result, "reloaded", "read", as_json)


main.add_command(reload)
main.add_command(dbt)
