"""Reliability campaign: fuzzing, kill -9 during writes, a long soak, and the security edges.

Every part counts outcomes; the campaign passes when the columns ``other_errors``,
``hangs``, ``crashes`` and ``corrupt`` are all zero.

- **fuzz** (hypothesis): mutated inputs to the score reader (MIDI), the ``.mtpreset``
  reader (seeds from the shared presets; skipped without them), the kit reader (TOML)
  and the take reader (one file of a real take mutated or removed), each in its own
  worker process (a crash is the worker dying); and 10,000 random and mutated packets to
  a live ``rolypoly serve`` (a take playing, audio off) with a ping barrier every 200
  packets (a hang is a ping without its pong).  Every input must end in a valid result or
  a :class:`~rolypoly.errors.RolypolyError`; an "internal error" reply is an unhandled one.
- **kill**: a worker saving takes (or finetuning model versions) in a loop is sent
  SIGKILL at a random moment; afterwards every take and version is complete and loads,
  or is absent (a hidden temporary folder), and the previous version still loads.
- **soak**: hours of offline performance time (a looped score, a virtual musician, a
  finetune every ``--finetune-every`` minutes, the new version loaded for the next
  segment): memory growth (RSS after the first segment to the end), late rows, errors.
- **security**: the bridge binds loopback by default; writes outside its folders (``../``,
  absolute paths, a symlink) are refused; absurdly large scores, presets and packets are
  refused; a checkpoint carrying a pickled payload is refused without running it.

``--quick`` runs CI-sized counts.  Example: ``nice -n 10 rolypoly bench reliability --json``.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rolypoly.report import Table

HELP = "fuzzing, SIGKILL during writes, a soak and security checks: crashes, hangs, corrupt files (--quick)"

FULL = {"score": 2000, "mtpreset": 2000, "kit": 1000, "take": 1000, "osc": 10_000, "kill_take": 50,
        "kill_finetune": 50, "soak_minutes": 120.0, "finetune_every": 10.0}
QUICK = {"score": 200, "mtpreset": 200, "kit": 100, "take": 100, "osc": 1000, "kill_take": 5,
         "kill_finetune": 3, "soak_minutes": 4.0, "finetune_every": 2.0}
PARTS = ("fuzz", "osc", "kill", "soak", "security")
HANG_S = 10.0            # one input taking longer than this is a hang
REPO = Path(__file__).resolve().parents[2]


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="CI-sized counts (a few minutes)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts ({','.join(PARTS)})")
    parser.add_argument("--seed", type=int, default=1234, help="seed of the campaign")
    parser.add_argument("--soak-minutes", type=float, default=None, help="offline performance time of the soak")
    parser.add_argument("--finetune-every", type=float, default=None, help="minutes of the soak between finetunes")


# -- mutation (hypothesis draws the operations) -----------------------------------------------------
EXTREMES = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00", b"\x80\x00\x00\x00", b"\x00\x00\x00\x01"]
TEXT_TOKENS = [b"nan", b"inf", b"-inf", b"-1e308", b"1e308", b"-0", b"99999999999999999999", b"\"", b"{", b"}",
               b"[", b"]", b"=", b"\n", b"\x00", b"\xff\xfe", b"true", b"\"\"\"", b"-", b"0x10"]


def _ops_strategy():
    from hypothesis import strategies as st
    op = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup", "extreme", "token"]),
                   st.integers(0, 1 << 30), st.binary(min_size=0, max_size=12))
    return st.lists(op, min_size=1, max_size=8)


def mutate(data: bytes, ops) -> bytes:
    """Apply drawn operations to ``data`` (positions wrap around its length)."""
    b = bytearray(data)
    for kind, pos, blob in ops:
        n = len(b)
        i = pos % (n + 1)
        if kind == "flip" and n:
            b[i % n] ^= 1 << (pos % 8)
        elif kind == "set" and n:
            b[i % n] = blob[0] if blob else 0
        elif kind == "insert":
            b[i:i] = blob
        elif kind == "delete" and n:
            del b[i:i + 1 + pos % 16]
        elif kind == "truncate":
            del b[i:]
        elif kind == "dup" and n:
            j = (pos // 7) % n
            b[i:i] = b[j:j + 1 + pos % 64]
        elif kind == "extreme":
            b[i:i + 4] = EXTREMES[pos % len(EXTREMES)]
        elif kind == "token":
            b[i:i + pos % 4] = TEXT_TOKENS[pos % len(TEXT_TOKENS)]
    return bytes(b)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def _classify(fn, path, outcome: dict) -> None:
    """Call ``fn(path)``; count a valid result, a RolypolyError, another exception or a hang."""
    import warnings

    from rolypoly.errors import RolypolyError
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(path)
        outcome["valid"] += 1
    except RolypolyError:
        outcome["rolypoly_errors"] += 1
    except Hang:
        outcome["hangs"] += 1
        outcome["examples"].append(f"hang on {path.name}")
    except Exception as exc:  # the thing being measured: any other exception is a bug
        outcome["other_errors"] += 1
        if len(outcome["examples"]) < 5:
            keep = path.with_name(f"failure-{outcome['other_errors']}{path.suffix}")
            if path.is_file():
                shutil.copyfile(path, keep)
            outcome["examples"].append(f"{type(exc).__name__}: {str(exc)[:160]} ({keep})")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# -- fuzz targets (run in a worker process) --------------------------------------------------------
def _read_score(path):
    from rolypoly.score.midi import read_score
    s = read_score(path)
    _ = s.n_rows, s.length_ms


def _read_preset(path):
    from rolypoly.synth.mtpreset import read_mtpreset
    _ = read_mtpreset(path).kit


def _read_kit(path):
    from rolypoly.synth.kit import read_kit
    _ = read_kit(path).channels


def _read_take(path):
    from rolypoly.live.takes import load_take
    t = load_take(path)
    _ = t.n_rows, t.n_onsets


def _seeds(target: str, work: Path) -> list[Path]:
    if target == "score":
        out = [REPO / "data" / "demo.mid"]
        import mido
        for k, (num, den, bpm) in enumerate(((3, 4, 90), (7, 8, 160))):
            mid = mido.MidiFile(type=k % 2, ticks_per_beat=96 * (k + 1))
            tr = mido.MidiTrack()
            tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
            tr.append(mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))
            for i in range(24):
                tr.append(mido.Message("note_on", note=(36, 38, 42)[i % 3], velocity=40 + i, channel=9, time=48))
                tr.append(mido.Message("note_off", note=(36, 38, 42)[i % 3], velocity=0, channel=9, time=10))
            mid.tracks.append(tr)
            p = work / f"seed{k}.mid"
            mid.save(str(p))
            out.append(p)
        return out
    if target == "mtpreset":
        return sorted(presets_dir().glob("*.mtpreset"))[:24] if presets_dir() else []
    if target == "kit":
        out = [REPO / "data" / "default_kit.toml"]
        if presets_dir():
            from rolypoly.synth.kit import kit_to_toml
            from rolypoly.synth.mtpreset import read_mtpreset
            for i, p in enumerate(sorted(presets_dir().glob("*.mtpreset"))[:4]):
                q = work / f"kit{i}.toml"
                q.write_text(kit_to_toml(read_mtpreset(p).kit))
                out.append(q)
        return out
    raise ValueError(target)


def presets_dir() -> Path | None:
    p = REPO.parent / "shared" / "data" / "presets"
    return p if p.is_dir() and any(p.glob("*.mtpreset")) else None


def fuzz_worker(target: str, n: int, seed: int, work: str, template: str | None = None) -> dict:
    """Fuzz one reader with ``n`` hypothesis-drawn mutations; returns the outcome counts."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    outcome = {"target": target, "inputs": 0, "valid": 0, "rolypoly_errors": 0, "other_errors": 0, "hangs": 0,
               "examples": []}
    if target == "take":
        files = sorted(p.name for p in Path(template).iterdir() if p.suffix in (".json", ".npz", ".mid"))
        blobs = {f: (Path(template) / f).read_bytes() for f in files}
        strategy = st.tuples(st.sampled_from(files), _ops_strategy(), st.booleans(), st.integers(0, 20))
    else:
        seeds = _seeds(target, work)
        if not seeds:
            outcome["skipped"] = "no seed files"
            return outcome
        blobs = {str(i): p.read_bytes() for i, p in enumerate(seeds)}
        strategy = st.tuples(st.sampled_from(sorted(blobs)), _ops_strategy(), st.booleans(), st.integers(0, 20))
    fn = {"score": _read_score, "mtpreset": _read_preset, "kit": _read_kit, "take": _read_take}[target]
    suffix = {"score": ".mid", "mtpreset": ".mtpreset", "kit": ".toml", "take": ""}[target]

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(case):
        name, ops, remove, _ = case
        outcome["inputs"] += 1
        if target == "take":
            folder = work / "take"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(template, folder)
            if remove:
                (folder / name).unlink()
            else:
                (folder / name).write_bytes(mutate(blobs[name], ops))
            _classify(fn, folder, outcome)
        else:
            path = work / f"input{suffix}"
            path.write_bytes(mutate(blobs[name], ops))
            _classify(fn, path, outcome)

    one()
    return outcome


