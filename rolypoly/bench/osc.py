"""OSC bridge round trip on loopback: median and p99 over N messages.

A client sends one message and waits for its reply before sending the next, timing each
round trip with ``perf_counter``:

- ``udp echo`` (baseline): a bare Python UDP echo server in its own process, the floor
  that any Python UDP server on this machine pays;
- ``/rolypoly/ping -> /rolypoly/pong``: the bridge's parse, check, dispatch and reply;
- ``/rolypoly/set lookahead v -> /rolypoly/status``: the same through the rolypoly
  object (validation, attribute set, status outlet, pump);
- ``ping while playing``: the ping again while the demo score plays (looped, audio off),
  with the clock thread running and hits and playheads flowing to the same client.

The bridge runs as ``rolypoly serve osc.audio=off`` in its own process (``--in-process``
runs it on a thread of the benchmark instead).  The target is median <= 1 ms.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np

from rolypoly.report import Table

HELP = "OSC bridge round trip (/rolypoly/ping, /rolypoly/set) on loopback: median, p99 vs a UDP echo"

_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, addr = s.recvfrom(65536)
    s.sendto(data, addr)
"""


def add_arguments(parser) -> None:
    parser.add_argument("-n", "--messages", type=int, default=1000, help="round trips per case (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed round trips first (default 50)")
    parser.add_argument("--in-process", action="store_true", help="run the bridge on a thread of this process")
    parser.add_argument("--idle-only", action="store_true", help="skip the case that pings while a take plays")


def _round_trips(sock, dest, packets, expect: bytes, n: int, warmup: int) -> np.ndarray:
    """Send packets[i % len] and wait for a reply whose address starts with ``expect``."""
    times = np.zeros(n)
    clock = time.perf_counter
    for i in range(-warmup, n):
        pkt = packets[i % len(packets)]
        t0 = clock()
        sock.sendto(pkt, dest)
        while True:
            data = sock.recv(65536)
            if data.startswith(expect):
                break
        if i >= 0:
            times[i] = clock() - t0
    return times * 1000.0


def _wait_ready(sock, dest, timeout: float = 120.0) -> None:
    from rolypoly.bridges.osc import encode
    from rolypoly.errors import OscError
    deadline = time.monotonic() + timeout
    sock.settimeout(0.25)
    while time.monotonic() < deadline:
        sock.sendto(encode("/rolypoly/ping"), dest)
        try:
            if sock.recv(65536).startswith(b"/rolypoly/pong"):
                sock.settimeout(5.0)
                # drain any late pongs of earlier tries
                sock.settimeout(0.05)
                try:
                    while True:
                        sock.recv(65536)
                except socket.timeout:
                    pass
                sock.settimeout(5.0)
                return
        except socket.timeout:
            continue
    raise OscError(f"the bridge at {dest[0]}:{dest[1]} did not answer /rolypoly/ping within {timeout:g} s")


def run(cfg, args):
    from rolypoly.bridges.osc import OscBridge, encode, free_port
    from rolypoly.errors import OscError

    n, warmup = int(args.messages), int(args.warmup)
    if n < 10:
        raise OscError(f"--messages {n}: need at least 10 round trips for a p99")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    procs, bridge, scratch = [], None, None
    results = {}
    try:
        echo = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, text=True)
        procs.append(echo)
        echo_dest = ("127.0.0.1", int(echo.stdout.readline()))
        results["udp echo (baseline)"] = _round_trips(sock, echo_dest, [encode("/rolypoly/ping", 1)],
                                                      b"/rolypoly/ping", n, warmup)
        import tempfile
        scratch = tempfile.TemporaryDirectory(prefix="rolypoly-bench-osc-")  # takes of the playing case go here
        overrides = ["osc.audio=off", "osc.host=127.0.0.1", "osc.reply_port=null", "engine.enable=false",
                     f"takes_dir={scratch.name}/takes", f"models_dir={scratch.name}/models"]
        if args.in_process:
            from rolypoly.config import load_config
            bridge = OscBridge(load_config(overrides + ["osc.port=0"])).start()
            dest = bridge.address
        else:
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "rolypoly", "serve", f"osc.port={port}"] + overrides,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            dest = ("127.0.0.1", port)
        _wait_ready(sock, dest)
        results["/rolypoly/ping -> pong"] = _round_trips(sock, dest, [encode("/rolypoly/ping", i) for i in range(10)],
                                                         b"/rolypoly/pong", n, warmup)
        sets = [encode("/rolypoly/set", "lookahead", float(v)) for v in (400.0, 500.0)]
        results["/rolypoly/set -> status"] = _round_trips(sock, dest, sets, b"/rolypoly/status", n, warmup)
        if not args.idle_only:
            # the same ping while a take plays: the clock thread and the hit/playhead traffic compete
            from rolypoly.config import REPO_DIR
            for m in (("/rolypoly/read", str(REPO_DIR / "data" / "demo.mid")), ("/rolypoly/set", "loop", 1),
                      ("/rolypoly/start",)):
                sock.sendto(encode(*m), dest)
            sock.settimeout(120.0)
            while b"/rolypoly/hit" not in sock.recv(65536)[:16]:
                pass
            sock.settimeout(5.0)
            results["ping while playing"] = _round_trips(sock, dest, [encode("/rolypoly/ping", i) for i in range(10)],
                                                         b"/rolypoly/pong", n, warmup)
            sock.sendto(encode("/rolypoly/stop"), dest)
    except socket.timeout:
        raise OscError("a reply did not arrive within 5 s (a lost UDP packet or a stalled bridge)") from None
    finally:
        if bridge is not None:
            bridge.close()
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        sock.close()
        if scratch is not None:
            scratch.cleanup()

    base = float(np.median(results["udp echo (baseline)"]))
    t = Table(f"OSC round trip on loopback, {n} messages each ({'in-process' if args.in_process else 'rolypoly serve'})",
              ["case", "median ms", "p99 ms", "mean ms", "max ms", "median vs echo"], key="round_trip")
    for name, ms in results.items():
        t.add(name, float(np.median(ms)), float(np.percentile(ms, 99)), float(ms.mean()), float(ms.max()),
              f"{np.median(ms) / base:.2f}x")
    t.notes.append("one message in flight at a time; times from send to the matching reply, client side")
    t.notes.append("target: median <= 1 ms")
    worst = max(float(np.median(ms)) for name, ms in results.items() if not name.startswith("udp"))
    extra = {"messages": n, "median_ms_worst": worst, "target_median_ms": 1.0, "meets_target": worst <= 1.0}
    return [t], extra
