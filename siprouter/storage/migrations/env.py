# SPDX-License-Identifier: Apache-2.0
"""Alembic environment: siprouter runs migrations only through
``siprouter.storage.migrate``, which hands over an open connection (online mode)."""

from __future__ import annotations

from alembic import context

from siprouter.storage import schema
from siprouter.storage.migrate import ALEMBIC_VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "siprouter's migrations run through `siprouter db migrate`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=schema.METADATA,
    version_table=ALEMBIC_VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