def _worker_main(argv: list[str]) -> int:
    role = argv[0]
    spec = json.loads(argv[1])
    if role == "fuzz":
        print(json.dumps(fuzz_worker(**spec)), flush=True)
    elif role == "save-takes":
        _save_takes_forever(**spec)
    elif role == "finetune":
        _finetune_forever(**spec)
    return 0


def _python(role: str, spec: dict) -> list[str]:
    return [sys.executable, "-m", "rolypoly.bench.reliability", role, json.dumps(spec)]


def run_fuzz(counts: dict, seed: int, work: Path, template: Path) -> list[dict]:
    rows = []
    for target in ("score", "mtpreset", "kit", "take"):
        spec = {"target": target, "n": counts[target], "seed": seed, "work": str(work / f"fuzz-{target}"),
                "template": str(template)}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(_python("fuzz", spec), capture_output=True, text=True,
                                  timeout=HANG_S * 4 + counts[target] * 2.0)
        except subprocess.TimeoutExpired:
            rows.append({"target": target, "inputs": counts[target], "valid": 0, "rolypoly_errors": 0,
                         "other_errors": 0, "hangs": 1, "crashes": 0, "seconds": time.perf_counter() - t0,
                         "examples": ["the worker timed out"]})
            continue
        if proc.returncode != 0 or not proc.stdout.strip():
            rows.append({"target": target, "inputs": None, "valid": 0, "rolypoly_errors": 0, "other_errors": 0,
                         "hangs": 0, "crashes": 1, "seconds": time.perf_counter() - t0,
                         "examples": [f"worker exit {proc.returncode}: {proc.stderr.strip()[-300:]}"]})
            continue
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["crashes"] = 0
        out["seconds"] = time.perf_counter() - t0
        rows.append(out)
    return rows


