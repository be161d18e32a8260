# SPDX-License-Identifier: Apache-2.0
"""Reloading the routing script on SIGHUP and when its file changes.

``ScriptReloader.reload()`` loads the script afresh and, only when that succeeds, hands
the new ``LoadedScript`` to ``apply`` (the proxy core's ``set_script``), which swaps one
reference. A message already inside the old ``request_route`` finishes there: it holds
the old function, and the old module stays alive through that function's globals. A
script that no longer loads is reported at error level and the running one stays; the
server never stops over a bad edit.

Change detection polls the file's (mtime_ns, size, inode) every ``interval`` seconds:
cheap, portable, and it catches editors that save by renaming a new file over the old
one. A save caught half-written fails to load (logged) and the next poll, seeing the
file change again, loads the finished one. Only the script file itself is watched, not
the modules it imports (a SIGHUP reloads the script, not its imports).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from siprouter.script.loader import LoadedScript, ScriptError, is_file_spec, load_script

__all__ = ["ScriptReloader"]

log = logging.getLogger("siprouter.script")

_Stamp = tuple[int, int, int] | None


def _stamp(path: Path | None) -> _Stamp:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ScriptReloader:
    """Reloads the script named by ``spec`` and passes each good load to ``apply``.

    :param spec: as for ``load_script`` (file path, module reference, or None).
    :param apply: called with the new ``LoadedScript``; must only swap references.
    :param watch: poll the file for changes in ``run()`` (file scripts only).
    :param interval: seconds between polls.
    :param script: the script already loaded at start-up, if any (becomes ``script``).
    """

    def __init__(self, spec: str | os.PathLike[str] | None,
                 apply: Callable[[LoadedScript], None], *, watch: bool = True,
                 interval: float = 1.0, script: LoadedScript | None = None) -> None:
        self.spec = spec
        self.apply = apply
        self.watch = watch
        self.interval = interval
        #: The script most recently applied (None until one is, unless given).
        self.script = script
        self.path: Path | None = (
            Path(os.fspath(spec)).absolute() if spec is not None and is_file_spec(spec) else None
        )
        # What the file looked like when the current script was read. Best taken before
        # the first load: use ``load()`` for it, or build the reloader before loading.
        self._stamp = _stamp(self.path)
        self._loop: asyncio.AbstractEventLoop | None = None

    def load(self) -> LoadedScript:
        """The first load, at start-up: like ``reload`` but errors propagate (the server
        must not start with a broken script) and ``apply`` is not called.

        :raises ScriptError: as ``load_script``.
        """
        self._stamp = _stamp(self.path)
        self.script = load_script(self.spec)
        return self.script

    def reload(self) -> bool:
        """Load the script again; apply it when it loads. Never raises.

        :returns: True when the new script is in use, False when the old one stays.
        """
        # Stamp before reading: an edit that lands while we load is seen by the next poll.
        self._stamp = _stamp(self.path)
        try:
            new = load_script(self.spec)
        except ScriptError as e:
            log.error("script not reloaded, the previous one stays in use: %s", e)
            return False
        except Exception:  # a bug in the loader; keep serving with the old script
            log.exception("script not reloaded, the previous one stays in use")
            return False
        try:
            self.apply(new)
        except Exception:
            log.exception("script loaded but could not be applied; the previous one stays in use")
            return False
        self.script = new
        log.info("script reloaded: %s", new.name)
        return True

    def changed(self) -> bool:
        """Has the script file changed since it was last read? (False for module scripts.)"""
        if self.path is None:
            return False
        return _stamp(self.path) != self._stamp

    async def run(self) -> None:
        """Poll the script file every ``interval`` seconds and reload it when it changes.

        Returns at once for a module script or when ``watch`` is off; otherwise runs until
        cancelled. A file that is missing for a while (being replaced) is simply waited for.
        """
        if not self.watch or self.path is None:
            return
        while True:
            await asyncio.sleep(self.interval)
            stamp = _stamp(self.path)
            if stamp is None or stamp == self._stamp:
                continue
            self.reload()

    def install_sighup(self, loop: asyncio.AbstractEventLoop | None = None) -> bool:
        """Reload on SIGHUP (``loop.add_signal_handler``).

        :returns: False where the platform or loop has no SIGHUP handling (Windows).
        """
        sighup = getattr(signal, "SIGHUP", None)
        if sighup is None:
            return False
        loop = loop or asyncio.get_running_loop()
        try:
            loop.add_signal_handler(sighup, self.reload)
        except (NotImplementedError, RuntimeError):
            return False
        self._loop = loop
        return True

    def remove_sighup(self) -> None:
        """Undo ``install_sighup``."""
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGHUP)
            self._loop = None
