"""Coverage-guided fuzzing of the parser and the proxy core (STYLE.md §5).

    pip install atheris
    python3 fuzz/fuzz_parse.py -max_total_time=300 tests/data/sip-torture/rfc4475

Anything but ``SipParseError`` out of ``parse_message``, or any exception out of
``ProxyCore.on_message`` (which must absorb bad input), is a crash. Without atheris, the
same checks run over the files given on the command line (a smoke test).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import atheris
except ImportError:  # smoke-test mode, see main()
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["siprouter"]):
        from siprouter.proxy.myself import Myself
        from siprouter.script.api import make_proxy_core
        from siprouter.script.loader import load_script
        from siprouter.script.testing import ManualTimerQueue, RecordingTransport
        from siprouter.sip.errors import SipParseError
        from siprouter.sip.message import parse_message
        from siprouter.transport.types import ListenSocket, Source
else:
    from siprouter.proxy.myself import Myself
    from siprouter.script.api import make_proxy_core
    from siprouter.script.loader import load_script
    from siprouter.script.testing import ManualTimerQueue, RecordingTransport
    from siprouter.sip.errors import SipParseError
    from siprouter.sip.message import parse_message
    from siprouter.transport.types import ListenSocket, Source

_SOCK = ListenSocket("udp", "127.0.0.1", 5060)
# The transaction timers run on a clock each input moves on a little (no event loop here),
# so retransmissions, timeouts and the 100 Trying are fuzzed too.
_TIMERS = ManualTimerQueue()
_CORE = make_proxy_core(RecordingTransport([_SOCK]), myself=Myself(["example.com"], [_SOCK], "sip.test"),
                        script=load_script(None), next_hop="sip:127.0.0.2:5060",
                        timer_queue=_TIMERS)
_SOURCE = Source("udp", "192.0.2.1", 5060, _SOCK)


def one_input(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError:
        pass
    else:
        for name in msg.header_names():
            msg.header_all(name)
        msg.to_bytes()
    _CORE.on_message(data, _SOURCE)
    _TIMERS.advance(0.3)
    _CORE.transport.sent.clear()


def main() -> None:
    if atheris is None:
        for arg in sys.argv[1:]:
            paths = sorted(Path(arg).rglob("*")) if Path(arg).is_dir() else [Path(arg)]
            for path in paths:
                if path.is_file():
                    one_input(path.read_bytes())
        print("atheris not installed: ran the given files once each")
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
