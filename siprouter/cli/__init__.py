# SPDX-License-Identifier: Apache-2.0
"""The ``siprouter`` command line (click). Entry point: ``siprouter.cli.main:main``."""

__all__: list[str] = []
