# SPDX-License-Identifier: Apache-2.0
"""placeholder"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from siprouter.storage import schema


def ddl_for_missing_tables(dialect: Dialect, tables: Iterable[str]) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for ``tables`` of the schema."""
    out = []
    for name in tables:
        t = schema.METADATA.tables[name]
        out.append(str(CreateTable(t).compile(dialect=dialect)).strip())
        for index in sorted(t.indexes, key=lambda i: i.name or ""):
            out.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return out