# -- a template take --------------------------------------------------------------------------------
def make_take(cfg, work: Path, score: Path, seconds_of_music: float | None = None) -> Path:
    """One real take (offline, the pretrained model, a virtual guitarist) saved under ``work/takes``."""
    from rolypoly.config import with_values
    from rolypoly.sim.duet import play_take, virtual_take
    from rolypoly.score.midi import read_score
    sc = read_score(score)
    audio, _, _ = virtual_take(sc, "laid_back", seed=1, sr=int(cfg.audio.sample_rate))
    res = play_take(with_values(cfg, takes_dir=str(work / "takes")), score, audio, str(cfg.engine.model_path), None)
    return Path(res.take_dir)


def short_score(work: Path, bars: int = 4) -> Path:
    """The first ``bars`` bars of the demo score (fast takes and finetunes)."""
    from rolypoly.score.midi import read_score
    sc = read_score(REPO / "data" / "demo.mid")
    keep = sc.bar < bars
    import numpy as np
    rows = np.nonzero(keep)[0]
    sub = sc.subset(rows) if hasattr(sc, "subset") else None
    path = work / "short.mid"
    if sub is not None:
        sub.write_midi(path)
        return path
    import mido
    mid = mido.MidiFile(str(REPO / "data" / "demo.mid"))
    limit = bars * 4 * mid.ticks_per_beat
    out = mido.MidiFile(type=mid.type, ticks_per_beat=mid.ticks_per_beat)
    for tr in mid.tracks:
        t, new = 0, mido.MidiTrack()
        for msg in tr:
            t += msg.time
            if t > limit and not msg.is_meta:
                continue
            new.append(msg)
        out.tracks.append(new)
    out.save(str(path))
    return path


# -- SIGKILL during take saving ----------------------------------------------------------------------
def _save_takes_forever(template: str, root: str) -> None:
    from rolypoly.live.takes import load_take, save_take
    t = load_take(template)
    import soundfile as sf
    audio = sf.read(str(Path(template) / "input.wav"), dtype="float32")[0] if (Path(template) / "input.wav").is_file() \
        else None
    import mido
    perf = mido.MidiFile(str(Path(template) / "performance.mid")) if (Path(template) / "performance.mid").is_file() \
        else None
    print("ready", flush=True)
    while True:
        save_take(root, t.settings, t.rows, t.onsets, t.hits, audio, int(t.settings.get("sr", 48000)),
                  str(Path(template) / "score.mid"), performance_midi=perf)
        print("saved", flush=True)


