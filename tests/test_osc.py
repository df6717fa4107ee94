"""The OSC bridge: replies, validation, a duet driven over OSC, fuzzing, and liblo as an independent client."""
from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import meter, note, tempo, write_midi

REPO = Path(__file__).resolve().parents[1]
PPQ = 480
# 2 bars of 4/4 at 240 bpm (2 s): kick on 1 and 3, snare on 2 and 4, closed hat on every 8th.
BPM = 240.0


def duet_score(path: Path) -> tuple[Path, list[tuple[int, int, float]]]:
    """Write the test score; return it with its expected hits (drum, velocity, time ms), from first principles."""
    from rolypoly.score.drums import PITCH_TO_DRUM
    beat_ms = 60000.0 / BPM
    events, expected = [tempo(0, BPM), meter(0, 4, 4)], []
    for eighth in range(16):
        tick = eighth * PPQ // 2
        hits = [(42, 70 + eighth)]
        if eighth % 4 == 0:
            hits.append((36, 110))
        elif eighth % 4 == 2:
            hits.append((38, 100))
        for pitch, vel in hits:
            events += note(tick, pitch, vel)
            expected.append((PITCH_TO_DRUM[pitch], vel, eighth * beat_ms / 2))
    write_midi(path, [events], ppq=PPQ)
    return path, sorted(expected, key=lambda h: (h[2], h[0]))


def bridge_config(tmp: Path, *extra: str):
    from rolypoly.config import load_config
    return load_config(["osc.audio=off", "osc.port=0", "osc.host=127.0.0.1", "engine.enable=false",
                        f"takes_dir={tmp / 'takes'}", f"models_dir={tmp / 'models'}", *extra])


