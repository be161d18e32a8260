# SPDX-License-Identifier: Apache-2.0
"""``siprouter run`` sets the garbage collector's thresholds before its loop starts
(server.GC_THRESHOLDS: why and what it measured is written beside it)."""

from __future__ import annotations

import gc

import pytest

from siprouter import server
from siprouter.config import load_config


class _Stop(Exception):
    pass


def test_run_sets_the_collector_thresholds_before_the_loop(monkeypatch):
    seen = []

    def no_loop():
        seen.append(gc.get_threshold())
        raise _Stop

    saved = gc.get_threshold()
    monkeypatch.setattr(server, "_new_event_loop", no_loop)
    gc.set_threshold(700, 10, 10)
    try:
        with pytest.raises(_Stop):
            server.run(load_config(None))
    finally:
        gc.set_threshold(*saved)
    assert seen == [server.GC_THRESHOLDS]
    assert server.GC_THRESHOLDS[1] > 10  # rarer generation-1 (and so full) collections
