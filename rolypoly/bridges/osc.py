"""The OSC bridge: the rolypoly object behind a UDP port, for Max, Pd or any OSC client.

Every message of the rolypoly object is an address ``/rolypoly/<message> args...``;
the object's outlets come back as OSC messages.  The bridge checks every packet before
the engine sees it (address, argument count and types, ranges, paths), answers problems
with ``/rolypoly/error <text>`` and keeps serving whatever arrives.

Incoming (see :data:`INCOMING`)::

    /rolypoly/read <score.mid>           /rolypoly/start          /rolypoly/stop
    /rolypoly/train [w_v w_o w_g [w_r]]  /rolypoly/write [name.mid] (inside takes_dir/models_dir)
    /rolypoly/load [model.pt]            /rolypoly/kit [kit file]  /rolypoly/soundcheck [s] [instrument]
    /rolypoly/introspect <from> <to...>  /rolypoly/set <attribute> <value...>
    /rolypoly/ping [args...]             -> /rolypoly/pong args...
    /rolypoly/reply_to <port>            replies go to this port on the sender's host (0 = the sender)

Outgoing (see :data:`OUTGOING`)::

    /rolypoly/hit <drum 0-8> <velocity 0-127> <time ms>   /rolypoly/onset <tau ms>
    /rolypoly/playhead <ms>   /rolypoly/status <text>   /rolypoly/error <text>   /rolypoly/pong ...

Replies go to ``osc.reply_host:osc.reply_port`` when configured, else to the port named by
the last ``/rolypoly/reply_to`` (Max's ``udpsend`` and Pd's ``netsend`` send from a port
they do not listen on), else to the sender of the packet.  Outlets go to the same place as
the replies to the most recent packet.

Audio: with ``osc.audio=on`` the engine plays through JACK (compiled callback) or the
sound card (:mod:`rolypoly.live.drivers`); with ``osc.audio=off`` a clock-only driver
advances it in real time without sound, so the patch plays its own sounds or MIDI from
the hits.  Messages are checked here for OSC types and paths, then by the engine's own
checks (:func:`rolypoly.live.engine.check_message`), the one place for argument rules.

Security: the server binds to ``osc.host`` (loopback by default), drops packets larger
than ``osc.max_packet_bytes``, ignores OSC address patterns (no wildcards: ``/rolypoly/*``
must not fire every message at once), ignores bundle time tags (a far-future bundle must
not stall the server), only sends to the sender's host, and ``write`` only writes inside
``takes_dir`` or ``models_dir``.

Examples
--------
>>> bridge = OscBridge(load_config(["osc.audio=off", "osc.port=0"]))   # doctest: +SKIP
>>> bridge.start(); bridge.address                                    # doctest: +SKIP
('127.0.0.1', 40123)
>>> bridge.close()                                                    # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from rolypoly.errors import AudioError, OscError, RolypolyError
from rolypoly.live.engine import ARG_COUNTS, SOUNDCHECK_S_RANGE, TRAIN_WEIGHT_RANGE, USAGE

PREFIX = "/rolypoly/"
#: Addresses the bridge serves (``/rolypoly/<name>``).
INCOMING = ("read", "start", "stop", "train", "write", "load", "kit", "introspect", "soundcheck", "set",
            "ping", "reply_to")
#: Addresses the bridge sends.
OUTGOING = ("hit", "onset", "playhead", "status", "error", "pong")
MAX_STRING = 4096          # characters in one string argument (paths included)
MAX_ARGS = 16
MAX_MESSAGES = 64          # messages in one packet (bundles included)
_PATTERN_CHARS = set("*?[]{},")
# Max sends paths as "Macintosh HD:/Users/..."; the volume prefix is not part of a POSIX path.
_MAX_VOLUME = re.compile(r"^[^/:]+:(/.*)$")


def served_addresses() -> tuple[str, ...]:
    """Every address the bridge accepts, e.g. ``/rolypoly/start``."""
    return tuple(PREFIX + name for name in INCOMING)


def sent_addresses() -> tuple[str, ...]:
    """Every address the bridge sends, e.g. ``/rolypoly/hit``."""
    return tuple(PREFIX + name for name in OUTGOING)


# -- building and checking messages ---------------------------------------------------------------
def encode(address: str, *args) -> bytes:
    """One OSC message as bytes (ints ``i``, floats ``f``, strings ``s``, bools ``T``/``F``, bytes ``b``).

    Examples
    --------
    >>> encode("/rolypoly/ping", 1)[:16]
    b'/rolypoly/ping\\x00\\x00'
    """
    from pythonosc.osc_message_builder import OscMessageBuilder
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, (bool, np.bool_)):
            b.add_arg(bool(a))
        elif isinstance(a, (int, np.integer)):
            a = int(a)
            b.add_arg(a, "i" if -2**31 <= a < 2**31 else "h")
        elif isinstance(a, (float, np.floating)):
            b.add_arg(float(a), "f")
        elif a is None:
            b.add_arg(None, "N")
        elif isinstance(a, (bytes, bytearray)):
            b.add_arg(bytes(a), "b")
        else:
            b.add_arg(str(a), "s")
    return b.build().dgram


def decode(data: bytes) -> list[tuple[str, list]]:
    """The messages of one packet (a message or a bundle) as ``(address, args)``; time tags ignored.

    Raises
    ------
    OscError
        When the packet is not valid OSC.
    """
    from pythonosc import osc_bundle, osc_message
    try:
        if osc_bundle.OscBundle.dgram_is_bundle(data):
            out: list = []
            stack = [osc_bundle.OscBundle(data)]
            while stack:
                for item in stack.pop(0):
                    if isinstance(item, osc_bundle.OscBundle):
                        stack.append(item)
                    else:
                        out.append((item.address, list(item.params)))
                    if len(out) > MAX_MESSAGES:
                        raise OscError(f"packet holds more than {MAX_MESSAGES} messages")
            return out
        if osc_message.OscMessage.dgram_is_message(data):
            m = osc_message.OscMessage(data)
            return [(m.address, list(m.params))]
    except OscError:
        raise
    except RecursionError:
        raise OscError("malformed OSC packet: bundles nested too deeply") from None
    except Exception as exc:  # python-osc raises ParseError, but also struct/Unicode/Index errors
        raise OscError(f"malformed OSC packet ({len(data)} bytes): {type(exc).__name__}: {exc}") from None
    head = data[:16].decode("ascii", "replace").replace("\x00", ".")
    raise OscError(f"not an OSC packet ({len(data)} bytes starting {head!r}): the address must start with '/'")


def _describe(value) -> str:
    if isinstance(value, bool):
        return f"bool {value}"
    if isinstance(value, (bytes, bytearray)):
        return f"blob of {len(value)} bytes"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    return f"{type(value).__name__} {str(value)[:40]}"


def _string(name: str, what: str, value) -> str:
    if not isinstance(value, str):
        raise OscError(f"{name}: {what} must be a string, got {_describe(value)}")
    if len(value) > MAX_STRING:
        raise OscError(f"{name}: {what} is {len(value)} characters long (at most {MAX_STRING})")
    if "\x00" in value or not value.strip():
        raise OscError(f"{name}: {what} is empty or holds NUL characters")
    return value


def _number(name: str, what: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OscError(f"{name}: {what} must be a number, got {_describe(value)}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise OscError(f"{name}: {what} {value!r} is outside [{lo:g}, {hi:g}]")
    return v


def _count(name: str, args: list, allowed: tuple[int, ...], usage: str) -> None:
    if len(args) not in allowed:
        n = ", ".join(str(a) for a in allowed[:-1]) + (" or " if len(allowed) > 1 else "") + str(allowed[-1])
        raise OscError(f"{name}: expected {n} argument{'s' if allowed != (1,) else ''}, got {len(args)} "
                       f"(usage: {PREFIX}{usage})")


def native_path(text: str) -> Path:
    """A path sent by a patch as a local path (``~`` expanded, Max's ``Volume:/...`` prefix dropped).

    Examples
    --------
    >>> str(native_path("Macintosh HD:/tmp/song.mid"))
    '/tmp/song.mid'
    """
    m = _MAX_VOLUME.match(text)
    if m and not os.path.exists(text):
        volume, rest = text.split(":", 1)[0], m.group(1)
        other = Path("/Volumes") / volume / rest.lstrip("/")   # macOS: a volume other than the boot disk
        text = str(other) if other.exists() else rest
    return Path(os.path.expanduser(text))


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether ``path`` (symlinks resolved) lies inside one of ``roots``."""
    real = path.resolve()
    return any(real == r or real.is_relative_to(r) for r in (root.resolve() for root in roots))


def open_audio(engine, audio: bool):
    """The engine's driver: the sound card (JACK or PortAudio) with ``audio``, else the clock only."""
    from rolypoly.live.drivers import ClockDriver, open_driver
    if not audio:
        return ClockDriver(engine).start()
    try:
        return open_driver(engine).start()
    except AudioError as exc:
        raise AudioError(f"{exc} (use osc.audio=off to only send hits)") from None


def _audio_on(value) -> bool:
    s = str(value).strip().lower()
    if s in ("on", "true", "1", "yes"):
        return True
    if s in ("off", "false", "0", "no", "none"):
        return False
    raise OscError(f"config osc.audio: expected on or off, got {value!r}")


def _port(key: str, value) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise OscError(f"config {key}: {value!r} is not a UDP port number") from None
    if not 0 <= port <= 65535:
        raise OscError(f"config {key}: {port} is not a UDP port (0-65535)")
    return port


class OscBridge:
    """The rolypoly object served over OSC/UDP (see module docs).

    Parameters
    ----------
    cfg : composed config; reads ``osc.*``, ``takes_dir``, ``models_dir`` and the engine's keys
    engine : an existing :class:`rolypoly.live.engine.Rolypoly` (made from ``cfg`` when None)
    host, port, audio : override ``osc.host``, ``osc.port`` (0 = any free port), ``osc.audio``

    Examples
    --------
    >>> with OscBridge(load_config(["osc.audio=off", "osc.port=0"])) as bridge:  # doctest: +SKIP
    ...     print(bridge.address)
    """

    def __init__(self, cfg, engine=None, host: str | None = None, port: int | None = None,
                 audio: str | bool | None = None):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        osc = cfg.osc
        self.cfg = cfg
        self.host = str(host if host is not None else osc.host)
        port = _port("osc.port", port if port is not None else osc.port)
        self.audio = _audio_on(osc.audio if audio is None else audio)
        self.max_packet = int(osc.max_packet_bytes)  # the config schema holds the default and range
        self.fixed_reply = None
        if osc.reply_port:
            self.fixed_reply = (str(osc.reply_host or "127.0.0.1"), _port("osc.reply_port", osc.reply_port))
        self.reply_port = 0            # set by /rolypoly/reply_to
        self.target: tuple | None = self.fixed_reply
        self.write_roots = [Path(cfg.takes_dir), Path(cfg.models_dir)]
        self.packets = 0
        self.errors = 0
        self.lock = threading.RLock()  # one engine message at a time (server thread, end-of-take watcher)
        if engine is None:
            from rolypoly.live.engine import Rolypoly
            engine = Rolypoly(cfg, offline=False)
        self.engine = engine
        for outlet in ("hit", "onset", "playhead", "status", "error"):
            engine.connect(outlet, getattr(self, f"_out_{outlet}"))

        self.dispatcher = Dispatcher()
        for name in INCOMING:
            self.dispatcher.map(PREFIX + name, getattr(self, f"_do_{name}"), needs_reply_address=True)
        bridge = self

        class Server(BlockingOSCUDPServer):
            max_packet_size = 65536  # read whole datagrams so oversized ones are seen, not truncated

            def verify_request(self, request, client_address):
                return True  # non-OSC garbage gets an error reply too

            def finish_request(self, request, client_address):
                bridge.handle_packet(request[0], client_address)

        try:
            self.server = Server((self.host, port), self.dispatcher)
        except OSError as exc:
            raise OscError(f"cannot listen on {self.host}:{port}: {exc.strerror or exc} "
                           f"(is another bridge running? choose one with osc.port=...)") from None
        self.socket = self.server.socket
        self.driver = None
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._serving: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the server listens on."""
        return self.socket.getsockname()[:2]

    def start(self, serve: bool = True) -> "OscBridge":
        """Start the audio driver, the end-of-take watcher and (``serve=True``) the server thread."""
        self.driver = open_audio(self.engine, self.audio)
        threads = [threading.Thread(target=self._watch, name="rolypoly-osc-watch", daemon=True)]
        if serve:
            self._serving = threading.Thread(target=self.serve_forever, name="rolypoly-osc", daemon=True)
            threads.append(self._serving)
        for t in threads:
            t.start()
        self._threads += threads
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until :meth:`close` (or Ctrl-C)."""
        if self.driver is None:
            self.start(serve=False)
        self._serving = threading.current_thread()
        try:
            self.server.serve_forever(poll_interval=0.1)
        finally:
            self._serving = None

    def close(self) -> None:
        """Stop serving; a take in progress is stopped and saved."""
        if self._closing.is_set():
            return
        self._closing.set()
        with self.lock:
            if self.engine.playing or self.engine.schedule is not None:
                self.engine.message("stop")
        if self._serving and threading.current_thread() is not self._serving:
            self.server.shutdown()  # returns once serve_forever has left its loop
        if self.driver is not None:
            self.driver.close()
        self.server.server_close()

    def __enter__(self) -> "OscBridge":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _watch(self) -> None:
        # The engine stops itself at the end of the score but only a stop message saves the take,
        # which ``write`` and ``train`` need: send it here, under the lock.  A device that stops
        # delivering blocks ends the take too (saved), with an error.
        eng = self.engine
        while not self._closing.wait(0.02):
            if eng.take_open:
                why = self.driver.problem() if (self.driver is not None and self.audio) else None
                if why or not eng.playing:
                    with self.lock:
                        if eng.take_open:
                            if why:
                                eng.emit("error", f"{why}; the take so far is saved")
                            eng.message("stop")

    # -- sending -------------------------------------------------------------------------------
    def send(self, name: str, *args, to: tuple | None = None) -> None:
        """Send ``/rolypoly/<name> args...`` to ``to`` or the current reply address."""
        to = to or self.target
        if to is None:
            return
        try:
            self.socket.sendto(encode(PREFIX + name, *args), to)
        except OSError:
            pass  # a client that went away must not stop the bridge

    def _out_hit(self, sample, drum, velocity, offset_ms) -> None:
        self.send("hit", int(drum), int(velocity), 1000.0 * float(sample) / self.engine.sr)

    def _out_onset(self, tau_ms, row, time_s) -> None:
        self.send("onset", float(tau_ms))

    def _out_playhead(self, ms) -> None:
        self.send("playhead", float(ms))

    def _out_status(self, text) -> None:
        self.send("status", str(text))

    def _out_error(self, text) -> None:
        self.errors += 1
        self.send("error", str(text))

    def _reply_target(self, sender: tuple) -> tuple:
        if self.fixed_reply is not None:
            return self.fixed_reply
        if self.reply_port:
            return (sender[0], self.reply_port)
        return tuple(sender[:2])

    # -- receiving -----------------------------------------------------------------------------
    def handle_packet(self, data: bytes, sender: tuple) -> None:
        """Check and run one UDP packet; every problem becomes an ``/rolypoly/error`` reply."""
        self.packets += 1
        self.target = self._reply_target(sender)
        try:
            if len(data) > self.max_packet:
                raise OscError(f"packet of {len(data)} bytes dropped: larger than osc.max_packet_bytes "
                               f"({self.max_packet})")
            messages = decode(data)
            for address, args in messages:
                self._dispatch(address, args, sender)
        except RolypolyError as exc:
            self._out_error(str(exc))
        except Exception as exc:  # a bug in a handler must not stop the server
            self._out_error(f"internal error {type(exc).__name__}: {exc}")
            if getattr(self.cfg, "debug", False):
                import traceback
                traceback.print_exc()

    def _dispatch(self, address: str, args: list, sender: tuple) -> None:
        if not address.startswith(PREFIX):
            raise OscError(f"unknown address {address[:80]!r}: addresses start with {PREFIX}")
        if _PATTERN_CHARS & set(address):
            raise OscError(f"address patterns are not served ({address[:80]!r}): name one message")
        if len(args) > MAX_ARGS:
            raise OscError(f"{address[:80]}: {len(args)} arguments is too many (at most {MAX_ARGS})")
        handlers = list(self.dispatcher.handlers_for_address(address))
        if not handlers:
            raise OscError(f"unknown address {address[:80]!r}; served: {', '.join(served_addresses())}")
        for h in handlers:
            h.callback(sender, address, *args)

    def _engine(self, name: str, *args) -> bool:
        with self.lock:
            return self.engine.message(name, *args)

    # -- one handler per address ------------------------------------------------------------------
    def _do_ping(self, sender, address, *args) -> None:
        self.send("pong", *args)

    def _do_reply_to(self, sender, address, *args) -> None:
        _count("reply_to", list(args), (1,), "reply_to <port>")
        port = _number("reply_to", "port", args[0], 0, 65535)
        if port != int(port):
            raise OscError(f"reply_to: port {args[0]!r} is not a whole number")
        self.reply_port = int(port)
        self.target = self._reply_target(sender)
        self.send("status", f"replying to {self.target[0]}:{self.target[1]}")

    def _do_read(self, sender, address, *args) -> None:
        _count("read", list(args), ARG_COUNTS["read"], USAGE["read"])
        path = native_path(_string("read", "path", args[0]))
        # the score reader checks the file (exists, size, MIDI header) and names the problem
        self._engine("read", str(path))

    def _do_start(self, sender, address, *args) -> None:
        _count("start", list(args), ARG_COUNTS["start"], USAGE["start"])
        self._engine("start")

    def _do_stop(self, sender, address, *args) -> None:
        _count("stop", list(args), ARG_COUNTS["stop"], USAGE["stop"])
        self._engine("stop")

    def _do_train(self, sender, address, *args) -> None:
        _count("train", list(args), ARG_COUNTS["train"], USAGE["train"])
        names = ("w_v", "w_o", "w_g", "w_r")
        weights = [_number("train", f"weight {names[i]}", a, *TRAIN_WEIGHT_RANGE) for i, a in enumerate(args)]
        self._engine("train", *weights)

    def _do_write(self, sender, address, *args) -> None:
        _count("write", list(args), ARG_COUNTS["write"], USAGE["write"])
        if not args:
            self._engine("write")
            return
        path = native_path(_string("write", "path", args[0]))
        if not path.is_absolute():
            path = Path(self.cfg.takes_dir) / path
        if path.suffix.lower() not in (".mid", ".midi"):
            raise OscError(f"write: {path} must end in .mid")
        if not inside(path, self.write_roots):
            raise OscError(f"write: {path} is outside the takes and models folders "
                           f"({', '.join(str(r) for r in self.write_roots)}); refused")
        self._engine("write", str(path))

    def _existing_file(self, name: str, args: tuple) -> list:
        _count(name, list(args), ARG_COUNTS[name], USAGE[name])
        if not args:
            return []
        path = native_path(_string(name, "path", args[0]))
        if not path.is_file():
            raise OscError(f"{name}: {path}: no such file")
        return [str(path)]

    def _do_load(self, sender, address, *args) -> None:
        self._engine("load", *self._existing_file("load", args))

    def _do_kit(self, sender, address, *args) -> None:
        self._engine("kit", *self._existing_file("kit", args))

    def _do_introspect(self, sender, address, *args) -> None:
        from rolypoly.score.drums import DRUMS, N_DRUMS
        if len(args) < 2 or len(args) > N_DRUMS:
            raise OscError(f"introspect: expected a source drum and 1-{N_DRUMS - 1} target drums, got "
                           f"{len(args)} arguments (usage: {PREFIX}introspect kick snare)")
        names = []
        for i, a in enumerate(args):
            if isinstance(a, (int, float)) and not isinstance(a, bool):
                d = _number("introspect", f"drum {i + 1}", a, 0, N_DRUMS - 1)
                if d != int(d):
                    raise OscError(f"introspect: drum {a!r} is not a whole number")
                names.append(DRUMS[int(d)])
            else:
                names.append(_string("introspect", f"drum {i + 1}", a)[:64])
        self._engine("introspect", *names)

    def _do_soundcheck(self, sender, address, *args) -> None:
        _count("soundcheck", list(args), ARG_COUNTS["soundcheck"], USAGE["soundcheck"])
        vals = []
        if args:
            vals.append(_number("soundcheck", "seconds", args[0], *SOUNDCHECK_S_RANGE))
        if len(args) > 1:
            vals.append(_string("soundcheck", "instrument", args[1])[:64])
        self._engine("soundcheck", *vals)

    def _do_set(self, sender, address, *args) -> None:
        from rolypoly.live.engine import ATTRIBUTES, check_attribute
        if not args:
            raise OscError(f"set: expected an attribute and a value (usage: {PREFIX}set latency 12); "
                           f"attributes: {', '.join(ATTRIBUTES)}")
        attribute = _string("set", "attribute", args[0])
        values = list(args[1:])
        for v in values:
            if isinstance(v, (bytes, bytearray)) or (v is not None and not isinstance(v, (bool, int, float, str))):
                raise OscError(f"set {attribute[:40]}: value must be a number or a string, got {_describe(v)}")
        try:
            check_attribute(attribute, values)   # the engine's rules, checked before anything changes
        except RolypolyError as exc:
            raise OscError(f"set: {exc}") from None
        old_device = self.engine.device
        if self._engine("set", attribute, *values) and attribute == "device" and self.audio:
            self._reopen_audio(old_device)

    def _reopen_audio(self, old_device) -> None:
        # the stream was opened on the old device: reopen it, or go back to the old one if the new one fails
        with self.lock:
            self.driver.close()
            try:
                self.driver = open_audio(self.engine, True)
                self.send("status", f"audio device {self.engine.device!r}")
            except AudioError as exc:
                self._out_error(f"set device: {exc}; keeping {old_device!r}")
                self.engine.device = old_device
                self.driver = open_audio(self.engine, True)


def free_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody listens on right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log(text: str) -> None:
    print(f"rolypoly: {text}", file=sys.stderr, flush=True)
