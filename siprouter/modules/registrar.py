# SPDX-License-Identifier: Apache-2.0
"""The registrar (RFC 3261 §10.3; Kamailio ``registrar``): REGISTER processing with
:meth:`Registrar.save`, and the location lookup that routes requests to registered users
with :meth:`Registrar.lookup`.

How this works
--------------
``save`` does RFC 3261 §10.3 from step 5 on (the routing script checks the domain and
authenticates first): it finds the AOR in the To header, then *plans* the whole change
against the AOR's current bindings — one contact at a time: its expiry (Contact
``expires`` parameter, else the Expires header, else ``default_expires``; ``min_expires``
/ ``max_expires``), the binding it refreshes (by ``+sip.instance`` / ``reg-id`` per RFC
5626 §6 when the contact has an instance, else by contact URI per §19.1.4), the
Call-ID / CSeq ordering rule of step 7 — then checks ``max_contacts`` on the result, and
only then applies it to the location service in one :meth:`Location.change`. A request
that fails any check changes nothing. The 200 OK lists every current binding with the
seconds it has left (step 8).

Where RFC 3261 leaves a choice, the choices are Kamailio's, except where noted:

- The AOR is ``user`` (``use_domain`` off) or ``user@host``, lower-cased unless
  ``case_sensitive`` (then only the host is). A To URI without a user part is refused 400.
- A refresh with the same Call-ID and the same CSeq within ``cseq_delay`` seconds of the
  binding's last change is a retransmission: answered 200 without a change. An older
  CSeq (or the same one later) is out of order: 500 (Kamailio answers 400), like an
  out-of-order request in a dialog (RFC 3261 §12.2.2).
- More than ``max_contacts`` bindings after the change: 403 "Too Many Registered
  Contacts" (Kamailio answers 503, which invites a retry that cannot succeed).
- An expiry below ``min_expires``: 423 with Min-Expires (RFC 3261 §10.3 step 7; Kamailio's
  default raises it to the minimum instead, ``min_expires_mode="raise"`` here).
- ``received``: when the UA is behind a NAT, ``sip:SRCIP:SRCPORT;transport=PROTO`` is
  stored and used as the next hop on lookup (Kamailio's default configuration:
  ``nat_uac_test("19")`` then ``fix_nated_register``). Behind a NAT means, as that test:
  the source is not the top Via's sent-by (address, or port — RFC 3581), or the Contact
  is a private address (RFC 1918 / RFC 6598) other than the source, or it registered
  over another transport than its Contact names (reached on its connection). A UA that says where
  it is (a SIPp registering for a callee on another port, a third-party registration)
  is reached at its Contact. With Path,
  the source is the edge proxy, so no received is stored (except a ``received`` parameter
  on the first Path URI, as Kamailio's ``path_use_received``).
- Path (RFC 3327): stored when ``use_path``; echoed in the 200 OK when the UA lists
  ``path`` in Supported (§5.3). ``path_mode``: "off" never echoes, "lazy" (default)
  echoes when supported, "strict" refuses a Path without Supported: path with 420.
- Bindings are ordered by q-value (none counts as 1.0), most recent first.

``lookup`` rewrites the Request-URI to the best contact, sets the next hop (the stored
``received``; with a Path, the Path URIs become the request's Route set and the first
one is the next hop, RFC 3327 §5.3 / Kamailio), and appends every other usable contact as
a branch for parallel or serial (by q) forking.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from siprouter.modules.location import (
    Binding,
    Location,
    contacts_equal,
    method_names,
    methods_mask,
)
from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.headers import ContactStar, parse_name_addr_list, split_values
from siprouter.sip.uri import SipUri, TelUri, parse_uri
from siprouter.storage.base import StorageError

__all__ = [
    "Registrar",
    "LookupResult",
    "PATH_MODES",
    "MIN_EXPIRES_MODES",
    "OUT_OF_ORDER",
    "TOO_MANY_CONTACTS",
]

log = logging.getLogger("siprouter.registrar")

#: How a REGISTER with a Path is answered: "off" (stored, never echoed), "lazy" (echoed
#: when the UA supports path), "strict" (420 when it does not; Kamailio's default).
PATH_MODES = ("off", "lazy", "strict")
#: An expiry below min_expires: "reject" with 423 (RFC 3261 §10.3 step 7) or "raise" it
#: to min_expires (Kamailio's default).
MIN_EXPIRES_MODES = ("reject", "raise")

#: The answer to a refresh whose CSeq is not higher than the binding's (§10.3 step 7).
OUT_OF_ORDER = (500, "Out of Order")
#: The answer when the change would leave more than max_contacts bindings.
TOO_MANY_CONTACTS = (403, "Too Many Registered Contacts")

# Kamailio's column sizes (location table): longer values could not be stored.
MAX_CONTACT_LEN = 512
MAX_CALLID_LEN = 255
MAX_USER_AGENT_LEN = 255
MAX_PATH_LEN = 512
MAX_INSTANCE_LEN = 255
MAX_AOR_PART_LEN = 64

# RFC 3261 §10.3 step 7: a registrar MAY answer 423 only when the asked interval is
# "greater than zero AND smaller than one hour AND less than a registrar-configured
# minimum".
_ONE_HOUR = 3600

_REASONS = {404: "Not Found", 405: "Method Not Allowed", 480: "Temporarily Unavailable",
            500: "Server Internal Error"}


class LookupResult:
    """What :meth:`Registrar.lookup` found: truthy when the request was routed to a
    contact. ``status``: None when found, else 404 (no such AOR), 405 (no contact
    accepts the method), 480 (every binding expired) or 500 (database down, mode 3);
    ``reason`` its reason phrase; ``contacts`` the bindings used, the one the
    Request-URI now holds first; ``allow``, for a 405, the methods the contacts accept
    (``"MESSAGE, OPTIONS"``) for the Allow header a 405 must carry (RFC 3261 §21.4.6)."""

    __slots__ = ("status", "reason", "contacts", "allow")

    def __init__(self, status: int | None, contacts: list[Binding] | None = None,
                 allow: str | None = None) -> None:
        self.status = status
        self.reason = _REASONS.get(status, "") if status else "OK"
        self.contacts = contacts if contacts is not None else []
        self.allow = allow

    def __bool__(self) -> bool:
        return self.status is None

    def __repr__(self) -> str:
        if self.status is None:
            return f"LookupResult(found {len(self.contacts)})"
        return f"LookupResult({self.status} {self.reason})"


class _Refused(Exception):
    """A REGISTER that is answered with an error (status, reason, extra headers)."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = headers


