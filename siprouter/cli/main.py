# SPDX-License-Identifier: Apache-2.0
"""The ``siprouter`` command.

``main`` is a click group; each command is a thin client that builds what it needs from the
configuration and hands over (``run`` -> ``siprouter.server.run``). Later commands (``db``,
``user``, ``rpc``, ``stats`` …) are added with ``main.add_command`` from their own modules in
this package; they take ``--config`` the same way so every command uses the same data
directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from siprouter import __version__
from siprouter.config import LOG_LEVELS, Config, ConfigError, load_config

__all__ = ["main", "build_config", "EXIT_CONFIG_ERROR"]

# Exit status for an unusable configuration (same as click's usage errors).
EXIT_CONFIG_ERROR = 2

_CONFIG_HELP = (
    "Configuration file (TOML). Without it (and without SIPROUTER_CONFIG) only the embedded "
    "defaults are used: UDP and TCP on 127.0.0.1:5060, the shipped default routing script, "
    "data in $XDG_DATA_HOME/siprouter. No file is searched for."
)


def config_option(f):  # type: ignore[no-untyped-def]
    """The ``--config`` option, shared by every command that reads the configuration."""
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=True),
        envvar="SIPROUTER_CONFIG",
        show_envvar=True,
        metavar="FILE",
        help=_CONFIG_HELP,
    )(f)


def build_config(config_path: Path | None, overrides: dict[str, object]) -> Config:
    """Load the configuration the way every command does; on ``ConfigError`` print the
    message (no traceback) and exit with status 2."""
    try:
        return load_config(config_path, overrides)
    except ConfigError as exc:
        click.echo(f"siprouter: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG_ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", "-V", prog_name="siprouter", message="%(prog)s %(version)s"
)
def main() -> None:
    """siprouter: a SIP server whose routing logic is plain Python."""


@main.command()
@config_option
@click.option(
    "--listen",
    "-l",
    multiple=True,
    metavar="PROTO:HOST:PORT",
    help="Socket to listen on, e.g. udp:0.0.0.0:5060 or tcp:[::1]:5060; repeat for more. "
    "Replaces [server] listen.",
)
@click.option(
    "--script",
    metavar="FILE|MODULE",
    help="Routing script: a Python file or a module name. Replaces [routing] script.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Data directory. Replaces [server] data_dir.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Lowest level logged. Replaces [log] level.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Only check the configuration and load the routing script, print a summary and "
    "exit (0 if both are usable, 2 if not).",
)
def run(
    config_path: Path | None,
    listen: tuple[str, ...],
    script: str | None,
    data_dir: Path | None,
    log_level: str | None,
    check: bool,
) -> None:
    """Run the SIP server in the foreground until SIGTERM or SIGINT.

    Command-line options override the configuration file. A configuration error is
    reported with the file, key, value and what is expected, and exits with status 2.
    """
    overrides: dict[str, object] = {
        "server.listen": list(listen) or None,
        "routing.script": script,
        "server.data_dir": str(data_dir) if data_dir is not None else None,
        "log.level": log_level,
    }
    config = build_config(config_path, overrides)
    if check:
        _check_script(config)
        click.echo(_summary(config))
        return

    from siprouter.log import get_logger, setup_logging

    setup_logging(config.log.level, config.log.format)
    log = get_logger("siprouter")
    listen_text = ", ".join(str(s) for s in config.server.listen)
    if config.listen_is_default:
        log.info(
            "siprouter %s starting on %s (the default; use --listen PROTO:HOST:PORT "
            "or [server] listen in siprouter.toml to listen elsewhere)",
            __version__,
            listen_text,
        )
    else:
        log.info("siprouter %s starting on %s", __version__, listen_text)

    from siprouter.server import run as run_server

    sys.exit(run_server(config))


def _check_script(config: Config) -> None:
    """Load the routing script once, as the server would; exit 2 if it is unusable."""
    from siprouter.script.loader import ScriptError, load_script

    try:
        load_script(str(config.routing.script))
    except ScriptError as exc:
        click.echo(f"siprouter: routing script error: {exc}", err=True)
        sys.exit(EXIT_CONFIG_ERROR)


def _summary(config: Config) -> str:
    server, routing = config.server, config.routing
    lines = [
        f"configuration OK ({config.source if config.source else 'embedded defaults'})",
        "  listen:    " + ", ".join(str(s) for s in server.listen),
        "  domains:   " + (", ".join(server.domains) or "(none)"),
        f"  hostname:  {server.hostname}",
        f"  data_dir:  {server.data_dir}",
        f"  script:    {routing.script}",
        f"  next_hop:  {routing.next_hop or '(none)'}",
        f"  log:       {config.log.level} ({config.log.format})",
    ]
    return "\n".join(lines)


# Subcommands defined in their own modules (they import build_config/config_option from
# here, which are defined above by the time this runs).
from siprouter.cli.db import db as _db_command  # noqa: E402

main.add_command(_db_command)
from siprouter.cli.user import user as _user_command  # noqa: E402

main.add_command(_user_command)
from siprouter.cli import ds as _ds_commands  # noqa: E402, F401  (registers ds)
from siprouter.cli import reload as _reload_commands  # noqa: E402, F401  (reload, dbt)
from siprouter.cli import rpc as _rpc_commands  # noqa: E402, F401  (registers rpc and ul)
from siprouter.cli import stats as _stats_command  # noqa: E402, F401  (registers stats)
