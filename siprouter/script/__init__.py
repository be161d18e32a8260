# SPDX-License-Identifier: Apache-2.0
"""Routing scripts: the API a script sees, loading and reloading, the testing kit.

An operator's script imports its types from here::

    from siprouter.script import Request, Response, Context
"""

from siprouter.script.api import Context, Request, Response
from siprouter.script.loader import DEFAULT_SCRIPT, LoadedScript, ScriptError, load_script
from siprouter.script.reload import ScriptReloader

__all__ = [
    "Request",
    "Response",
    "Context",
    "LoadedScript",
    "ScriptError",
    "load_script",
    "DEFAULT_SCRIPT",
    "ScriptReloader",
]