def _check_takes(root: Path) -> dict:
    from rolypoly.errors import RolypolyError
    from rolypoly.live.takes import load_take
    out = {"complete": 0, "corrupt": 0, "hidden_partial": 0}
    if not root.is_dir():
        return out
    for p in root.iterdir():
        if p.name.startswith("."):
            out["hidden_partial"] += 1
            continue
        try:
            t = load_take(p)
            _ = t.n_rows
            import soundfile as sf
            for wav in p.glob("*.wav"):
                sf.info(str(wav))
            out["complete"] += 1
        except (RolypolyError, RuntimeError, OSError):
            out["corrupt"] += 1
    return out


def _kill_at_random(cmd: list[str], window_s: float, rng: random.Random, env=None,
                    start_s: float = 0.0) -> tuple[float, int]:
    """Start ``cmd``, wait for its "ready" line, SIGKILL it at a uniform moment in ``[start_s, window_s]``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"worker did not start: {line!r}")
    delay = rng.uniform(start_s, window_s)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sum(1 for line in proc.stdout if line.startswith(("saved", "version")))
    proc.stdout.close()
    return delay, saved


def run_kill_takes(n: int, template: Path, work: Path, rng: random.Random) -> dict:
    root = work / "kill-takes"
    # how long one save takes here: the kill lands anywhere in a few saves
    t0 = time.perf_counter()
    from rolypoly.live.takes import load_take, save_take
    t = load_take(template)
    save_take(work / "timing", t.settings, t.rows, t.onsets, t.hits, None, 48000, None)
    one = max(0.02, time.perf_counter() - t0)
    totals = {"trials": n, "complete": 0, "corrupt": 0, "hidden_partial": 0, "killed_while_saving": 0}
    for _ in range(n):
        _, saved = _kill_at_random(_python("save-takes", {"template": str(template), "root": str(root)}),
                                   one * 4, rng)
        totals["killed_while_saving"] += 1
        res = _check_takes(root)
    for k in ("complete", "corrupt", "hidden_partial"):
        totals[k] = res[k]
    return totals


# -- SIGKILL during finetuning -----------------------------------------------------------------------
def _finetune_forever(take: str, models_dir: str, base: str, overrides: list[str]) -> None:
    from rolypoly.config import load_config, with_values
    from rolypoly.learn.finetune import train_after_take
    cfg = with_values(load_config(overrides), models_dir=models_dir)
    print("ready", flush=True)
    current = base
    while True:
        v = train_after_take(cfg, take, base_model=current)
        current = str(v.torchscript)
        print("version", v.path, flush=True)


def _check_versions(root: Path) -> dict:
    from rolypoly.errors import RolypolyError
    from rolypoly.model.export import load_runtime
    from rolypoly.model.transformer import read_checkpoint
    out = {"complete": 0, "corrupt": 0, "hidden_partial": 0}
    vroot = root / "versions"
    if not vroot.is_dir():
        return out
    for p in sorted(vroot.iterdir()):
        if p.name.startswith("."):
            out["hidden_partial"] += 1
            continue
        try:
            load_runtime(p / "model.pt")
            read_checkpoint(p / "weights.ckpt")
            for f in ("losses.json", "version.json"):
                json.loads((p / f).read_text())
            out["complete"] += 1
        except (RolypolyError, OSError, ValueError):
            out["corrupt"] += 1
    return out


def run_kill_finetune(cfg, n: int, take: Path, work: Path, rng: random.Random, overrides: list[str]) -> dict:
    from rolypoly.model.export import load_runtime
    root = work / "kill-models"
    base = str(cfg.engine.model_path)
    spec = {"take": str(take), "models_dir": str(root), "base": base, "overrides": overrides}
    # one finetune's length here (imports are done before "ready")
    proc = subprocess.Popen(_python("finetune", spec), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    proc.stdout.readline()
    one = time.perf_counter() - t0
    proc.kill()
    proc.wait()
    totals = {"trials": n, "one_finetune_s": round(one, 2), "complete": 0, "corrupt": 0, "hidden_partial": 0,
              "previous_loads": 0, "killed_after_a_version": 0}
    for _ in range(n):
        # the writes come at the end of a finetune: the kills spread over the first one's second half
        # and into the next one
        _, finished = _kill_at_random(_python("finetune", spec), one * 1.6, rng, start_s=one * 0.3)
        totals["killed_after_a_version"] += int(finished > 0)
        res = _check_versions(root)
        try:  # the version the next finetune starts from (or the pretrained model) still loads
            versions = sorted(p for p in (root / "versions").iterdir() if not p.name.startswith("."))
            load_runtime(versions[-1] / "model.pt" if versions else base)
            totals["previous_loads"] += 1
        except Exception:  # counted: previous_loads < trials is a failure
            pass
    for k in ("complete", "corrupt", "hidden_partial"):
        totals[k] = res[k]
    return totals


# -- OSC: live fuzz and security ----------------------------------------------------------------------
class _Client:
    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.addr = ("127.0.0.1", port)
        self.replies: list[tuple[str, list]] = []

    def raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.addr)

    def send(self, address: str, *args) -> None:
        from rolypoly.bridges.osc import encode
        self.raw(encode(address, *args))

    def collect(self, until=None, timeout: float = 10.0) -> bool:
        """Read replies until ``until(address, args)`` is true (True) or ``timeout`` (False)."""
        from rolypoly.bridges.osc import decode
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            try:
                msgs = decode(data)
            except Exception:  # a reply we cannot decode is counted by the caller as an error reply
                msgs = [("?undecodable", [])]
            for address, args in msgs:
                self.replies.append((address, args))
                if until is not None and until(address, args):
                    return True
        return until is None

    def close(self):
        self.sock.close()


def start_bridge(work: Path, extra: list[str] = ()) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "rolypoly", "serve", "--json", "osc.port=0", "osc.audio=off",
           f"outputs_dir={work}", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(work))
    line = proc.stdout.readline()
    try:
        info = json.loads(line)
    except ValueError:
        proc.kill()
        raise RuntimeError(f"serve did not start: {line!r} {proc.stderr.read()[-400:]}") from None
    return proc, int(info["port"]), info


def _seed_packets(score: str) -> list[bytes]:
    from rolypoly.bridges.osc import encode
    return [encode(*m) for m in (
        ("/rolypoly/ping", 1), ("/rolypoly/start",), ("/rolypoly/stop",), ("/rolypoly/read", "/no/such.mid"),
        ("/rolypoly/set", "latency", 12.0), ("/rolypoly/set", "generate_vels", 0.1, 0.9),
        ("/rolypoly/set", "lookahead", 300.0), ("/rolypoly/set", "filter_hits", "none"),
        ("/rolypoly/set", "loop", 1), ("/rolypoly/set", "enable", 0), ("/rolypoly/write", "a.mid"),
        ("/rolypoly/kit", "/no/kit.toml"), ("/rolypoly/load", "/no/m.pt"), ("/rolypoly/introspect", "kick", "snare"),
        ("/rolypoly/reply_to", 0), ("/rolypoly/read", score), ("/rolypoly/set", "countin", 1))]


def run_osc_fuzz(n: int, seed: int, work: Path) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    work.mkdir(parents=True, exist_ok=True)
    score = str(REPO / "data" / "demo.mid")
    proc, port, _ = start_bridge(work)
    client = _Client(port)
    seeds = _seed_packets(score)
    out = {"packets": 0, "pings": 0, "pongs": 0, "error_replies": 0, "internal_errors": 0, "hangs": 0, "crashes": 0,
           "examples": []}
    client.send("/rolypoly/read", score)
    client.send("/rolypoly/set", "loop", 1)
    client.send("/rolypoly/start")
    state = {"batch": 0}

    def barrier():
        client.send("/rolypoly/reply_to", 0)
        state["batch"] += 1
        tag = 100_000 + state["batch"]
        client.send("/rolypoly/ping", tag)
        out["pings"] += 1
        ok = client.collect(lambda a, args: a == "/rolypoly/pong" and list(args)[:1] == [tag], timeout=HANG_S)
        if ok:
            out["pongs"] += 1
        elif proc.poll() is not None:
            out["crashes"] += 1
        else:
            out["hangs"] += 1

    packet = st.one_of(
        st.binary(min_size=1, max_size=300),
        st.binary(min_size=0, max_size=200).map(lambda b: b"/rolypoly/" + b),
        st.tuples(st.sampled_from(range(len(seeds))), _ops_strategy()).map(lambda c: mutate(seeds[c[0]], c[1])),
    )

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(packet)
    def one(data):
        if proc.poll() is not None:
            return
        client.raw(data or b"\x00")
        out["packets"] += 1
        if out["packets"] % 200 == 0:
            barrier()

    try:
        one()
        barrier()
    finally:
        client.close()
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out["hangs"] += 1
        else:
            out["crashes"] += 1 if not out["crashes"] else 0
        err = proc.stderr.read() if proc.stderr else ""
        if "Traceback" in err:
            out["internal_errors"] += err.count("Traceback")
            out["examples"].append(err[-400:])
    for address, args in client.replies:
        if address == "/rolypoly/error":
            out["error_replies"] += 1
            text = str(args[0]) if args else ""
            if "internal error" in text:
                out["internal_errors"] += 1
                if len(out["examples"]) < 5:
                    out["examples"].append(text[:200])
    return out


def run_security(cfg, work: Path) -> list[dict]:
    """Each check: (check, passed, detail)."""
    rows = []

    def check(name, ok, detail=""):
        rows.append({"check": name, "passed": bool(ok), "detail": detail})

    check("osc.host is loopback by default", str(cfg.osc.host) in ("127.0.0.1", "localhost", "::1"), str(cfg.osc.host))
    work.mkdir(parents=True, exist_ok=True)
    outside = work / "outside"
    outside.mkdir(exist_ok=True)
    proc, port, info = start_bridge(work)
    check("the bridge listens on loopback", info["host"] == "127.0.0.1", info["host"])
    client = _Client(port)
    try:
        client.send("/rolypoly/read", str(REPO / "data" / "demo.mid"))
        client.send("/rolypoly/start")
        time.sleep(0.3)
        client.send("/rolypoly/stop")
        client.collect(lambda a, args: a == "/rolypoly/status" and str(args[0]).startswith("take saved"), 20)
        (work / "takes").mkdir(exist_ok=True)
        link = work / "takes" / "link"
        if not link.exists():
            link.symlink_to(outside, target_is_directory=True)
        for bad, name in (("../escape.mid", "a ../ path"), (str(outside / "abs.mid"), "an absolute path"),
                          ("link/evil.mid", "a symlink out of the folder")):
            client.replies.clear()
            client.send("/rolypoly/write", bad)
            got = client.collect(lambda a, args: a == "/rolypoly/error", 5)
            text = next((str(args[0]) for a, args in client.replies if a == "/rolypoly/error"), "")
            escaped = (work / "escape.mid").exists() or any(outside.iterdir())
            check(f"write refuses {name}", got and "refused" in text and not escaped, text[:120])
        client.replies.clear()
        big = b"/rolypoly/ping\x00\x00,s\x00\x00" + b"x" * (int(cfg.osc.max_packet_bytes) + 100) + b"\x00\x00\x00\x00"
        client.raw(big)
        got = client.collect(lambda a, args: a == "/rolypoly/error", 5)
        text = next((str(args[0]) for a, args in client.replies if a == "/rolypoly/error"), "")
        check("an absurdly large packet is refused with an error", got, text[:120])
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    from rolypoly.errors import RolypolyError
    # absurd sizes: a score and a preset of 64 MB are refused before being parsed
    huge = work / "huge.mid"
    with open(huge, "wb") as f:
        f.write(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0")
        f.truncate(64 << 20)
    for fn, label in ((lambda: __import__("rolypoly.score.midi", fromlist=["x"]).read_score(huge), "a 64 MB score"),):
        try:
            fn()
            check(f"{label} is refused", False, "accepted")
        except RolypolyError as exc:
            check(f"{label} is refused", True, str(exc)[:120])
    huge_preset = work / "huge.mtpreset"
    with open(huge_preset, "wb") as f:
        f.write(b"{ ")
        f.truncate(64 << 20)
    try:
        from rolypoly.synth.mtpreset import read_mtpreset
        read_mtpreset(huge_preset)
        check("a 64 MB preset is refused", False, "accepted")
    except RolypolyError as exc:
        check("a 64 MB preset is refused", "large" in str(exc), str(exc)[:120])
    huge.unlink()
    huge_preset.unlink()
    # a checkpoint that would run code when unpickled
    marker = work / "pwned"
    evil = work / "evil.ckpt"
    _write_evil_checkpoint(evil, marker)
    from rolypoly.model.transformer import read_checkpoint
    try:
        read_checkpoint(evil)
        refused = False
    except RolypolyError:
        refused = True
    check("a checkpoint with a pickled payload is refused and never runs", refused and not marker.exists(),
          "marker file created" if marker.exists() else "")
    from rolypoly.model.export import load_runtime
    try:
        load_runtime(evil)
        refused = False
    except RolypolyError:
        refused = True
    check("loading it as a model is refused and never runs", refused and not marker.exists())
    return rows


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _write_evil_checkpoint(path: Path, marker: Path) -> None:
    import torch
    torch.save({"model": {}, "meta": {"model_config": {}, "x": _Evil(marker)}}, path)


# -- soak ----------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_soak(cfg, minutes: float, finetune_every: float, work: Path) -> dict:
    """Offline performance of ``minutes`` of music: the demo score looped, a virtual guitarist, a
    finetune every ``finetune_every`` minutes whose version plays the next segment."""
    import gc

    import numpy as np

    from rolypoly.config import with_values
    from rolypoly.learn.finetune import train_after_take
    from rolypoly.live.drivers import perform_offline
    from rolypoly.live.engine import Rolypoly
    from rolypoly.score.midi import read_score
    from rolypoly.sim.duet import virtual_take
    score_path = REPO / "data" / "demo.mid"
    score = read_score(score_path)
    sr = int(cfg.audio.sample_rate)
    one, _, _ = virtual_take(score, "laid_back", seed=7, sr=sr)
    loop_len = int(round(score.length_ms * sr / 1000.0))
    one = np.pad(one, (0, max(0, loop_len - len(one))))[:loop_len]
    seg_s = finetune_every * 60.0
    n_seg = max(1, int(round(minutes / finetune_every)))
    reps = max(1, int(round(seg_s * sr / loop_len)))
    audio = np.tile(one, reps)
    cfg = with_values(cfg, takes_dir=str(work / "takes"), models_dir=str(work / "models"),
                      **{"engine.loop": True, "engine.enable": True})
    model = str(cfg.engine.model_path)
    out = {"segments": n_seg, "performance_s": 0.0, "wall_s": 0.0, "finetunes": 0, "late_rows": 0, "errors": 0,
           "rows": 0, "rss_start_mb": None, "rss_end_mb": None, "error_examples": [], "rss_mb": []}
    t0 = time.perf_counter()
    # one engine for the whole soak, as on stage: each new version is loaded with the load message
    eng = Rolypoly(cfg, offline=True)
    errors = []
    eng.connect("error", errors.append)
    if not eng.message("read", str(score_path)):
        raise RuntimeError(errors)
    for k in range(n_seg):
        if k and not eng.message("load", model):
            raise RuntimeError(errors)
        errors.clear()
        res = perform_offline(eng, audio, tail_s=0.5)
        out["performance_s"] += len(audio) / sr
        out["late_rows"] += int(res.late_rows)
        out["rows"] += int(res.rows)
        out["errors"] += len(errors)
        out["error_examples"].extend(errors[:2])
        version = train_after_take(cfg, res.take_dir, base_model=model)
        out["finetunes"] += 1
        model = str(version.torchscript)
        shutil.rmtree(res.take_dir, ignore_errors=True)   # disk, not memory: the soak keeps none
        del res, version
        gc.collect()
        out["rss_mb"].append(round(_rss_mb(), 1))
        if k == 0:
            out["rss_start_mb"] = _rss_mb()
    out["rss_end_mb"] = _rss_mb()
    out["wall_s"] = time.perf_counter() - t0
    out["memory_growth_mb"] = out["rss_end_mb"] - out["rss_start_mb"]
    out["x_real_time"] = out["performance_s"] / out["wall_s"]
    return out


# -- the campaign --------------------------------------------------------------------------------------
def run(cfg, args):
    counts = dict(QUICK if args.quick else FULL)
    if args.soak_minutes is not None:
        counts["soak_minutes"] = float(args.soak_minutes)
    if args.finetune_every is not None:
        counts["finetune_every"] = float(args.finetune_every)
    parts = [p.strip() for p in str(args.only).split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        from rolypoly.errors import ConfigError
        raise ConfigError(f"--only: unknown part(s) {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="rolypoly-reliability-"))
    tables, extra = [], {"quick": bool(args.quick), "work_dir": str(work)}
    t_all = time.perf_counter()
    template = None
    if {"fuzz", "kill"} & set(parts):
        template = make_take(cfg, work / "template", short_score(work))
    failures = 0
    broken = Table("parts that did not finish", ["part", "error"], key="broken_parts")

    def part_fuzz():
        nonlocal failures
        t = Table("fuzzing the readers", ["target", "inputs", "valid", "rolypoly_errors", "other_errors", "hangs",
                                          "crashes", "seconds"], key="fuzz")
        for r in run_fuzz(counts, args.seed, work, template):
            t.add(r["target"], r["inputs"], r["valid"], r["rolypoly_errors"], r["other_errors"], r["hangs"],
                  r["crashes"], round(r["seconds"], 1))
            failures += r["other_errors"] + r["hangs"] + r["crashes"]
            t.notes.extend(f"{r['target']}: {e}" for e in r.get("examples", []))
            if r.get("skipped"):
                t.notes.append(f"{r['target']}: skipped ({r['skipped']})")
        tables.append(t)
    def part_osc():
        nonlocal failures
        t0 = time.perf_counter()
        r = run_osc_fuzz(counts["osc"], args.seed, work / "osc")
        t = Table("fuzzing the OSC bridge (live, a take playing)", ["packets", "pings", "pongs", "error_replies",
                                                                    "internal_errors", "hangs", "crashes", "seconds"],
                  key="osc_fuzz")
        t.add(r["packets"], r["pings"], r["pongs"], r["error_replies"], r["internal_errors"], r["hangs"],
              r["crashes"], round(time.perf_counter() - t0, 1))
        t.notes.extend(r["examples"])
        failures += r["internal_errors"] + r["hangs"] + r["crashes"] + (r["pings"] - r["pongs"])
        tables.append(t)
    def part_kill():
        nonlocal failures
        t = Table("SIGKILL at random moments", ["what", "trials", "complete", "hidden_partial", "corrupt",
                                                "previous_loads"], key="kill")
        t0 = time.perf_counter()
        r = run_kill_takes(counts["kill_take"], template, work, rng)
        t.add("take saving", r["trials"], r["complete"], r["hidden_partial"], r["corrupt"], None)
        failures += r["corrupt"]
        overrides = ["finetune.epochs=2"] if args.quick else []
        r = run_kill_finetune(cfg, counts["kill_finetune"], template, work, rng, overrides)
        t.add("finetuning", r["trials"], r["complete"], r["hidden_partial"], r["corrupt"], r["previous_loads"])
        failures += r["corrupt"] + (r["trials"] - r["previous_loads"])
        t.notes.append(f"finetuning: {r['killed_after_a_version']} of {r['trials']} workers had finished a version "
                       "when killed (the others were killed inside their first finetune)")
        t.notes.append(f"one finetune took {r['one_finetune_s']} s here ({'2 epochs' if args.quick else 'finetune.epochs'}); "
                       f"kills land uniformly in 0.3-1.6x that after the worker is ready; {time.perf_counter() - t0:.0f} s")
        tables.append(t)
    def part_soak():
        nonlocal failures
        r = run_soak(cfg, counts["soak_minutes"], min(counts["finetune_every"], counts["soak_minutes"]), work / "soak")
        t = Table("soak (offline performance)", ["performance_min", "wall_min", "x_real_time", "segments",
                                                 "finetunes", "rows", "late_rows", "errors", "memory_growth_mb"],
                  key="soak")
        t.add(round(r["performance_s"] / 60, 1), round(r["wall_s"] / 60, 1), round(r["x_real_time"], 1),
              r["segments"], r["finetunes"], r["rows"], r["late_rows"], r["errors"], round(r["memory_growth_mb"], 1))
        t.notes.append(f"RSS {r['rss_start_mb']:.0f} MB after the first segment, {r['rss_end_mb']:.0f} MB at the end")
        t.notes.append(f"RSS after each segment (MB): {r['rss_mb']}")
        t.notes.extend(r["error_examples"][:3])
        failures += r["late_rows"] + r["errors"] + (1 if r["memory_growth_mb"] >= 50 else 0)
        tables.append(t)
    def part_security():
        nonlocal failures
        t = Table("security", ["check", "passed", "detail"], key="security")
        for r in run_security(cfg, work / "security"):
            t.add(r["check"], r["passed"], r["detail"])
            failures += 0 if r["passed"] else 1
        tables.append(t)

    for name in PARTS:  # a part that raises is a failure reported in its own table; the others still run
        if name not in parts:
            continue
        try:
            {"fuzz": part_fuzz, "osc": part_osc, "kill": part_kill, "soak": part_soak, "security": part_security}[name]()
        except Exception as exc:  # reported, not lost: the figures of the other parts still come out
            failures += 1
            text = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
            broken.add(name, f"{type(exc).__name__}: {text}")
    if broken.rows:
        tables.append(broken)
    extra["failures"] = failures
    extra["seconds"] = round(time.perf_counter() - t_all, 1)
    shutil.rmtree(work, ignore_errors=True) if failures == 0 else None
    return tables, extra


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
