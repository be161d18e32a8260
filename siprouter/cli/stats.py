# SPDX-License-Identifier: Apache-2.0
"""``siprouter stats [GROUP|GROUP:NAME]`` and ``siprouter stats --reset [GROUP]``: the
running server's statistics (kamcmd's ``stats.get_statistics``), one ``group:name = value``
per line, or JSON with ``--json``."""

from __future__ import annotations

from pathlib import Path

import click

from siprouter.cli.main import main
from siprouter.cli.rpc import _call, _client, _connection_options, _print_json

__all__ = ["stats"]


@click.command("stats", context_settings={"help_option_names": ["-h", "--help"]})
@_connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer as JSON.")
@click.option("--reset", is_flag=True, help="Set the counters of GROUP (default all) to 0.")
@click.argument("name", required=False, default="all")
def stats(config_path: Path | None, data_dir: Path | None, url: str | None,
          token: str | None, timeout: float, as_json: bool, reset: bool, name: str) -> None:
    """Statistics of the running server: all, a group (core, tm, dialog, usrloc,
    dispatcher) or one statistic (core:rcv_requests)."""
    client = _client(config_path, data_dir, url, token, timeout)
    result = _call(client, "stats.reset" if reset else "stats.get", [name])
    if as_json or not isinstance(result, dict):
        _print_json(result)
    elif reset:
        click.echo(f"{result.get('reset', 0)} counters reset")
    else:
        width = max((len(k) for k in result), default=0)
        for key, value in result.items():
            click.echo(f"{key.ljust(width)} = {value}")


main.add_command(stats)