class Client:
    """A plain UDP socket speaking OSC through the bridge's own encoder/decoder."""

    def __init__(self, dest, port: int = 0):
        self.dest = tuple(dest)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]

    def send(self, address: str, *args) -> None:
        from rolypoly.bridges.osc import encode
        self.sock.sendto(encode(address, *args), self.dest)

    def raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.dest)

    def messages(self, timeout: float):
        """Yield (address, args) until ``timeout`` seconds pass with nothing arriving."""
        from rolypoly.bridges.osc import decode
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            yield from decode(data)

    def expect(self, address: str, timeout: float = 10.0) -> list:
        """The args of the next message at ``address`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        for addr, args in self.messages(timeout):
            if addr == address:
                return args
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no {address} within {timeout} s")

    def drain(self) -> list:
        return list(self.messages(0.05))

    def ping(self, token=7, timeout: float = 10.0) -> bool:
        """Ping and wait for the pong carrying ``token`` (fuzzed pings may answer first)."""
        self.drain()
        self.send("/rolypoly/ping", token)
        deadline = time.monotonic() + timeout
        for addr, args in self.messages(timeout):
            if addr == "/rolypoly/pong" and args == [token]:
                return True
            if time.monotonic() > deadline:
                break
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from rolypoly.bridges.osc import OscBridge
    tmp = tmp_path_factory.mktemp("osc")
    bridge = OscBridge(bridge_config(tmp)).start()
    client = Client(bridge.address)
    yield bridge, client, tmp
    client.close()
    bridge.close()


def test_every_engine_message_is_served():
    from rolypoly.bridges.osc import (
        INCOMING,
        OUTGOING,
        sent_addresses,
        served_addresses,
    )
    from rolypoly.live.engine import MESSAGES, OUTLETS
    assert set(MESSAGES) <= set(INCOMING)
    assert set(OUTLETS) <= set(OUTGOING)
    assert all(a.startswith("/rolypoly/") for a in served_addresses() + sent_addresses())


def test_listens_on_loopback_by_default():
    from rolypoly.bridges.osc import OscBridge
    from rolypoly.config import load_config
    cfg = load_config(["osc.port=0", "osc.audio=off"])
    assert cfg.osc.host == "127.0.0.1"
    bridge = OscBridge(cfg)
    try:
        assert bridge.address[0] == "127.0.0.1"
    finally:
        bridge.close()


def test_ping_pong_keeps_arguments(served):
    _, client, _ = served
    client.drain()
    client.send("/rolypoly/ping", 3, 2.5, "three")
    args = client.expect("/rolypoly/pong")
    assert args[0] == 3 and args[2] == "three" and abs(args[1] - 2.5) < 1e-6


def test_set_replies_with_status_and_changes_the_engine(served):
    bridge, client, _ = served
    client.drain()
    client.send("/rolypoly/set", "lookahead", 321.0)
    text = client.expect("/rolypoly/status")[0]
    assert "lookahead" in text
    assert bridge.engine.lookahead_ms == pytest.approx(321.0)
    client.send("/rolypoly/set", "generate_vels", 0.2, 0.9)
    client.expect("/rolypoly/status")
    assert bridge.engine.generate_vels == pytest.approx((0.2, 0.9))


def test_reply_to_redirects_replies_to_another_port(served):
    bridge, client, _ = served
    listener = Client(bridge.address)
    try:
        client.send("/rolypoly/reply_to", listener.port)
        assert "replying to" in listener.expect("/rolypoly/status")[0]
        client.send("/rolypoly/ping", 11)
        assert listener.expect("/rolypoly/pong") == [11]
        client.send("/rolypoly/reply_to", 0)  # back to the sender
        assert client.ping(12)
    finally:
        listener.close()


BAD = [
    (("/rolypoly/bogus",), "unknown address"),
    (("/elsewhere/start",), "unknown address"),
    (("/rolypoly/*",), "patterns"),
    (("/rolypoly/{start,stop}",), "patterns"),
    (("/rolypoly/start", 1), "expected 0 arguments"),
    (("/rolypoly/read",), "expected 1 argument"),
    (("/rolypoly/read", "a.mid", "b.mid"), "expected 1 argument"),
    (("/rolypoly/read", 5), "must be a string"),
    (("/rolypoly/read", b"\x00\x01blob"), "blob"),
    (("/rolypoly/read", "/no/such/score.mid"), "no such file"),
    (("/rolypoly/read", "x" * 5000), "characters long"),
    (("/rolypoly/train", 1.0), "expected 0, 3 or 4 arguments"),
    (("/rolypoly/train", 1.0, "heavy", 1.0), "must be a number"),
    (("/rolypoly/train", 1.0, 1e30, 1.0), "outside"),
    (("/rolypoly/train", float("nan"), 1.0, 1.0), "outside"),
    (("/rolypoly/set",), "expected an attribute"),
    (("/rolypoly/set", "volume", 3), "unknown attribute"),
    (("/rolypoly/set", "lookahead", 1e12), "outside"),
    (("/rolypoly/set", "lookahead", float("inf")), "finite"),
    (("/rolypoly/set", "latency"), "expected 1 value"),
    (("/rolypoly/set", "enable", "perhaps"), "on/off"),
    (("/rolypoly/set", "filter_hits", "everything"), "not one of"),
    (("/rolypoly/reply_to", 70000), "outside"),
    (("/rolypoly/reply_to", "me"), "must be a number"),
    (("/rolypoly/introspect", "kick"), "target drums"),
    (("/rolypoly/introspect", "kick", 42), "outside"),
    (("/rolypoly/soundcheck", -3.0), "outside"),
    (("/rolypoly/load", "/no/such/model.pt"), "no such file"),
    (("/rolypoly/kit", "/no/such/kit.toml"), "no such file"),
]


@pytest.mark.parametrize("message,fragment", BAD, ids=[f"{m[0]}-{i}" for i, (m, _) in enumerate(BAD)])
def test_bad_messages_get_an_error_naming_the_problem(served, message, fragment):
    _, client, _ = served
    client.drain()
    client.send(*message)
    text = client.expect("/rolypoly/error")[0]
    assert fragment.lower() in text.lower(), text
    assert client.ping()


def test_bad_packets_get_an_error_and_the_server_keeps_running(served):
    _, client, _ = served
    cases = [(b"hello world", "not an OSC packet"),
             (b"/rolypoly/ping\x00\x00,i\x00\x00\x00\x01", "malformed"),   # int argument cut short
             (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 400) + b"/x", "malformed"),
             (b"/rolypoly/ping\x00\x00,s\x00\x00" + b"a" * 9000, "larger than")]
    for data, fragment in cases:
        client.drain()
        client.raw(data)
        text = client.expect("/rolypoly/error")[0]
        assert fragment in text, text
    assert client.ping()


def test_read_refuses_files_that_are_not_midi(served, tmp_path):
    _, client, _ = served
    fake = tmp_path / "notes.mid"
    fake.write_text("this is not MIDI\n")
    client.drain()
    client.send("/rolypoly/read", str(fake))
    assert "not a MIDI file" in client.expect("/rolypoly/error")[0]
    client.send("/rolypoly/read", str(tmp_path))
    assert "not a file" in client.expect("/rolypoly/error")[0]


def test_bundles_are_unpacked_but_time_tags_never_stall_the_server(served):
    from pythonosc.osc_bundle_builder import OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder
    _, client, _ = served
    b = OscBundleBuilder(time.time() + 3600.0)   # an hour ahead: must not wait
    for i in range(3):
        m = OscMessageBuilder("/rolypoly/ping")
        m.add_arg(100 + i)
        b.add_content(m.build())
    client.drain()
    client.raw(b.build().dgram)
    got = [client.expect("/rolypoly/pong", timeout=2.0)[0] for _ in range(3)]
    assert sorted(got) == [100, 101, 102]


def test_duet_over_osc(served, tmp_path):
    """read, start, receive the score's hits at their times, the take is saved, write it."""
    bridge, client, tmp = served
    score, expected = duet_score(tmp_path / "two_bars.mid")
    client.drain()
    client.send("/rolypoly/read", str(score))
    assert "read" in client.expect("/rolypoly/status")[0]
    t0 = time.monotonic()
    client.send("/rolypoly/start")
    hits, playheads, statuses = [], [], []
    for address, args in client.messages(timeout=30.0):
        if address == "/rolypoly/hit":
            hits.append((args[0], args[1], args[2], time.monotonic() - t0))
        elif address == "/rolypoly/playhead":
            playheads.append(args[0])
        elif address == "/rolypoly/status":
            statuses.append(args[0])
            if args[0].startswith("take saved"):
                break
        elif address == "/rolypoly/error":
            assert "model" in args[0] or "playing the score as written" in args[0], args[0]
    assert any(s.startswith("take saved") for s in statuses), statuses
    assert [(d, v) for d, v, _, _ in hits] == [(d, v) for d, v, _ in expected]
    for (d, v, t, _), (_, _, t_exp) in zip(hits, expected):
        assert abs(t - t_exp) < 3.0, (d, t, t_exp)
    times = [t for _, _, t, _ in hits]
    assert times == sorted(times)
    # real time: the last hit (1.875 s into the score) cannot arrive before its time
    assert hits[-1][3] >= (expected[-1][2] - 50.0) / 1000.0
    assert playheads and playheads == sorted(playheads)
    # write a copy inside the takes folder; outside it is refused
    client.send("/rolypoly/write", "mine.mid")
    assert "wrote" in client.expect("/rolypoly/status")[0]
    assert (tmp / "takes" / "mine.mid").is_file()
    for bad in ("../escape.mid", str(tmp_path / "elsewhere.mid"), "/etc/rolypoly.mid", "take.txt"):
        client.send("/rolypoly/write", bad)
        text = client.expect("/rolypoly/error")[0]
        assert ("must end in .mid" in text) if bad.endswith(".txt") else ("refused" in text), (bad, text)
    assert not (tmp / "escape.mid").exists() and not (tmp_path / "elsewhere.mid").exists()


