"""A JACK server with the dummy backend: the stand-in sound card of tests and benchmarks."""
from __future__ import annotations


def clean_stale_jack() -> None:
    """Remove JACK's shared-memory leftovers when no server runs.

    A server that was killed (not stopped) leaves its registry entry behind; after a few
    of those jackd refuses to start ("Too many servers already active").
    """
    import glob
    import os
    import shutil
    import subprocess
    if subprocess.run(["pgrep", "-x", "jackd"], capture_output=True).returncode == 0:
        return  # a live server owns these files
    for path in glob.glob("/dev/shm/jack*"):
        try:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        except OSError:
            pass


def start_jack(sr: int = 48000, period: int = 256, timeout_s: float = 15.0, name: str | None = None):
    """Start ``jackd -d dummy`` (named ``name``, else the default server) unless it already runs.

    Returns the process, or None when a server of that name already answers.  Waits until
    the server answers: a loaded machine can take seconds.
    """
    import os
    import shutil
    import subprocess
    import time
    env = dict(os.environ, JACK_NO_START_SERVER="1")  # asking must not start a server by itself
    if name:
        env["JACK_DEFAULT_SERVER"] = name

    def answers() -> bool:
        return shutil.which("jack_lsp") is not None and \
            subprocess.run(["jack_lsp"], capture_output=True, env=env).returncode == 0

    if answers():
        return None
    clean_stale_jack()
    if not shutil.which("jackd"):
        from rolypoly.errors import AudioError
        raise AudioError("jackd not found: install Debian's jackd2 (the test command does)")
    # Real-time scheduling when the system allows it (the server's clients, our audio
    # callback among them, then run at real-time priority too); otherwise without.
    for mode in (["-R", "-P", "70"], ["--no-realtime"]):
        proc = subprocess.Popen(["jackd", *mode, *(["-n", name] if name else []), "-d", "dummy", "-r", str(sr),
                                 "-p", str(period)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None and not answers():
            time.sleep(0.2)
        if proc.poll() is None and answers():
            time.sleep(0.3)
            proc.realtime = mode[0] == "-R"
            return proc
        proc.kill()
        proc.wait(5)
        clean_stale_jack()
    from rolypoly.errors import AudioError
    raise AudioError("jackd did not start (dummy backend)")