# The headers save reads besides the typed ones (canonical keys of the message layer).
_READ_HEADERS = frozenset(("call-id", "path", "user-agent", "allow", "supported"))


def _supports_path(supported: list[str]) -> bool:
    """Does a Supported header list the ``path`` option tag (RFC 3327 §4)?"""
    for value in supported:
        for tag in value.split(","):
            if tag.strip().lower() == "path":
                return True
    return False


_ALLOW_CACHE: dict[str, int] = {}
_ALLOW_CACHE_LIMIT = 256  # phones of a few models send a few distinct Allow values


def _allow_mask(values: list[str]) -> int | None:
    """The method bitmap of a request's Allow headers (None: no Allow, every method)."""
    if not values:
        return None
    key = values[0] if len(values) == 1 else ",".join(values)
    mask = _ALLOW_CACHE.get(key)
    if mask is None:
        mask = methods_mask(v for a in values for v in split_values(a))
        if len(_ALLOW_CACHE) >= _ALLOW_CACHE_LIMIT:
            _ALLOW_CACHE.clear()
        _ALLOW_CACHE[key] = mask
    return mask


def _format_q(q: float) -> str:
    text = f"{q:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _instance_key(instance: str) -> str:
    # Kamailio compares instances without their <>; URNs compare case-insensitively.
    if instance[:1] == "<" and instance[-1:] == ">":
        instance = instance[1:-1]
    return instance.lower()


