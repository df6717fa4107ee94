"""A device that disappears mid-take: the performance stops cleanly and the take is saved."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO

pytestmark = pytest.mark.realtime


def test_jack_server_killed_mid_take(tmp_path):
    if not shutil.which("jackd"):
        pytest.skip("jackd (Debian jackd2) is not installed")
    name = f"rolypoly-loss-{os.getpid()}"
    from rolypoly.live.jack import start_jack
    jack = start_jack(name=name)
    script = textwrap.dedent(f"""
        import sys
        from rolypoly.config import load_config
        from rolypoly.live.engine import Rolypoly
        from rolypoly.live.drivers import play_realtime
        from rolypoly.sim.corpus import groove_score
        eng = Rolypoly(load_config(["engine.enable=false", "takes_dir={tmp_path / 'takes'}"]))
        eng.connect("error", lambda t: print("ERROR", t, flush=True))
        heard = []
        def first_hit(*a):
            if not heard:
                heard.append(a)
                print("HIT", flush=True)  # the stream is running
        eng.connect("hit", first_hit)
        eng.message("read", str(groove_score(20).write_midi("{tmp_path / 'g.mid'}")))
        play_realtime(eng, duration_s=30)
        print("TAKE", eng.last_take, flush=True)
        import os; os._exit(0)  # PortAudio's JACK teardown asserts once the server is gone
    """)
    env = dict(os.environ, JACK_DEFAULT_SERVER=name)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert "HIT" in line, line
        time.sleep(1.0)
        jack.terminate()  # the server goes away (SIGTERM: it still cleans its shared memory)
        out, _ = proc.communicate(timeout=60)
    finally:
        if jack.poll() is None:
            jack.terminate()
        jack.wait(10)
        proc.kill()
    assert "TAKE" in out, out
    takes = list((tmp_path / "takes").iterdir())
    assert len(takes) == 1 and (takes[0] / "settings.json").is_file()
    assert "ERROR" in out  # the user is told the device went away
