# SPDX-License-Identifier: Apache-2.0
"""docs/rpc.md is generated from the command definitions and must match them."""

from __future__ import annotations

from pathlib import Path

from siprouter.mgmt.commands import register_server_commands
from siprouter.mgmt.docs import documented_commands, render_docs
from siprouter.mgmt.registry import CommandRegistry

DOC = Path(__file__).resolve().parents[2] / "docs" / "rpc.md"


def test_docs_rpc_md_is_up_to_date() -> None:
    assert DOC.read_text() == render_docs(), (
        "docs/rpc.md is stale: run `python3 -m siprouter.mgmt.docs > docs/rpc.md`")


def test_every_core_command_is_documented_with_its_help() -> None:
    class NoServer:  # the core commands only read the server when called
        config = None

    registry = CommandRegistry()
    register_server_commands(registry, NoServer())
    documented = {c.name: c for c in documented_commands()}
    assert set(registry.names()) <= set(documented)
    for cmd in registry.commands():
        assert cmd.doc, f"{cmd.name} has no docstring"
        assert documented[cmd.name].help() == cmd.help()
        assert f"### `{cmd.signature}`" in render_docs()