def _transport_matches(uri: SipUri, proto: str) -> bool:
    t = uri.params.get("transport")
    if t is None:
        return proto == ("tls" if uri.scheme == "sips" else "udp")
    t = t.lower()
    return t == proto or (t == "tcp" and proto == "tls" and uri.scheme == "sips")


class Registrar:
    """REGISTER processing and location lookup on a :class:`Location`.

    :param location: where bindings are kept.
    :param default_expires: seconds, when neither the contact nor the request says.
    :param min_expires: the shortest accepted registration (0 expires is a removal).
    :param max_expires: the longest; longer requests are shortened (0: no limit).
    :param max_contacts: bindings per AOR (0: no limit).
    :param use_domain: AORs are ``user@domain`` (multi-domain) instead of ``user``.
    :param case_sensitive: keep the case of the user part (the host is always lower-cased).
    :param use_path: store Path (RFC 3327) and route through it on lookup.
    :param path_mode: "off", "lazy" or "strict" (:data:`PATH_MODES`).
    :param min_expires_mode: "reject" (423) or "raise" (:data:`MIN_EXPIRES_MODES`).
    :param cseq_delay: seconds in which a REGISTER with the same Call-ID and CSeq is a
        retransmission, not out of order (Kamailio usrloc ``cseq_delay``).
    :param append_branches: lookup adds the other contacts as branches (else only the
        best contact is used).
    :param clock: wall-clock time in seconds.
    :raises LocalProtocolError: for a parameter out of range.
    """

    def __init__(self, location: Location, *, default_expires: int = 3600,
                 min_expires: int = 60, max_expires: int = 0, max_contacts: int = 0,
                 use_domain: bool = False, case_sensitive: bool = False,
                 use_path: bool = True, path_mode: str = "lazy",
                 min_expires_mode: str = "reject", cseq_delay: int = 20,
                 append_branches: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        for name, value in (("default_expires", default_expires), ("min_expires", min_expires),
                            ("max_expires", max_expires), ("max_contacts", max_contacts),
                            ("cseq_delay", cseq_delay)):
            if type(value) is not int or value < 0:
                raise LocalProtocolError(
                    f"registrar {name} must be a whole number of at least 0, not {value!r}")
        if max_expires and max_expires < min_expires:
            raise LocalProtocolError(
                f"registrar max_expires ({max_expires}) is below min_expires ({min_expires})")
        if path_mode not in PATH_MODES:
            raise LocalProtocolError(
                f"registrar path_mode must be one of {', '.join(PATH_MODES)}, not {path_mode!r}")
        if min_expires_mode not in MIN_EXPIRES_MODES:
            raise LocalProtocolError(
                f"registrar min_expires_mode must be one of {', '.join(MIN_EXPIRES_MODES)}, "
                f"not {min_expires_mode!r}")
        self.location = location
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.max_contacts = max_contacts
        self.use_domain = use_domain
        self.case_sensitive = case_sensitive
        self.use_path = use_path
        self.path_mode = path_mode
        self.min_expires_mode = min_expires_mode
        self.cseq_delay = cseq_delay
        self.append_branches = append_branches
        self.clock = clock
        self._date: tuple[int, str] = (-1, "")

    # -- AORs ------------------------------------------------------------------------------

    def aor_of_uri(self, uri: Any) -> str | None:
        """The AOR of a parsed URI (``user`` or ``user@host`` per ``use_domain``), or None
        when it has no user part or is not a SIP or tel URI."""
        if type(uri) is SipUri:
            user = uri.user
            if not user:
                return None
            if self.case_sensitive:
                return f"{user}@{uri.host}" if self.use_domain else user
            aor = f"{user}@{uri.host}" if self.use_domain else user
            return aor.lower()
        if type(uri) is TelUri:
            return uri.number if self.case_sensitive else uri.number.lower()
        return None

    def aor_of(self, text: str) -> str | None:
        """The AOR of a URI given as text (``"sip:Alice@Example.com"`` -> ``"alice"``), or
        of an AOR as stored (``"alice"`` / ``"alice@example.com"``, case rules applied)."""
        scheme = text[:5].lower()
        if scheme.startswith(("sip:", "sips:", "tel:")):
            try:
                return self.aor_of_uri(parse_uri(text))
            except SipParseError:
                return None
        if self.case_sensitive:
            user, at, host = text.rpartition("@")
            return f"{user}@{host.lower()}" if at else text
        return text.lower()

    def _date_header(self, now: float) -> str:
        sec = int(now)
        cached = self._date
        if cached[0] != sec:
            cached = self._date = (sec, email.utils.formatdate(sec, usegmt=True))
        return cached[1]

    # -- REGISTER --------------------------------------------------------------------------

    async def save(self, req: Any, *, aor: str | None = None) -> None:
        """Process a REGISTER (RFC 3261 §10.3 steps 5-8) and answer it: 200 OK with every
        current binding, or 400 / 420 / 423 / 403 / 500 (see the module docstring).

        :param req: the REGISTER (the script's ``Request``).
        :param aor: the AOR to save under, as a URI (``"sip:alice@example.com"``) or as
            stored (``"alice"``), instead of the one in the To header.
        """
        try:
            headers = await self._save(req, aor)
        except _Refused as r:
            req.reply(r.status, r.reason, headers=r.headers)
            return
        except StorageError as exc:
            log.error("registrar: REGISTER for %s not saved: %s", aor or req.ruri, exc)
            req.reply(500, "Server Internal Error")
            return
        req.reply(200, "OK", headers=headers)

    async def _save(self, req: Any, aor_text: str | None) -> list[tuple[str, str]]:
        now = self.clock()
        inow = int(now)
        try:
            if aor_text is None:
                to_uri = req.to.uri
                # §10.2: "This address-of-record MUST be a SIP URI or SIPS URI."
                aor = self.aor_of_uri(to_uri) if type(to_uri) is SipUri else None
            else:
                aor = self.aor_of(aor_text)
            if not aor:
                raise _Refused(400, "No User in To URI")
            contacts = req.contacts
            expires_header = req.expires
            cseq = req.cseq.seq
        except SipParseError as exc:
            raise _Refused(400, exc.reason) from None
        # The other headers save reads, in one pass over the header fields ([key, name,
        # value, …], the layout proxy/sanity.py reads too) instead of one scan each.
        callid = None
        path_values: list[str] = []
        user_agent = ""
        allow: list[str] = []
        supported: list[str] = []
        for f in req.fields:
            key = f[0]
            if key in _READ_HEADERS:
                value = f[2]
                if value is None:
                    continue
                if key == "call-id":
                    if callid is None:
                        callid = value
                elif key == "path":
                    path_values.append(value)
                elif key == "user-agent":
                    user_agent = user_agent or value
                elif key == "allow":
                    allow.append(value)
                else:
                    supported.append(value)
        if callid is None:
            raise _Refused(400, "Missing Call-ID")
        user, at, domain = aor.rpartition("@")
        if len(user if at else aor) > MAX_AOR_PART_LEN or len(domain) > MAX_AOR_PART_LEN:
            raise _Refused(500, "Address Of Record Too Long")

        location = self.location
        memory = location.db_mode != 3
        if memory:
            existing = location.get_cached(aor) or ()
        else:
            existing = await location.get(aor, include_expired=True)

        # §10.3 step 6: "*" removes every binding.
        if contacts and (type(contacts[0]) is ContactStar or len(contacts) > 1 and any(
                type(c) is ContactStar for c in contacts)):
            if len(contacts) != 1 or expires_header != 0:
                raise _Refused(400, "Invalid Contact *")
            gone = []
            for b in existing:
                if b.callid == callid and cseq <= b.cseq:
                    if cseq == b.cseq and b.last_modified + self.cseq_delay > now:
                        continue  # a retransmission: already removed, or kept as it was
                    raise _Refused(*OUT_OF_ORDER)
                gone.append(b)
            if gone:
                await location.change(aor, delete=gone)
            kept = [b for b in existing if all(b is not g for g in gone)]
            return self._answer(kept, now, (), supported)

        if not contacts:
            # A query (§10.3 step 8 with no Contact): the current bindings.
            return self._answer(existing, now, (), supported)

        if len(callid) > MAX_CALLID_LEN:
            raise _Refused(400, "Call-ID Too Long")

        # RFC 3327: the Path of this registration (the proxy nearest to us first).
        path: tuple[str, ...] = ()
        path_received: str | None = None
        if not self.use_path:
            path_values = []
        elif path_values:
            path, path_received = self._path_of(path_values, supported)

        source = req.source
        socket = str(source.local) if source is not None and source.local is not None else None
        behind_nat = source is not None and _via_is_not_source(req, source)
        if len(user_agent) > MAX_USER_AGENT_LEN:
            user_agent = user_agent[:MAX_USER_AGENT_LEN]
        if user_agent:
            user_agent = sys.intern(user_agent)
        allow_mask: int | None = -1  # not computed yet

        current = list(existing)
        puts: list[Binding] = []
        deletes: list[Binding] = []
        touched: set[str] = set()
        default_expires = expires_header if expires_header is not None else self.default_expires
        for c in contacts:
            uri = c.uri
            contact = uri.raw
            if len(contact) > MAX_CONTACT_LEN:
                raise _Refused(400, "Contact Too Long")
            params = c.params
            e = c.expires
            if e is None:
                e = default_expires
            if e:
                e = self._check_expires(e)

            instance = params.get("+sip.instance")
            reg_id = 0
            if instance is not None:
                if not instance or len(instance) > MAX_INSTANCE_LEN:
                    raise _Refused(400, "Bad +sip.instance")
                rid = params.get("reg-id")
                if rid is not None:
                    # RFC 5626 §4.2: reg-id = 1*DIGIT, and 0 is not a flow.
                    if not (rid.isascii() and rid.isdigit()) or len(rid) > 9 or int(rid) == 0:
                        raise _Refused(400, "Bad reg-id")
                    reg_id = int(rid)

            # Which binding does this contact refresh?
            match = None
            if instance is not None:
                key = _instance_key(instance)
                for b in current:
                    if b.instance and b.reg_id == reg_id and _instance_key(b.instance) == key:
                        match = b
                        break
            else:
                for b in current:
                    if b.contact == contact:
                        match = b
                        break
                else:
                    for b in current:
                        if contacts_equal(b.contact, contact):
                            match = b
                            break

            if match is not None and match.ruid not in touched:
                # §10.3 step 7: the same Call-ID needs a higher CSeq.
                if match.callid == callid and cseq <= match.cseq:
                    if cseq == match.cseq and match.last_modified + self.cseq_delay > now:
                        continue  # a retransmission: answered as the first time
                    raise _Refused(*OUT_OF_ORDER)

            if not e:
                if match is not None:
                    del current[current.index(match)]
                    if match.ruid in touched:
                        puts = [p for p in puts if p is not match]
                    deletes.append(match)
                    touched.add(match.ruid)
                continue

            if path_values:
                rcv = path_received
            elif source is not None:
                rcv = self._received(uri, source, behind_nat)
            else:
                rcv = None

            methods_param = params.get("methods")
            if methods_param:
                methods: int | None = methods_mask(methods_param.split(","))
            else:
                if allow_mask == -1:
                    allow_mask = _allow_mask(allow)
                methods = allow_mask
            b = Binding(aor, contact, inow + e, c.q, callid, cseq, 0, 0, path, rcv, socket,
                        user_agent, instance, reg_id, methods, inow,
                        match.ruid if match is not None else location.new_ruid())
            if match is not None:
                current[current.index(match)] = b  # bindings compare by identity
                if match.ruid in touched:  # a second contact of this request, same binding
                    puts = [p for p in puts if p is not match]
            else:
                current.append(b)
            puts.append(b)
            touched.add(b.ruid)

        if self.max_contacts:
            valid = sum(1 for b in current if b.expires > now)
            if valid > self.max_contacts:
                log.info("registrar: %s would have %d contacts (max %d)", aor, valid,
                         self.max_contacts)
                raise _Refused(*TOO_MANY_CONTACTS)

        if puts or deletes:
            if location.db_mode == 0 or location.db_mode == 2:
                location.apply(aor, puts, deletes)  # memory only: no coroutine needed
            else:
                await location.change(aor, put=puts, delete=deletes)
        if memory:
            current = location.get_cached(aor) or ()
        else:
            current.sort(key=lambda b: (-(1.0 if b.q is None else b.q), -b.last_modified))
        return self._answer(current, now, path_values, supported)

    def _check_expires(self, e: int) -> int:
        if e < self.min_expires:
            if self.min_expires_mode == "reject" and e < _ONE_HOUR:
                raise _Refused(423, "Interval Too Brief",
                               (("Min-Expires", str(self.min_expires)),))
            e = self.min_expires
        if self.max_expires and e > self.max_expires:
            e = self.max_expires
        return e

    def _path_of(self, values: list[str],
                 supported: list[str]) -> tuple[tuple[str, ...], str | None]:
        try:
            hops = [na for v in values for na in parse_name_addr_list(v, "Path")]
        except SipParseError as exc:
            raise _Refused(400, exc.reason) from None
        path = tuple(na.uri.raw for na in hops)
        if sum(len(p) + 3 for p in path) > MAX_PATH_LEN:
            raise _Refused(400, "Path Too Long")
        if self.path_mode == "strict" and not _supports_path(supported):
            # RFC 3327 §5.3 / Kamailio path_mode 2: a UA that does not know Path.
            raise _Refused(420, "Bad Extension", (("Unsupported", "path"),))
        received = None
        first = hops[0].uri
        if type(first) is SipUri:
            received = first.params.get("received") or None
        return path, received

    @staticmethod
    def _received(uri: Any, source: Any, behind_nat: bool) -> str | None:
        """``sip:IP:PORT;transport=PROTO`` of ``source`` when the UA is behind a NAT (the
        module docstring says when), else None."""
        proto = source.proto
        if type(uri) is SipUri:
            port = uri.port
            if port is None:
                port = 5061 if uri.scheme == "sips" or uri.params.get("transport") == "tls" \
                    else 5060
            if uri.host_bare == source.ip and port == source.port \
                    and _transport_matches(uri, proto):
                return None
            if not behind_nat and _transport_matches(uri, proto) \
                    and not (uri.host_bare != source.ip and _is_private(uri.host_bare)):
                return None
        ip = source.ip
        host = f"[{ip}]" if ":" in ip else ip
        return f"sip:{host}:{source.port};transport={proto}"

    def _answer(self, bindings: Any, now: float, path_values: list[str] | tuple[()],
                supported: list[str]) -> list[tuple[str, str]]:
        """The headers of the 200 OK: every unexpired binding with its seconds left
        (§10.3 step 8), Date, and Path when echoed (RFC 3327 §5.3)."""
        inow = int(now)
        parts = []
        for b in bindings:
            left = b.expires - inow
            if b.expires <= now:
                continue
            text = f"<{b.contact}>"
            if b.q is not None:
                text += f";q={_format_q(b.q)}"
            text += f";expires={left}"
            if b.instance:
                text += f';+sip.instance="{b.instance}"'
                if b.reg_id:
                    text += f";reg-id={b.reg_id}"
            parts.append(text)
        headers = []
        if parts:
            headers.append(("Contact", ", ".join(parts)))
        headers.append(("Date", self._date_header(now)))
        if path_values and self.path_mode != "off" and _supports_path(supported):
            headers.append(("Path", ", ".join(path_values)))
        return headers

    # -- routing ---------------------------------------------------------------------------

    async def lookup(self, req: Any, *, aor: str | None = None,
                     method_filtering: bool = False) -> LookupResult:
        """Route ``req`` to the contacts registered for the AOR of its Request-URI (or
        ``aor``): the Request-URI becomes the best contact, its next hop the stored
        ``received`` address (or, with a Path, the Path as Route set), and each other
        contact is appended as a branch (``req.append_branch``) with its q-value.

        :param method_filtering: skip contacts whose registered methods (Contact
            ``methods`` parameter or Allow header) exclude the request's method.
        :returns: a :class:`LookupResult`: truthy when routed; else ``status`` 404, 405,
            480 or 500, and the request is left unchanged.
        """
        try:
            key = self.aor_of_uri(req.uri) if aor is None else self.aor_of(aor)
        except SipParseError:
            key = None
        if not key:
            return LookupResult(404)
        location = self.location
        if location.db_mode != 3:
            bindings = location.get_cached(key)
        else:
            try:
                bindings = await location.get(key, include_expired=True)
            except StorageError as exc:
                log.error("registrar: lookup of %s failed: %s", key, exc)
                return LookupResult(500)
        if not bindings:
            return LookupResult(404)
        now = self.clock()
        usable = [b for b in bindings if b.expires > now]
        if not usable:
            return LookupResult(480)
        if method_filtering:
            method = req.method
            allowed = [b for b in usable if b.allows(method)]
            if not allowed:
                mask = 0
                for b in usable:
                    mask |= b.methods or 0
                return LookupResult(405, allow=", ".join(method_names(mask)))
            usable = allowed
        if not self.append_branches:
            usable = usable[:1]
        first = usable[0]
        req.set_ruri(first.contact)
        _route(req, first)
        for b in usable[1:]:
            req.append_branch(b.contact, destination=None if b.path else b.received, q=b.q,
                              path=b.path)
        return LookupResult(None, usable)

    async def registered(self, req_or_aor: Any) -> bool:
        """Has the AOR (of a request's Request-URI, or given as text) an unexpired
        binding? (Kamailio ``registered``.)

        :raises StorageError: in db_mode 3, when the database fails.
        """
        if isinstance(req_or_aor, str):
            key = self.aor_of(req_or_aor)
        else:
            try:
                key = self.aor_of_uri(req_or_aor.uri)
            except SipParseError:
                key = None
        if not key:
            return False
        return bool(await self.location.get(key))

    async def unregister(self, aor: str, contact: str | None = None) -> int:
        """Remove every binding of ``aor`` (a URI or an AOR as stored), or only those with
        the contact URI ``contact``; return how many were removed. (Kamailio
        ``unregister``.)

        :raises StorageError: in db_mode 3, when the database fails.
        """
        key = self.aor_of(aor)
        if not key:
            return 0
        if contact is None:
            return await self.location.delete(key)
        return await self.location.delete_contact(key, contact)


def _route(req: Any, b: Binding) -> None:
    """Next hop of the Request-URI branch: with a Path, the Path as Route set (its first
    URI is the next hop, RFC 3327 §5.3); else the stored received address, or none."""
    if b.path:
        req.set_destination(None)
    else:
        req.set_destination(b.received)
    req.path = b.path


def _via_is_not_source(req: Any, source: Any) -> bool:
    """Kamailio ``nat_uac_test`` flags 2 and 16 (RFC 3581): the top Via's sent-by is not
    the address and port the request came from."""
    try:
        via = req.top_via
    except SipParseError:
        return True
    if via is None:
        return True
    port = via.port or (5061 if via.transport == "TLS" else 5060)
    if port != source.port:
        return True
    host = via.host
    if host == source.ip:
        return False  # the common case, without parsing addresses
    if host[:1] != "[":
        return True  # another IPv4 address, or a host name: the source is what we know
    try:  # IPv6: the same address may be written in several ways
        return ipaddress.ip_address(host[1:-1]) != ipaddress.ip_address(source.ip)
    except ValueError:
        return True


def _is_private(host: str) -> bool:
    """Kamailio ``nat_uac_test`` flag 1: an RFC 1918 (or RFC 6598 shared) address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.version == 4 and (ip.is_private and not ip.is_loopback and not ip.is_link_local
                                or ip in _SHARED_ADDRESS_SPACE)


_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