def test_write_cannot_escape_through_a_symlink(served, tmp_path):
    bridge, client, tmp = served
    (tmp / "takes").mkdir(exist_ok=True)
    link = tmp / "takes" / "out"
    if not link.exists():
        link.symlink_to(tmp_path, target_is_directory=True)
    client.drain()
    client.send("/rolypoly/write", "out/evil.mid")
    text = client.expect("/rolypoly/error")[0]
    assert "refused" in text or "nothing to write" in text
    assert not (tmp_path / "evil.mid").exists()


def _seed_packets(score: str) -> list[bytes]:
    from rolypoly.bridges.osc import encode
    return [encode(*m) for m in (
        ("/rolypoly/ping", 1), ("/rolypoly/start",), ("/rolypoly/stop",), ("/rolypoly/read", "/no/such.mid"),
        ("/rolypoly/set", "latency", 12.0), ("/rolypoly/set", "generate_vels", 0.1, 0.9),
        ("/rolypoly/set", "loop", 0), ("/rolypoly/set", "enable", 0), ("/rolypoly/train", 1.0, 1.0, 1.0),
        ("/rolypoly/write", "a.mid"), ("/rolypoly/kit", "/no/kit.toml"), ("/rolypoly/load", "/no/m.pt"),
        ("/rolypoly/introspect", "kick", "snare"), ("/rolypoly/soundcheck", 2.0, "guitar"),
        ("/rolypoly/reply_to", 0), ("/rolypoly/read", score))]


