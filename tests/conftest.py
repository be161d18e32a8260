# SPDX-License-Identifier: Apache-2.0
"""Suite-wide fixtures: the real database servers and the ``backend`` / ``storage``
fixtures of ``db_backends.py``, for the storage contract suite and for every module that
keeps its data in a database (auth, location, dispatcher …)."""

from db_backends import (  # noqa: F401  (fixtures and the summary hook, registered here)
    _templates,
    backend,
    mariadb_server,
    pg_server,
    pytest_terminal_summary,
    storage,
)
