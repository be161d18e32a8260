# SPDX-License-Identifier: Apache-2.0
"""The dispatcher: destination sets and the load-balancing algorithms over them.

``destinations`` loads sets (list file, database rows); ``algorithms`` chooses from a
set for a request. Both are pure; ``module`` holds :class:`Dispatcher`, the module
the script sees (``ctx.dispatcher``) with its management commands, built on them.
"""

from __future__ import annotations

from .algorithms import (
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
    FLAG_FAILOVER,
    FLAG_HASH_USER_ONLY,
    Selection,
    Selector,
    compile_hash_template,
    stable_hash,
    uri_hash_key,
)
from .destinations import (
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
from .module import PARAM_ALIASES, Dispatcher, Pinger, Selected

__all__ = [
    "ALG_AUTH_USERNAME",
    "ALG_CALL_LOAD",
    "ALG_CALLID",
    "ALG_FROM_URI",
    "ALG_HASH_STRING",
    "ALG_PARALLEL",
    "ALG_PRIORITY",
    "ALG_RANDOM",
    "ALG_ROUND_ROBIN",
    "ALG_RURI",
    "ALG_TO_URI",
    "ALG_WEIGHT",
    "FLAG_FAILOVER",
    "FLAG_HASH_USER_ONLY",
    "INACTIVE",
    "PARAM_ALIASES",
    "PROBING",
    "Pinger",
    "Destination",
    "DestinationSet",
    "Dispatcher",
    "DispatcherListError",
    "Selected",
    "Selection",
    "Selector",
    "compile_hash_template",
    "load_list_file",
    "parse_attrs",
    "parse_list",
    "parse_state",
    "sets_from_rows",
    "stable_hash",
    "uri_hash_key",
]
