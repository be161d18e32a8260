# SPDX-License-Identifier: Apache-2.0
"""Storage: one async interface (``Storage``), several backends chosen by URL scheme.

::

    from siprouter.storage import open_storage, Cond

    async with open_storage("sqlite:////var/lib/siprouter/siprouter.sqlite") as db:
        rows = await db.select("location", where={"username": "alice", "expires": Cond(">", now)})

URLs: ``sqlite:///PATH`` (relative PATH after three slashes, absolute after four),
``postgresql://USER:PASS@HOST[:PORT]/DB``, ``mysql://USER:PASS@HOST[:PORT]/DB`` (MySQL or
MariaDB; ``mariadb://`` too), ``text:///DIRECTORY`` (db_text). A ``+driver`` suffix on the
scheme (``postgresql+asyncpg://``) is accepted and ignored: each backend has one driver.
Query parameters are backend options (e.g. ``?pool_size=8``); keyword arguments to
``open_storage`` override them.

Backends are imported only when used, so a deployment on SQLite needs no PostgreSQL or
MySQL driver installed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from siprouter.storage.base import (
    COND_OPS,
    Cond,
    Row,
    Storage,
    StorageError,
    StorageSchemaError,
    StorageUnavailable,
    Value,
    Where,
    mask_url,
)

__all__ = [
    "open_storage",
    "database_url",
    "url_scheme",
    "BACKENDS",
    "DEFAULT_DATABASE_FILE",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "StorageSchemaError",
    "Cond",
    "Where",
    "Row",
    "Value",
    "COND_OPS",
    "mask_url",
]

# URL scheme -> "module:class". The one table that chooses a backend (STYLE.md §3).
BACKENDS: dict[str, str] = {
    "sqlite": "siprouter.storage.sqlite:SqliteStorage",
    "postgresql": "siprouter.storage.postgresql:PostgresStorage",
    "postgres": "siprouter.storage.postgresql:PostgresStorage",
    "mysql": "siprouter.storage.mysql:MysqlStorage",
    "mariadb": "siprouter.storage.mysql:MysqlStorage",
    "text": "siprouter.storage.dbtext:DbTextStorage",
}

# The embedded default database: this file in the data directory.
DEFAULT_DATABASE_FILE = "siprouter.sqlite"


def url_scheme(url: str) -> str:
    """The backend key of ``url``: its scheme, lower-cased, without ``+driver``.
    Raises ``StorageError`` when ``url`` has no scheme or one no backend serves."""
    scheme, sep, _ = url.partition("://")
    key = scheme.lower().split("+", 1)[0]
    if not sep or key not in BACKENDS:
        raise StorageError(
            "unsupported database URL: expected sqlite:///PATH, postgresql://USER:PASS@HOST/DB, "
            "mysql://USER:PASS@HOST/DB or text:///DIRECTORY",
            url=url,
        )
    return key


def database_url(configured: str | None, data_dir: str | Path) -> str:
    """The database URL the server uses: ``[database] url`` when set, else the embedded
    SQLite file ``siprouter.sqlite`` in ``data_dir``."""
    if configured:
        return configured
    return f"sqlite:///{Path(data_dir).absolute() / DEFAULT_DATABASE_FILE}"


def open_storage(url: str, **options: Any) -> Storage:
    """A ``Storage`` for ``url``, not yet opened: ``await storage.open()`` (or use it as
    ``async with``). Raises ``StorageError`` for an unsupported URL, and the backend's
    ``StorageError`` for an unusable one; a missing driver package is reported as a
    ``StorageError`` naming the package to install."""
    module_name, _, class_name = BACKENDS[url_scheme(url)].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StorageError(
            f"the {url_scheme(url)} backend cannot be loaded: {exc} "
            f"(install siprouter with its database drivers)",
            url=url,
        ) from exc
    cls = getattr(module, class_name)
    return cls(url, **options)
