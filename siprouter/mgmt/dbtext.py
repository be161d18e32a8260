# SPDX-License-Identifier: Apache-2.0
"""``dbt.dump`` / ``dbt.reload``: write the db_text tables of a running server to their
files, or read the files again (Kamailio's ``db_text`` ``dbtext.dump``; OpenSIPS's
``dbt_dump`` / ``dbt_reload``).

The work is done by :meth:`siprouter.storage.dbtext.DbTextStorage.dump` and
:meth:`~siprouter.storage.dbtext.DbTextStorage.reload`; this module only makes them
commands (the storage layer may not import ``siprouter.modules``, where the ``rpc``
marker lives). The commands act on every database of the server that is a db_text one
(``[database] url``, and ``[dispatcher] db_url`` when it is another directory), read from
the server when called — so they are registered before the database is open, and are
listed on a server with another backend, where they answer an error saying so.

What a reload does not do: modules that keep their own copy of a table see the file's
new rows only through their own command — the dispatcher (``ds.reload``) and the
location service in ``db_mode`` 1 and 2 (its bindings are loaded at start). Modules that
read the database on each use (``auth``'s ``subscriber``) see them at once.
"""

from __future__ import annotations

from typing import Any

from siprouter.mgmt.errors import RpcError
from siprouter.modules import rpc
from siprouter.storage import StorageError
from siprouter.storage.base import mask_url
from siprouter.storage.dbtext import DbTextStorage

__all__ = ["DbTextCommands"]


class DbTextCommands:
    """``dbt.*`` of one running server (``siprouter.server.Server``: its ``storage`` and
    the other databases it opened)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def _databases(self) -> list[DbTextStorage]:
        """The server's open db_text databases, each once; RpcError when it has none."""
        srv = self.server
        opened = [s for s in (getattr(srv, "storage", None),
                              *getattr(srv, "_extra_storages", ())) if s is not None]
        found: list[DbTextStorage] = []
        for storage in opened:
            if isinstance(storage, DbTextStorage) and storage not in found:
                found.append(storage)
        if not found:
            if opened:
                used = ", ".join(dict.fromkeys(str(getattr(s, "scheme", "?")) for s in opened))
                raise RpcError(f"dbt.* needs a db_text database (text:///DIR); "
                               f"this server uses {used}")
            raise RpcError("dbt.* needs a db_text database (text:///DIR); "
                           "this server has no database open")
        return found

    @staticmethod
    def _error(exc: StorageError) -> RpcError:
        # The storage's message names the directory, file and line; never a traceback.
        return RpcError(str(exc))

    @rpc("dbt.dump")
    async def dump(self, table: str | None = None) -> dict[str, Any]:
        """Write the db_text tables changed since they were last written (or only
        ``table``) to their files now. Returns, per database, the tables written."""
        out: list[dict[str, Any]] = []
        databases = self._databases()
        if table is not None:
            databases = [d for d in databases if d.has_table(table)] or databases[:1]
        for db in databases:
            try:
                written = await db.dump(table)
            except StorageError as exc:
                raise self._error(exc) from None
            out.append({"database": mask_url(db.url), "tables": written})
        return {"dumped": out}

    @rpc("dbt.reload")
    async def reload(self, table: str | None = None) -> dict[str, Any]:
        """Read the db_text tables (or only ``table``) again from their files, dropping
        changes not yet written; new table files are picked up. Lines that cannot be read
        are reported (file and line) after the rest has been loaded. Returns, per
        database, the tables read. Rows a module keeps in memory are not read again
        (dispatcher: ``ds.reload``; location in db_mode 1 and 2: loaded at start)."""
        out: list[dict[str, Any]] = []
        databases = self._databases()
        if table is not None:
            databases = [d for d in databases
                         if d.has_table(table)
                         or (table.isidentifier() and (d.directory / table).is_file())] \
                or databases[:1]
        problems: list[str] = []
        for db in databases:
            try:
                read = await db.reload(table)
            except StorageError as exc:
                problems.append(str(exc))
                continue
            out.append({"database": mask_url(db.url), "tables": read})
        if problems:
            raise RpcError("; ".join(problems))
        return {"reloaded": out}
