# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the end-to-end tests: siprouter subprocesses built by a factory, stopped
(SIGTERM, then SIGKILL) when the test or module ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import SiprouterFactory


@pytest.fixture
def siprouter(tmp_path: Path) -> Iterator[SiprouterFactory]:
    """``siprouter.start(script, params=..., host=..., protos=...)`` starts a server
    subprocess on a free port and returns a ``SiprouterProcess``; all are stopped after
    the test."""
    factory = SiprouterFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_siprouter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiprouterFactory]:
    """Like ``siprouter``, for a server shared by the tests of one module."""
    factory = SiprouterFactory(tmp_path_factory.mktemp("siprouter"))
    try:
        yield factory
    finally:
        factory.close()
