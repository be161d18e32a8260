# SPDX-License-Identifier: Apache-2.0
"""The location service (Kamailio ``usrloc``): bindings of addresses of record (AORs) to
contact addresses, in memory and/or in the Kamailio ``location`` table.

How this works
--------------
A :class:`Binding` is one registered contact of one AOR (RFC 3261 §10.2.1): the contact
URI, its absolute expiry time, q-value, the Call-ID and CSeq of the REGISTER that made it
(§10.3 step 7), the Path (RFC 3327), the NAT ``received`` address, the socket it arrived
on, and the RFC 5626 instance / reg-id. ``ruid`` identifies it for its whole life (a
refresh keeps it), which is also its key in the database.

In memory, bindings live in one dict: AOR -> list of its bindings, kept sorted as
:meth:`Location.get` returns them (q-value descending, a binding without q counting as
1.0; then the most recently modified first). An AOR has one or a few bindings, so the
lists are short and a refresh is a scan of a couple of items.

``db_mode`` chooses where the truth is, as usrloc's parameter of the same name:

- 0 (memory only): nothing is written anywhere; a restart forgets every binding.
- 1 (write-through): every change goes to memory and then, before the call returns, to
  the database. A database that fails is logged; memory keeps the change and the change
  is queued and written again by the timer (:meth:`flush`) once the database is back.
- 2 (write-back): changes go to memory and are queued; the timer writes the queue every
  ``timer_interval`` seconds, and :meth:`stop` writes what is left.
- 3 (database only): nothing is kept in memory; every read and write is a query, so
  several servers can share one table. A database that fails raises
  ``StorageError`` to the caller (the registrar answers 500).

Modes 1 and 2 load every unexpired row at :meth:`start`, so registrations survive a
restart. The timer (every ``timer_interval`` seconds) purges expired bindings from
memory and, in modes 1-3, from the table, and writes what is queued.

Rows use Kamailio 5.6's columns and conventions, so Kamailio and siprouter can share the
table: an AOR ``user@domain`` is stored as ``username``/``domain`` (an AOR without "@" as
``username`` with a NULL ``domain``, Kamailio's ``use_domain = 0``); ``path`` is the Path
header values joined with "," (``<sip:p1;lr>,<sip:p2;lr>``); ``q`` is -1 when the
contact had none (Kamailio's ``Q_UNSPECIFIED``); ``methods`` is Kamailio's method bitmap
(NULL: all methods); ``expires`` and ``last_modified`` are local-time datetimes.
Permanent bindings (Kamailio's ``expires = 0``) are not supported: such a row reads as
expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from siprouter.modules import RpcError, rpc
from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.headers import parse_name_addr_list
from siprouter.sip.uri import parse_uri, uri_equal
from siprouter.storage.base import Cond, Storage, StorageError

__all__ = [
    "Binding",
    "Location",
    "DB_MODES",
    "METHOD_BITS",
    "methods_mask",
    "method_names",
    "split_aor",
    "contacts_equal",
]

log = logging.getLogger("siprouter.location")

#: usrloc ``db_mode`` values: 0 memory only, 1 write-through, 2 write-back, 3 DB only.
DB_MODES = (0, 1, 2, 3)

#: Kamailio's method bits (``parser/msg_parser.h`` METHOD_*), as stored in the
#: ``methods`` column; a method not listed is METHOD_OTHER.
METHOD_BITS: dict[str, int] = {
    "INVITE": 1, "CANCEL": 2, "ACK": 4, "BYE": 8, "INFO": 16, "REGISTER": 32,
    "SUBSCRIBE": 64, "NOTIFY": 128, "MESSAGE": 256, "OPTIONS": 512, "PRACK": 1024,
    "UPDATE": 2048, "REFER": 4096, "PUBLISH": 8192, "KDMQ": 16384,
}
METHOD_OTHER = 32768
_ALL_METHODS = 0xFFFFFFFF

# Queued writes go to the database in chunks of this many rows (one "in" list each).
FLUSH_CHUNK = 500
# The purge yields to the event loop after this many AORs (100,000 bindings take tens of
# milliseconds to scan; other work must not wait that long).
PURGE_SLICE = 5000


def methods_mask(methods: Iterable[str]) -> int:
    """The Kamailio bitmap of method names (``["INVITE", "BYE"]`` -> 9)."""
    mask = 0
    for m in methods:
        mask |= METHOD_BITS.get(m.strip().upper(), METHOD_OTHER)
    return mask


def method_names(mask: int) -> list[str]:
    """The method names of a Kamailio bitmap, in bit order (9 -> ``["INVITE", "BYE"]``)."""
    return [name for name, bit in METHOD_BITS.items() if mask & bit]


def split_aor(aor: str) -> tuple[str, str | None]:
    """``"alice@example.com"`` -> ``("alice", "example.com")``; ``"alice"`` -> ``("alice",
    None)``: the ``username`` / ``domain`` columns of the location table."""
    user, at, domain = aor.rpartition("@")
    if not at:
        return aor, None
    return user, domain


def _to_datetime(seconds: float) -> datetime.datetime:
    # Kamailio's datetime columns hold local wall-clock time.
    return datetime.datetime.fromtimestamp(int(seconds))


def _from_datetime(value: Any) -> int:
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, int | float):
        return int(value)
    return 0


class Binding:
    """One contact address bound to an AOR (RFC 3261 §10.2.1).

    ``expires`` and ``last_modified`` are absolute wall-clock times in whole seconds;
    ``q`` is None when the contact had no q-value; ``path`` holds the Path URIs in the
    order of the REGISTER's Path headers (RFC 3327; the first is the hop nearest to
    us); ``received`` is ``sip:IP:PORT;transport=PROTO`` when the REGISTER came from
    another address than the contact's (NAT); ``socket`` is the local socket it
    arrived on (``udp:192.0.2.1:5060``); ``instance`` the ``+sip.instance`` value and
    ``reg_id`` the ``reg-id`` (0: none) of RFC 5626; ``methods`` a bitmap of
    :data:`METHOD_BITS` (None: all methods); ``ruid`` the unique id of the binding.

    Treat a binding as a value: the registrar replaces it by a new one on a refresh.
    """

    __slots__ = ("aor", "contact", "expires", "q", "callid", "cseq", "flags", "cflags",
                 "path", "received", "socket", "user_agent", "instance", "reg_id",
                 "methods", "last_modified", "ruid")

    aor: str
    contact: str
    expires: int
    q: float | None
    callid: str
    cseq: int
    flags: int
    cflags: int
    path: tuple[str, ...]
    received: str | None
    socket: str | None
    user_agent: str
    instance: str | None
    reg_id: int
    methods: int | None
    last_modified: int
    ruid: str

    def __init__(self, aor: str, contact: str, expires: int, q: float | None = None,
                 callid: str = "", cseq: int = 0, flags: int = 0, cflags: int = 0,
                 path: tuple[str, ...] = (), received: str | None = None,
                 socket: str | None = None, user_agent: str = "",
                 instance: str | None = None, reg_id: int = 0, methods: int | None = None,
                 last_modified: int = 0, ruid: str = "") -> None:
        self.aor = aor
        self.contact = contact
        self.expires = expires
        self.q = q
        self.callid = callid
        self.cseq = cseq
        self.flags = flags
        self.cflags = cflags
        self.path = path
        self.received = received
        self.socket = socket
        self.user_agent = user_agent
        self.instance = instance
        self.reg_id = reg_id
        self.methods = methods
        self.last_modified = last_modified
        self.ruid = ruid

    def allows(self, method: str) -> bool:
        """May a request with ``method`` be sent to this contact (its ``methods``)?"""
        m = self.methods
        return m is None or bool(m & METHOD_BITS.get(method, METHOD_OTHER))

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """The binding as plain data (for RPC): ``expires`` is the seconds left when
        ``now`` is given, ``expires_at`` the absolute time."""
        return {
            "contact": self.contact,
            "expires": None if now is None else max(0, self.expires - int(now)),
            "expires_at": self.expires,
            "q": self.q,
            "callid": self.callid,
            "cseq": self.cseq,
            "path": list(self.path),
            "received": self.received,
            "socket": self.socket,
            "user_agent": self.user_agent,
            "instance": self.instance,
            "reg_id": self.reg_id,
            "methods": self.methods,
            "flags": self.flags,
            "cflags": self.cflags,
            "last_modified": self.last_modified,
            "ruid": self.ruid,
        }

    def __repr__(self) -> str:
        return (f"Binding({self.aor!r}, {self.contact!r}, expires={self.expires}, "
                f"q={self.q}, ruid={self.ruid!r})")


def _sort_key(b: Binding) -> tuple[float, int]:
    q = b.q
    return (-(1.0 if q is None else q), -b.last_modified)


def _insert_sorted(bindings: list[Binding], b: Binding) -> None:
    """Insert ``b`` where :meth:`Location.get` order puts it (lists are a few items)."""
    key = _sort_key(b)
    for i, other in enumerate(bindings):
        if key <= _sort_key(other):
            bindings.insert(i, b)
            return
    bindings.append(b)


def _intern(text: str | None) -> str | None:
    # User-Agent and socket strings repeat across thousands of bindings: keep one copy.
    return sys.intern(text) if text else text


class Location:
    """The location service: AOR -> bindings, stored per ``db_mode`` (see the module
    docstring).

    :param storage: the database (an opened :class:`~siprouter.storage.Storage`); may be
        None for ``db_mode=0``.
    :param db_mode: 0 memory only, 1 write-through, 2 write-back, 3 database only.
    :param table: the location table (Kamailio's ``location``).
    :param timer_interval: seconds between purges of expired bindings (and, in mode 2,
        flushes of the queued changes).
    :param clock: wall-clock time in seconds (``time.time``); expiry times are absolute.
    :param server_id: written into the ``server_id`` column (Kamailio's ``server_id``).
    :raises LocalProtocolError: for an unknown ``db_mode``, or modes 1-3 without storage.
    """

    def __init__(self, storage: Storage | None = None, *, db_mode: int = 0,
                 table: str = "location", timer_interval: float = 60,
                 clock: Callable[[], float] = time.time, server_id: int = 0) -> None:
        if db_mode not in DB_MODES:
            raise LocalProtocolError(
                f"location db_mode must be 0 (memory), 1 (write-through), 2 (write-back) "
                f"or 3 (database only), not {db_mode!r}")
        if db_mode and storage is None:
            raise LocalProtocolError(f"location db_mode {db_mode} needs a database")
        if not timer_interval or timer_interval <= 0:
            raise LocalProtocolError(
                f"location timer_interval must be a positive number of seconds, "
                f"not {timer_interval!r}")
        self.storage = storage
        self.db_mode = db_mode
        self.table = table
        self.timer_interval = timer_interval
        self.clock = clock
        self.server_id = server_id
        self._records: dict[str, list[Binding]] = {}
        self._n_contacts = 0
        # ruid -> binding to write, or None: row to delete (modes 1 and 2).
        self._pending: dict[str, Binding | None] = {}
        self._db_failing = False
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._ruid_prefix = f"uloc-{int(time.time()):x}-{os.getpid():x}{secrets.token_hex(2)}-"
        self._ruid_counter = itertools.count(1)
        # Mode 3 keeps no memory: the counts of the last timer round / stats() call.
        self._db_counts = (0, 0)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the table (modes 1 and 2) and start the timer.

        :raises StorageError: the table cannot be read (the server must not start with
            an empty location while its registrations are in the database).
        """
        if self.db_mode in (1, 2):
            await self.load()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._timer_loop(), name="location-timer")

    async def stop(self) -> None:
        """Stop the timer and write what is queued (modes 1 and 2). Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending:
            written = await self.flush()
            if self._pending:
                log.error("location: %d changes could not be written to the database at "
                          "stop (%d written)", len(self._pending), written)

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timer_interval)
            try:
                await self.timer_round()
            except asyncio.CancelledError:
                raise
            except StorageError as exc:
                log.warning("location timer: %s", exc)
            except Exception:
                log.exception("location timer failed")

    async def timer_round(self, now: float | None = None) -> None:
        """One round of the timer: purge expired bindings, then write what is queued."""
        await self.purge_expired(self.clock() if now is None else now)
        if self._pending:
            await self.flush()

    async def load(self) -> int:
        """Replace memory by the unexpired rows of the table; return how many bindings
        were loaded (modes 1 and 2 call it at :meth:`start`)."""
        rows = await self.storage.select(  # type: ignore[union-attr]
            self.table, where={"expires": Cond(">", _to_datetime(self.clock()))})
        records: dict[str, list[Binding]] = {}
        n = 0
        for row in rows:
            b = self._binding_from_row(row)
            if b is None:
                continue
            lst = records.get(b.aor)
            if lst is None:
                records[b.aor] = [b]
            else:
                lst[:] = [x for x in lst if x.ruid != b.ruid]
                _insert_sorted(lst, b)
            n += 1
        self._records = records
        self._n_contacts = sum(len(v) for v in records.values())
        log.info("location: %d bindings of %d AORs loaded from %s", self._n_contacts,
                 len(records), self.table)
        return n

    # -- ids -----------------------------------------------------------------------------

    def new_ruid(self) -> str:
        """A fresh unique binding id (unique across restarts and servers)."""
        return f"{self._ruid_prefix}{next(self._ruid_counter):x}"

    # -- reading -------------------------------------------------------------------------

    async def get(self, aor: str, *, include_expired: bool = False) -> list[Binding]:
        """The bindings of ``aor``, q-value descending (no q counts as 1.0), then most
        recently modified first. Unexpired ones only, unless ``include_expired`` (expired
        bindings stay until the next purge).

        :raises StorageError: in mode 3, when the database fails.
        """
        if self.db_mode == 3:
            return await self._db_get(aor, include_expired)
        lst = self._records.get(aor)
        if not lst:
            return []
        if include_expired:
            return list(lst)
        now = self.clock()
        return [b for b in lst if b.expires > now]

    def get_cached(self, aor: str) -> list[Binding] | None:
        """The in-memory list of ``aor`` (every binding, expired ones included; do not
        modify it), or None when there is none. Modes 0-2 only: for the registrar's
        hot path, which must not pay for a coroutine to read memory."""
        return self._records.get(aor)

    async def aors(self) -> list[str]:
        """Every AOR with at least one binding (expired ones until the next purge)."""
        if self.db_mode == 3:
            rows = await self.storage.select(self.table, ["username", "domain"])  # type: ignore[union-attr]
            return sorted({_aor_of(r) for r in rows})
        return list(self._records)

    @property
    def n_aors(self) -> int:
        """How many AORs have bindings (mode 3: as of the last timer round)."""
        if self.db_mode == 3:
            return self._db_counts[0]
        return len(self._records)

    @property
    def n_contacts(self) -> int:
        """How many bindings there are (mode 3: as of the last timer round)."""
        if self.db_mode == 3:
            return self._db_counts[1]
        return self._n_contacts

    async def stats(self) -> dict[str, int]:
        """``{"aors": …, "contacts": …, "pending": …}``; exact in every mode (mode 3
        counts rows in the table)."""
        if self.db_mode == 3:
            await self._refresh_db_counts()
        return {"aors": self.n_aors, "contacts": self.n_contacts,
                "pending": len(self._pending)}

    # -- writing ---------------------------------------------------------------------------

    async def put(self, binding: Binding) -> None:
        """Insert ``binding``, or replace the binding of its AOR with the same ``ruid``.

        :raises StorageError: in mode 3, when the database fails (modes 1-2 log it and
            keep the change queued).
        """
        await self.change(binding.aor, put=(binding,))

    async def delete(self, aor: str, ruid: str | None = None) -> int:
        """Remove the binding ``ruid`` of ``aor``, or every binding of ``aor`` when
        ``ruid`` is None; return how many were removed.

        :raises StorageError: in mode 3, when the database fails.
        """
        if self.db_mode == 3:
            where = self._aor_where(aor)
            if ruid is not None:
                where["ruid"] = ruid
            return await self.storage.delete(self.table, where)  # type: ignore[union-attr]
        lst = self._records.get(aor)
        if not lst:
            return 0
        gone = [b for b in lst if ruid is None or b.ruid == ruid]
        if gone:
            await self.change(aor, delete=gone)
        return len(gone)

    async def delete_contact(self, aor: str, contact: str) -> int:
        """Remove the bindings of ``aor`` whose contact is ``contact`` (compared as URIs,
        RFC 3261 §19.1.4); return how many were removed."""
        gone = [b for b in await self.get(aor, include_expired=True)
                if contacts_equal(b.contact, contact)]
        if gone:
            if self.db_mode == 3:
                return await self.storage.delete(  # type: ignore[union-attr]
                    self.table, {"ruid": Cond("in", [b.ruid for b in gone])})
            await self.change(aor, delete=gone)
        return len(gone)

    async def change(self, aor: str, *, put: Iterable[Binding] = (),
                     delete: Iterable[Binding] = ()) -> None:
        """Apply several changes to one AOR at once: remove the bindings ``delete`` (by
        ruid), then insert or replace (by ruid) the bindings ``put``. Memory changes
        before anything is awaited, so no other request sees half of them.

        :raises StorageError: in mode 3, when the database fails.
        """
        put = tuple(put)
        delete = tuple(delete)
        if self.db_mode == 3:
            await self._db_change(aor, put, delete)
            return
        self.apply(aor, put, delete)
        pending = self._pending
        if self.db_mode == 1 and pending:
            # Write-through: this change now; older queued ones (a database that failed
            # before) are the timer's.
            touched = {b.ruid for b in delete} | {b.ruid for b in put}
            batch = {r: pending.pop(r) for r in touched if r in pending}
            if batch:
                await self._write(batch)

    def apply(self, aor: str, put: Iterable[Binding] = (), delete: Iterable[Binding] = ()) -> None:
        """The memory part of :meth:`change` (modes 0-2), without awaiting anything: in
        mode 2 the change is queued for the flush; in mode 1 it is queued too and
        :meth:`change` writes it (call ``change`` in modes 1 and 3)."""
        if self.db_mode == 3:
            raise LocalProtocolError("location.apply() is for db_mode 0-2; use change()")
        for b in put:
            if b.aor != aor:
                raise LocalProtocolError(f"binding of {b.aor!r} put under AOR {aor!r}")
        records = self._records
        lst = records.get(aor)
        pending = self._pending if self.db_mode else None
        n = self._n_contacts
        if delete and lst:
            gone = {b.ruid for b in delete}
            keep = [b for b in lst if b.ruid not in gone]
            n -= len(lst) - len(keep)
            if pending is not None:
                for b in lst:
                    if b.ruid in gone:
                        pending[b.ruid] = None
            lst[:] = keep
        for b in put:
            if lst is None:
                lst = records[aor] = [b]
                n += 1
            else:
                ruid = b.ruid
                for i, old in enumerate(lst):
                    if old.ruid == ruid:
                        del lst[i]
                        n -= 1
                        break
                if not lst or _sort_key(b) <= _sort_key(lst[0]):
                    lst.insert(0, b)  # the common case: a refresh is the newest
                else:
                    _insert_sorted(lst, b)
                n += 1
            if pending is not None:
                pending[b.ruid] = b
        if lst is not None and not lst:
            del records[aor]
        self._n_contacts = n

    # -- expiry --------------------------------------------------------------------------

    async def purge_expired(self, now: float | None = None) -> int:
        """Remove the bindings that expired at ``now`` (default: the clock) from memory
        and, in modes 1-3, every expired row from the table (one statement; a database
        that fails is logged and tried again next round); return how many bindings were
        removed from memory (mode 3: rows from the table)."""
        if now is None:
            now = self.clock()
        if self.db_mode == 3:
            n = await self.storage.delete(  # type: ignore[union-attr]
                self.table, {"expires": Cond("<=", _to_datetime(now))})
            await self._refresh_db_counts()
            return n
        removed = 0
        records = self._records
        pending = self._pending if self.db_mode else None
        aors = list(records)
        for start in range(0, len(aors), PURGE_SLICE):
            for aor in aors[start:start + PURGE_SLICE]:
                lst = records.get(aor)
                if lst is None:
                    continue
                if all(b.expires > now for b in lst):
                    continue
                keep = []
                for b in lst:
                    if b.expires > now:
                        keep.append(b)
                    else:
                        removed += 1
                        if pending is not None:
                            # Its row goes with the table's other expired rows below.
                            pending.pop(b.ruid, None)
                if keep:
                    lst[:] = keep
                else:
                    del records[aor]
            if start + PURGE_SLICE < len(aors):
                await asyncio.sleep(0)
        self._n_contacts -= removed
        if removed:
            log.debug("location: %d expired bindings purged", removed)
        if self.db_mode:
            # Every expired row, also those that expired while the server was down
            # (never loaded): one statement.
            try:
                await self.storage.delete(  # type: ignore[union-attr]
                    self.table, {"expires": Cond("<=", _to_datetime(now))})
            except StorageError as exc:
                log.warning("location: expired rows not deleted: %s", exc)
        return removed

    # -- database ------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write the queued changes (modes 1 and 2) to the table; return how many rows
        were written or deleted. Changes that fail stay queued for the next round."""
        if not self._pending or self.storage is None:
            return 0
        batch, self._pending = self._pending, {}
        return await self._write(batch)

    async def _write(self, batch: dict[str, Binding | None]) -> int:
        """Write ``batch`` (ruid -> binding, or None to delete), in order with every other
        write of this location; what fails goes back to the queue."""
        storage = self.storage
        assert storage is not None
        puts = [b for b in batch.values() if b is not None]
        deletes = [ruid for ruid, b in batch.items() if b is None]
        done: set[str] = set()
        async with self._write_lock:
            try:
                for i in range(0, len(deletes), FLUSH_CHUNK):
                    chunk = deletes[i:i + FLUSH_CHUNK]
                    await storage.delete(self.table, {"ruid": Cond("in", chunk)})
                    done.update(chunk)
                if len(puts) <= 2:
                    for b in puts:  # a REGISTER's change: one upsert statement each
                        await storage.replace(self.table, self._row_of(b), ("ruid",))
                        done.add(b.ruid)
                else:
                    for i in range(0, len(puts), FLUSH_CHUNK):
                        chunk = puts[i:i + FLUSH_CHUNK]
                        ruids = [b.ruid for b in chunk]
                        await storage.delete(self.table, {"ruid": Cond("in", ruids)})
                        await storage.insert_many(self.table, [self._row_of(b) for b in chunk])
                        done.update(ruids)
            except StorageError as exc:
                # Back to the queue, unless a newer change replaced it meanwhile.
                for ruid, b in batch.items():
                    if ruid not in done:
                        self._pending.setdefault(ruid, b)
                if not self._db_failing:
                    self._db_failing = True
                    log.warning("location: cannot write to the database (%s); %d changes "
                                "kept in memory and retried every %s s", exc,
                                len(self._pending), self.timer_interval)
                return len(done)
        if self._db_failing:
            self._db_failing = False
            log.warning("location: database writes work again")
        return len(done)

    def _aor_where(self, aor: str) -> dict[str, Any]:
        username, domain = split_aor(aor)
        return {"username": username, "domain": domain}

    def _row_of(self, b: Binding) -> dict[str, Any]:
        username, domain = split_aor(b.aor)
        return {
            "ruid": b.ruid, "username": username, "domain": domain, "contact": b.contact,
            "received": b.received,
            "path": ",".join(f"<{p}>" for p in b.path) if b.path else None,
            "expires": _to_datetime(b.expires), "q": -1.0 if b.q is None else b.q,
            "callid": b.callid, "cseq": b.cseq, "last_modified": _to_datetime(b.last_modified),
            "flags": b.flags, "cflags": b.cflags, "user_agent": b.user_agent or "",
            "socket": b.socket, "methods": b.methods, "instance": b.instance,
            "reg_id": b.reg_id, "server_id": self.server_id, "connection_id": 0,
            "keepalive": 0, "partition": 0,
        }

    def _binding_from_row(self, row: dict[str, Any]) -> Binding | None:
        aor = _aor_of(row)
        contact = row.get("contact")
        if not aor or not contact:
            return None
        q = row.get("q")
        if q is None or q < 0:
            q = None
        else:
            q = round(float(q), 3)  # REAL columns may read back 0.699999988
        methods = row.get("methods")
        if methods is not None and (methods < 0 or methods >= _ALL_METHODS):
            methods = None
        path: tuple[str, ...] = ()
        if row.get("path"):
            try:
                path = tuple(str(na.uri) for na in parse_name_addr_list(row["path"], "Path"))
            except SipParseError:
                log.warning("location: row %s has an unreadable path %r; ignored",
                            row.get("ruid"), row["path"])
        return Binding(
            aor, contact, _from_datetime(row.get("expires")), q, row.get("callid") or "",
            int(row.get("cseq") or 0), int(row.get("flags") or 0), int(row.get("cflags") or 0),
            path, row.get("received") or None, _intern(row.get("socket") or None),
            _intern(row.get("user_agent") or ""), row.get("instance") or None,
            int(row.get("reg_id") or 0), methods, _from_datetime(row.get("last_modified")),
            row.get("ruid") or self.new_ruid())

    async def _db_get(self, aor: str, include_expired: bool) -> list[Binding]:
        where = self._aor_where(aor)
        if not include_expired:
            where["expires"] = Cond(">", _to_datetime(self.clock()))
        rows = await self.storage.select(self.table, where=where)  # type: ignore[union-attr]
        out = [b for b in map(self._binding_from_row, rows) if b is not None]
        out.sort(key=_sort_key)
        return out

    async def _db_change(self, aor: str, put: Iterable[Binding],
                         delete: Iterable[Binding]) -> None:
        storage = self.storage
        assert storage is not None
        gone = [b.ruid for b in delete]
        if gone:
            await storage.delete(self.table, {"ruid": Cond("in", gone)})
        for b in put:
            if b.aor != aor:
                raise LocalProtocolError(f"binding of {b.aor!r} put under AOR {aor!r}")
            await storage.replace(self.table, self._row_of(b), ("ruid",))

    async def _refresh_db_counts(self) -> None:
        rows = await self.storage.select(self.table, ["username", "domain"])  # type: ignore[union-attr]
        self._db_counts = (len({(r["username"], r["domain"]) for r in rows}), len(rows))

    # -- management (RPC) --------------------------------------------------------------------

    @rpc("ul.dump")
    async def rpc_dump(self) -> dict[str, Any]:
        """Every AOR with its bindings (expired ones included until purged)."""
        now = self.clock()
        out = []
        for aor in sorted(await self.aors()):
            bindings = await self.get(aor, include_expired=True)
            if bindings:
                out.append({"aor": aor, "contacts": [b.to_dict(now) for b in bindings]})
        return {"aors": out, "n_aors": len(out), "n_contacts": sum(len(a["contacts"]) for a in out)}

    def _kamailio_form(self, first: str, second: str | None) -> tuple[str, str | None]:
        """``ul.lookup location AOR`` (Kamailio names the table first): (aor, rest)."""
        if second is not None and first == self.table:
            return second, None
        return first, second

    @rpc("ul.lookup")
    async def rpc_lookup(self, aor: str, kamailio_aor: str | None = None) -> dict[str, Any]:
        """The unexpired bindings of one AOR (as stored: ``alice`` or ``alice@example.com``
        with use_domain). Kamailio's form, ``ul.lookup location AOR``, works too."""
        aor, extra = self._kamailio_form(aor, kamailio_aor)
        if extra is not None:
            raise RpcError(f"no table {aor!r}; expected ul.lookup AOR or "
                           f"ul.lookup {self.table} AOR", code=-32602)
        bindings = await self.get(aor)
        if not bindings:
            raise RpcError(f"AOR not found: {aor}", code=-32004, data={"aor": aor})
        now = self.clock()
        return {"aor": aor, "contacts": [b.to_dict(now) for b in bindings]}

    @rpc("ul.rm")
    async def rpc_rm(self, aor: str, contact: str | None = None) -> dict[str, Any]:
        """Remove every binding of an AOR, or only the one with this contact URI.
        Kamailio's form, ``ul.rm location AOR``, works too."""
        aor, contact = self._kamailio_form(aor, contact)
        return await self._rm(aor, contact)

    @rpc("ul.rm_contact")
    async def rpc_rm_contact(self, table: str, aor: str, contact: str) -> dict[str, Any]:
        """Kamailio's ``ul.rm_contact location AOR CONTACT``: remove one binding."""
        if table != self.table:
            raise RpcError(f"no table {table!r}; expected {self.table!r}", code=-32602)
        return await self._rm(aor, contact)

    async def _rm(self, aor: str, contact: str | None) -> dict[str, Any]:
        if contact is None:
            n = await self.delete(aor)
        else:
            n = await self.delete_contact(aor, contact)
        if not n:
            what = f"contact {contact} of AOR {aor}" if contact else f"AOR {aor}"
            raise RpcError(f"not found: {what}", code=-32004, data={"aor": aor})
        return {"aor": aor, "removed": n}


def _aor_of(row: dict[str, Any]) -> str:
    username = row.get("username") or ""
    domain = row.get("domain")
    return f"{username}@{domain}" if domain else username


def contacts_equal(stored: str, given: str) -> bool:
    """Are two contact URIs (text) the same per RFC 3261 §19.1.4? Equal text is; text
    that does not parse equals only itself."""
    if stored == given:
        return True
    try:
        return uri_equal(parse_uri(stored), parse_uri(given))
    except SipParseError:
        return False