def test_fuzz_10000_random_and_mutated_packets(tmp_path):
    """No crash, no hang: every packet handled and the bridge still answers a ping afterwards."""
    from rolypoly.bridges.osc import OscBridge
    rng = random.Random(1234)
    bad_score = tmp_path / "garbage.mid"
    bad_score.write_bytes(b"MThd" + bytes(rng.randrange(256) for _ in range(60)))  # MIDI header, junk body
    seeds = _seed_packets(str(bad_score))
    bridge = OscBridge(bridge_config(tmp_path)).start()
    client = Client(bridge.address)
    sent = 0
    t0 = time.monotonic()
    try:
        for batch in range(50):
            for _ in range(200):
                kind = rng.random()
                if kind < 0.3:
                    data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
                    if rng.random() < 0.5:
                        data = b"/rolypoly/" + data
                else:
                    data = bytearray(rng.choice(seeds))
                    for _ in range(rng.randrange(1, 6)):
                        op = rng.random()
                        if op < 0.5 and data:
                            data[rng.randrange(len(data))] = rng.randrange(256)
                        elif op < 0.7:
                            data = data[:rng.randrange(len(data) + 1)]
                        elif op < 0.9:
                            i = rng.randrange(len(data) + 1)
                            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
                        else:
                            data += data * rng.randrange(1, 4)
                    data = bytes(data)
                if not data:
                    data = b"\x00"
                client.raw(data)
                sent += 1
            # a barrier per batch: the bridge must still answer (and the batch cannot overflow its buffer);
            # mutated /rolypoly/reply_to packets may have sent replies to another port: take them back first
            client.send("/rolypoly/reply_to", 0)
            assert client.ping(batch, timeout=20.0), f"no pong after batch {batch}"
            assert time.monotonic() - t0 < 240, "fuzzing takes too long: the bridge is hanging"
        assert sent == 10_000
        assert bridge.packets >= sent
        assert bridge._serving is not None and bridge._serving.is_alive()
        assert client.ping(999)
    finally:
        client.close()
        bridge.close()
    # nothing was written outside the take and model folders
    assert {p.name for p in tmp_path.iterdir()} <= {"garbage.mid", "models", "takes"}  # a set: an extra name fails


# -- the command line, through liblo's oscsend/oscdump (an independent OSC implementation) --------
def _wait_port(port: int, timeout: float = 60.0) -> None:
    c = Client(("127.0.0.1", port))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c.send("/rolypoly/ping", 1)
            if any(a == "/rolypoly/pong" for a, _ in c.messages(0.3)):
                return
        raise AssertionError(f"rolypoly serve on port {port} did not answer")
    finally:
        c.close()


