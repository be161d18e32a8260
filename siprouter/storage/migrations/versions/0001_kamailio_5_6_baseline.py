# SPDX-License-Identifier: Apache-2.0
"""Baseline: Kamailio 5.6's tables and their ``version`` rows.

Creates each table of ``BASELINE_TABLES`` that does not exist yet (with its indexes) and
adds each missing ``version`` row. A table that exists — e.g. made by Kamailio's kamdbctl —
is not touched, nor are its rows; so this one migration both creates a new database
(``siprouter db init``) and adopts an existing Kamailio database (``siprouter db migrate``
"stamps" it).

The tables are built from ``siprouter.storage.schema``. A later change to one of these
tables must come with its own migration, written so that it also runs on a database this
baseline has just created from the changed definition (check before altering).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from siprouter.storage.migrate import ensure_schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen: the tables this revision is responsible for.
BASELINE_TABLES = (
    "version", "subscriber", "location", "location_attrs", "aliases", "dispatcher",
    "trusted", "address", "acc", "acc_cdrs", "missed_calls", "dialog", "dialog_vars",
    "domain", "domain_attrs", "dbaliases", "speed_dial", "dialplan", "htable",
    "usr_preferences", "grp", "re_grp", "uri",
)


def upgrade() -> None:
    ensure_schema(op.get_bind(), BASELINE_TABLES)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the database instead")
