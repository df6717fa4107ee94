"""A full duet driven only over OSC from Pd: real Pd (headless) runs pd/rolypoly.pd against ``rolypoly serve``."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading

import pytest
from test_osc import REPO, duet_score, serve_process  # noqa: F401  (serve_process is a fixture)

pytestmark = pytest.mark.skipif(shutil.which("pd") is None, reason="Pure Data (pd) not installed")


def _lines_until(proc, done, timeout: float) -> list[str]:
    """Read Pd's stderr until ``done(line)`` or the timeout; returns the lines read."""
    lines: list[str] = []
    finished = threading.Event()

    def reader():
        for line in proc.stderr:
            lines.append(line.rstrip("\n").replace("\\", ""))
            if done(lines[-1]):
                break
        finished.set()

    threading.Thread(target=reader, daemon=True).start()
    finished.wait(timeout)
    return lines


def test_pd_duet_over_osc(serve_process, tmp_path):  # noqa: F811
    from rolypoly.bridges.osc import free_port
    port, server = serve_process
    reply = free_port()
    score, expected = duet_score(tmp_path / "two_bars.mid")
    cmd = ["pd", "-nogui", "-nosound", "-nomidi", "-stderr",
           "-open", str(REPO / "pd" / "rolypoly.pd"), "-open", str(REPO / "tests" / "pd" / "duet.pd"),
           "-send", f"rolypoly-ports {port} {reply}",
           "-send", "rolypoly-cmd ping 5",
           "-send", "rolypoly-cmd set bogus 1",
           "-send", "rolypoly-cmd set latency 20",
           "-send", f"rolypoly-cmd read {score}",
           "-send", "rolypoly-cmd start",
           "-send", "rolypoly-quit-after 30000"]   # Pd quits by itself if the test cannot stop it
    pd = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = _lines_until(pd, lambda ln: "take saved" in ln, timeout=45.0)
    finally:
        pd.terminate()
        try:
            pd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pd.kill()
    log = "\n".join(lines)
    assert "couldn't create" not in log and "connection failed" not in log, log
    assert "PONG: 5" in log, log
    assert re.search(r"ERROR: .*unknown attribute", log), log
    assert re.search(r"STATUS: latency = 20", log), log
    assert any("take saved" in ln for ln in lines), log
    hits = []
    for ln in lines:
        m = re.match(r"HIT: (\S+) (\S+) (\S+)$", ln)
        if m:
            hits.append(tuple(float(v) for v in m.groups()))
    assert [(int(d), int(v)) for d, v, _ in hits] == [(d, v) for d, v, _ in expected], log
    assert all(abs(t - te) < 3.0 for (_, _, t), (_, _, te) in zip(hits, expected)), hits
    assert [t for _, _, t in hits] == sorted(t for _, _, t in hits)
    assert server.poll() is None