@pytest.fixture
def serve_process(tmp_path):
    """``rolypoly serve`` in its own process, audio off."""
    from rolypoly.bridges.osc import free_port
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "rolypoly", "serve", "--verbose", f"osc.port={port}",
                             "osc.audio=off", "engine.enable=false", f"takes_dir={tmp_path / 'takes'}",
                             f"models_dir={tmp_path / 'models'}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_port(port)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.skipif(shutil.which("oscsend") is None or shutil.which("oscdump") is None,
                    reason="liblo-tools (oscsend, oscdump) not installed")
def test_serve_command_with_liblo_tools(serve_process, tmp_path):
    from rolypoly.bridges.osc import free_port
    port, proc = serve_process
    reply = free_port()
    dump = subprocess.Popen(["oscdump", "-L", str(reply)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    score, expected = duet_score(tmp_path / "two_bars.mid")

    def oscsend(*args):
        subprocess.run(["oscsend", "localhost", str(port), *args], check=True, timeout=10)

    try:
        time.sleep(0.3)  # oscdump binds its port
        oscsend("/rolypoly/reply_to", "i", str(reply))
        oscsend("/rolypoly/ping", "si", "hello", "42")
        oscsend("/rolypoly/no_such_thing")
        oscsend("/rolypoly/set", "sf", "latency", "500000")
        oscsend("/rolypoly/read", "s", str(score))
        oscsend("/rolypoly/start")
        lines = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            line = dump.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if "take saved" in line:
                break
    finally:
        dump.terminate()
        dump.wait(timeout=10)
    text = "\n".join(lines)
    assert any("/rolypoly/pong" in ln and "hello" in ln and "42" in ln for ln in lines), text
    assert any("/rolypoly/error" in ln and "no_such_thing" in ln for ln in lines), text
    assert any("/rolypoly/error" in ln and "latency" in ln for ln in lines), text
    hits = [ln.split() for ln in lines if "/rolypoly/hit" in ln]
    # oscdump prints "[timestamp] /rolypoly/hit iif drum velocity time"
    parsed = []
    for parts in hits:
        i = parts.index("/rolypoly/hit")
        assert parts[i + 1] == "iif", parts
        parsed.append((int(parts[i + 2]), int(parts[i + 3]), float(parts[i + 4])))
    assert [(d, v) for d, v, _ in parsed] == [(d, v) for d, v, _ in expected]
    assert all(abs(t - te) < 3.0 for (_, _, t), (_, _, te) in zip(parsed, expected))
    assert proc.poll() is None, "the server died"


def test_native_path_understands_max_paths(tmp_path):
    from rolypoly.bridges.osc import native_path
    target = tmp_path / "song.mid"
    assert native_path(f"Macintosh HD:{target}") == target
    assert native_path(str(target)) == target
    assert native_path("~/x.mid") == Path.home() / "x.mid"


def test_read_accepts_a_max_style_path(served, tmp_path):
    _, client, _ = served
    score, _ = duet_score(tmp_path / "max_style.mid")
    client.drain()
    client.send("/rolypoly/read", f"Macintosh HD:{score}")
    assert "2 bars" in client.expect("/rolypoly/status")[0]


def test_configured_reply_address_gets_the_replies(tmp_path):
    from rolypoly.bridges.osc import OscBridge
    listener = Client(("127.0.0.1", 9))
    bridge = OscBridge(bridge_config(tmp_path, "osc.reply_host=127.0.0.1", f"osc.reply_port={listener.port}")).start()
    client = Client(bridge.address)
    try:
        client.send("/rolypoly/ping", 21)
        assert listener.expect("/rolypoly/pong", timeout=5.0) == [21]
        assert client.drain() == []
    finally:
        client.close()
        listener.close()
        bridge.close()
