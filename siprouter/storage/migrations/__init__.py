# SPDX-License-Identifier: Apache-2.0
"""Alembic migrations of siprouter's SQL schema (run by ``siprouter.storage.migrate``)."""
