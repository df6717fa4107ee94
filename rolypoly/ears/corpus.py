"""A development corpus of real instrument sounds with exact onsets.

Humanised MIDI parts are rendered through FluidSynth with the FluidR3 General MIDI
SoundFont (recordings of real instruments), and drum patterns are mixed from the sample
kits of Hydrogen; then reverb, room noise, hum and an input level are applied.  The
true onset of each note is its note-on plus the preset's *measured* attack delay: every
(preset, pitch, velocity) used is rendered once in isolation and its first audible
sample found (the 1 ms RMS envelope first within ``AUDIBLE_DB`` of the note's peak).
Notes starting within ``MERGE_S`` of each other (a chord, a strum, a drum hit on several
drums) are one onset, at the earliest.

The corpus lives under ``<cache_dir>/onsets_corpus/``: one folder per family, one chunk
per (preset, seed) — ``<name>.flac`` (48 kHz mono), ``<name>.onsets.txt`` and
``<name>.json`` (preset, condition, level).  Chunks are written atomically and skipped
when present, so generation is resumable and several processes can share the work
(``part=i/n``).  Nothing here is committed.

Needs the Debian packages ``fluidsynth``, ``fluid-soundfont-gm`` and
``hydrogen-drumkits`` (``./run`` installs them); :func:`available` says what is missing.

Examples
--------
>>> from rolypoly.ears.corpus import FAMILIES, plan
>>> sorted(FAMILIES)[:3]
['bass', 'brass', 'drums']
>>> jobs = plan(minutes_per_family=1.0)
>>> len({j.family for j in jobs})
9
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rolypoly.errors import RolypolyError

SR = 48000
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DRUMKITS = Path("/usr/share/hydrogen/data/drumkits")
AUDIBLE_DB = -30.0       # first audible sample: 1 ms RMS within this of the note's own peak
MERGE_S = 0.03           # onsets closer than this are one (chords, strums, flams)
CHUNK_S = 20.0           # seconds of playing per chunk
VELOCITY_BUCKETS = (24, 48, 80, 112, 127)

# family -> [(GM program, name, lowest, highest MIDI pitch, polyphonic)]
FAMILIES = {
    "piano": [(0, "acoustic grand piano", 33, 96, True), (1, "bright acoustic piano", 36, 96, True),
              (4, "electric piano 1", 36, 88, True), (5, "electric piano 2", 36, 88, True)],
    "guitar": [(24, "nylon guitar", 40, 81, True), (25, "steel guitar", 40, 81, True),
               (26, "jazz guitar", 40, 81, True), (27, "clean guitar", 40, 81, True),
               (28, "muted guitar", 40, 76, True), (29, "overdriven guitar", 40, 81, True),
               (30, "distortion guitar", 40, 81, True)],
    "bass": [(32, "acoustic bass", 28, 55, False), (33, "finger bass", 28, 60, False),
             (34, "picked bass", 28, 60, False), (35, "fretless bass", 28, 60, False),
             (36, "slap bass", 28, 60, False)],
    "organ": [(16, "drawbar organ", 36, 84, True), (17, "percussive organ", 36, 84, True),
              (19, "church organ", 36, 84, True)],
    "winds": [(64, "soprano sax", 56, 87, False), (65, "alto sax", 49, 80, False),
              (66, "tenor sax", 44, 75, False), (71, "clarinet", 50, 89, False), (73, "flute", 60, 96, False)],
    "brass": [(56, "trumpet", 54, 82, False), (57, "trombone", 40, 72, False), (60, "french horn", 41, 77, False)],
    "strings": [(40, "violin", 55, 93, False), (42, "cello", 36, 72, False),
                (48, "string ensemble", 40, 88, True)],
    "voice": [(52, "choir aahs", 48, 79, False), (53, "voice oohs", 48, 79, False)],
    "drums": [(-1, "ColomboAcousticDrumkit", 0, 0, True), (-1, "Millo_MultiLayered2", 0, 0, True),
              (-1, "The Black Pearl 1.0", 0, 0, True), (-1, "ForzeeStereo", 0, 0, True),
              (-1, "BJA_Pacific", 0, 0, True), (-1, "rumpf_kit_z01_h2", 0, 0, True),
              (-1, "Millo_MultiLayered3", 0, 0, True), (-1, "VariBreaks", 0, 0, True)],
}

# (peak level dBFS, reverb wet share or 0, room noise dBFS RMS or None, hum dBFS or None);
# chunks cycle through them, so every family is heard at every level
CONDITIONS = (
    (-12.0, 0.0, None, None),
    (-20.0, 0.25, -70.0, None),
    (-30.0, 0.0, -75.0, -70.0),
    (-6.0, 0.4, None, None),
    (-24.0, 0.15, -65.0, -65.0),
    (-40.0, 0.0, -85.0, None),
)


class CorpusError(RolypolyError):
    """The corpus cannot be built here (missing packages) or read (missing files)."""


@dataclass(frozen=True)
class Job:
    """One chunk of the corpus: a preset played with one seed under one condition."""
    family: str
    program: int
    preset: str
    low: int
    high: int
    poly: bool
    seed: int
    condition: int

    @property
    def name(self) -> str:
        slug = "".join(c if c.isalnum() else "_" for c in self.preset.lower()).strip("_")
        return f"{slug}_{self.seed:03d}"


def available() -> list[str]:
    """What is missing to build the corpus here (empty when everything is)."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("fluidsynth (apt-get install fluidsynth)")
    if not SOUNDFONT.is_file():
        missing.append(f"{SOUNDFONT} (apt-get install fluid-soundfont-gm)")
    if not DRUMKITS.is_dir():
        missing.append(f"{DRUMKITS} (apt-get install hydrogen-drumkits)")
    return missing


def plan(minutes_per_family: float = 3.0, families=None) -> list[Job]:
    """The chunks of a corpus with about ``minutes_per_family`` of playing per family,
    spread over the family's presets and the :data:`CONDITIONS`."""
    jobs = []
    for fam in families or sorted(FAMILIES):
        if fam not in FAMILIES:
            raise CorpusError(f"onsets corpus: unknown family {fam!r}; choose from {', '.join(sorted(FAMILIES))}")
        presets = FAMILIES[fam]
        n = max(len(presets), int(round(minutes_per_family * 60.0 / CHUNK_S)))
        for k in range(n):
            prog, name, lo, hi, poly = presets[k % len(presets)]
            jobs.append(Job(fam, prog, name, lo, hi, poly, seed=k, condition=k % len(CONDITIONS)))
    return jobs


# ---------------------------------------------------------------------------------
# the parts: humanised phrases

def _phrases(job: Job, rng) -> list[tuple[float, int, int, float, float]]:
    """(start s, pitch, velocity, duration s, start of its chord s) notes of a melodic/harmonic part: melodies,
    repeated notes, chords (polyphonic presets), fast runs and rests, soft and hard."""
    notes = []
    t = 0.3
    bpm = float(rng.uniform(70, 150))
    beat = 60.0 / bpm
    pitch = int(rng.integers(job.low + 5, job.high - 5))
    kinds = ["melody", "repeat", "run", "rest"] + (["chords", "chords"] if job.poly else ["melody"])
    while t < CHUNK_S:
        kind = kinds[int(rng.integers(len(kinds)))]
        soft = rng.random() < 0.4
        vel_lo, vel_hi = (22, 60) if soft else (70, 127)
        legato = rng.random() < 0.5
        if kind == "rest":
            t += float(rng.uniform(0.4, 2.0))
            continue
        if kind == "run":
            ioi = float(rng.uniform(0.075, 0.12))
            n = int(rng.integers(6, 14))
            step = int(rng.choice([-2, -1, 1, 2]))
        elif kind == "repeat":
            ioi = beat * float(rng.choice([0.5, 1.0, 0.75]))
            n = int(rng.integers(3, 8))
            step = 0
        elif kind == "chords":
            ioi = beat * float(rng.choice([1.0, 2.0]))
            n = int(rng.integers(2, 6))
            step = None
        else:
            ioi = beat * float(rng.choice([0.5, 1.0, 1.5]))
            n = int(rng.integers(4, 10))
            step = None
        for _ in range(n):
            start = t + float(rng.normal(0.0, 0.008))
            vel = int(rng.integers(vel_lo, vel_hi + 1))
            dur = ioi * (1.05 if legato else float(rng.uniform(0.35, 0.8)))
            if kind == "chords":
                root = int(rng.integers(job.low, max(job.low + 1, job.high - 12)))
                shape = [0, 4, 7, 12] if rng.random() < 0.5 else [0, 3, 7, 10]
                spread = float(rng.uniform(0.0, 0.02)) if job.family == "guitar" else 0.002
                for j, iv in enumerate(shape[: int(rng.integers(3, 5))]):
                    # a chord or a strum is one onset: its notes carry the chord's start
                    notes.append((start + j * spread, root + iv, max(1, vel - 4 * j), dur, start))
            else:
                if step is None:
                    pitch += int(rng.choice([-5, -3, -2, -1, 1, 2, 3, 4, 7]))
                else:
                    pitch += step
                if pitch < job.low or pitch > job.high:
                    pitch = int(np.clip(pitch, job.low, job.high))
                    step = -step if step else step
                notes.append((start, pitch, vel, dur, start))
            t += ioi
        t += float(rng.uniform(0.0, 0.5)) * beat
    return [n for n in notes if n[0] < CHUNK_S]


def _bucket(vel: int) -> int:
    return min(VELOCITY_BUCKETS, key=lambda b: abs(b - vel))


def _render_midi(notes, program: int, out_wav: Path, tail_s: float = 1.5) -> np.ndarray:
    """Render ``notes`` (start, pitch, velocity, duration) on one GM program (mono, SR)."""
    import pretty_midi
    import soundfile as sf
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=program)
    end = 0.0
    # a note must end before the same key sounds again (else the first note-off cuts the second)
    notes = sorted(notes, key=lambda n: n[0])
    next_on: dict = {}
    trimmed = []
    for n in reversed(notes):
        start, pitch, vel, dur = n[:4]
        if pitch in next_on:
            dur = min(dur, max(0.01, next_on[pitch] - start - 0.005))
        next_on[pitch] = start
        trimmed.append((start, pitch, vel, dur))
    for start, pitch, vel, dur in reversed(trimmed):
        inst.notes.append(pretty_midi.Note(int(vel), int(pitch), max(0.0, start), max(0.0, start) + dur))
        end = max(end, start + dur)
    pm.instruments.append(inst)
    mid = out_wav.with_suffix(".mid")
    pm.write(str(mid))
    # FluidSynth's own reverb and chorus off: the room is added afterwards, under our control
    cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(SR),
           "-F", str(out_wav), str(SOUNDFONT), str(mid)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not out_wav.is_file():
        raise CorpusError(f"fluidsynth failed on program {program}: {proc.stderr.strip()[-300:]}")
    x, sr = sf.read(str(out_wav), dtype="float32", always_2d=True)
    if sr != SR:
        raise CorpusError(f"fluidsynth rendered at {sr} Hz, expected {SR}")
    x = x.mean(axis=1)
    need = int((end + tail_s) * SR)
    return np.pad(x, (0, max(0, need - x.size)))[:need] if need > x.size else x


def first_audible(x: np.ndarray, start: int, span: int, audible_db: float = AUDIBLE_DB) -> int | None:
    """Samples from ``start`` to the first one whose 1 ms RMS envelope is within
    ``audible_db`` of the peak envelope in ``x[start:start+span]`` (None when silent).

    Examples
    --------
    >>> x = np.zeros(4800); x[1000:] = 0.5
    >>> first_audible(x, 0, 4800) in range(975, 1001)
    True
    """
    seg = np.asarray(x[start:start + span], np.float64)
    if seg.size == 0:
        return None
    w = max(1, SR // 1000)
    env = np.sqrt(np.convolve(seg * seg, np.ones(w) / w, mode="full")[: seg.size])
    pk = float(env.max())
    if pk < 1e-7:
        return None
    return int(np.argmax(env >= pk * 10.0 ** (audible_db / 20.0))) - w // 2


def attack_delays(program: int, pitches, cache: Path) -> dict:
    """Measured attack delay (s) of a GM program per (pitch, velocity bucket): each note
    rendered alone; cached in ``cache/attack_<program>.json``."""
    path = cache / f"attack_{program:03d}.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    want = [(int(p), b) for p in sorted(set(int(p) for p in pitches)) for b in VELOCITY_BUCKETS
            if f"{int(p)}:{b}" not in table]
    if want:
        gap = 1.0
        probe = [(0.5 + i * gap, p, b, 0.5, 0.0) for i, (p, b) in enumerate(want)]
        with tempfile.TemporaryDirectory() as tmp:
            x = _render_midi(probe, program, Path(tmp) / "probe.wav")
        for (t0, p, b, _, _) in probe:
            i0 = int(round(t0 * SR))
            d = first_audible(x, i0, int(0.6 * SR))
            table[f"{p}:{b}"] = None if d is None else d / SR
        cache.mkdir(parents=True, exist_ok=True)
        from rolypoly.io import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(table, sort_keys=True))
    return table


def merge_onsets(times, merge_s: float = MERGE_S) -> np.ndarray:
    """Sorted onsets with any closer than ``merge_s`` to the previous kept one dropped.

    Examples
    --------
    >>> merge_onsets([1.0, 0.5, 0.51, 0.54]).tolist()
    [0.5, 0.54, 1.0]
    """
    out: list[float] = []
    for t in np.sort(np.asarray(times, np.float64)):
        if not out or t - out[-1] >= merge_s:
            out.append(float(t))
    return np.asarray(out)


def _pitched_chunk(job: Job, rng, cache: Path):
    notes = _phrases(job, rng)
    table = attack_delays(job.program, [n[1] for n in notes], cache / "_attack")
    events: dict = {}
    kept = []
    for n in notes:
        d = table.get(f"{int(n[1])}:{_bucket(int(n[2]))}")
        if d is None:  # the preset is silent there: the note is not played
            continue
        kept.append(n)
        # the onset of a chord is its first audible note
        t = max(0.0, n[0]) + d
        events[n[4]] = min(events.get(n[4], t), t)
    with tempfile.TemporaryDirectory() as tmp:
        x = _render_midi(kept, job.program, Path(tmp) / "part.wav")
    return x, merge_onsets(list(events.values()))


# ---------------------------------------------------------------------------------
# drums: Hydrogen kits mixed sample by sample

ROLES = {"kick": ("kick", "bassdrum", "bass drum", "bd"), "snare": ("snare",),
         "hat": ("hh", "hat"), "tom": ("tom",), "ride": ("ride",), "crash": ("crash", "china"),
         "stick": ("stick", "rim")}


def _kit(name: str) -> dict:
    """role -> [(list of (min velocity, max velocity, file)), ...] from a Hydrogen drumkit.xml."""
    folder = DRUMKITS / name
    root = ET.parse(folder / "drumkit.xml").getroot()
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    kit: dict = {}
    for inst in root.iter(f"{ns}instrument"):
        label = (inst.findtext(f"{ns}name") or "").lower()
        layers = []
        for layer in inst.iter(f"{ns}layer"):
            f = layer.findtext(f"{ns}filename")
            if f and (folder / f).is_file():
                layers.append((float(layer.findtext(f"{ns}min") or 0), float(layer.findtext(f"{ns}max") or 1),
                               folder / f))
        f = inst.findtext(f"{ns}filename")
        if not layers and f and (folder / f).is_file():
            layers.append((0.0, 1.0, folder / f))
        if not layers:
            continue
        for role, keys in ROLES.items():
            if any(k in label.split() or k in label for k in keys):
                if role == "kick" and "snare" in label:
                    continue
                kit.setdefault(role, []).append(layers)
                break
    return kit


_SAMPLES: dict = {}


def _sample(path: Path) -> np.ndarray:
    if path not in _SAMPLES:
        import soundfile as sf

        from rolypoly.io import resample
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if sr != SR:
            x = resample(x, sr, SR).astype(np.float32)
        _SAMPLES[path] = x
    return _SAMPLES[path]


def _drum_chunk(job: Job, rng):
    kit = _kit(job.preset)
    if "kick" not in kit or "snare" not in kit:
        raise CorpusError(f"drum kit {job.preset!r} has no kick or snare the corpus can use")
    bpm = float(rng.uniform(70, 170))
    step = 60.0 / bpm / 4.0
    n_steps = int(CHUNK_S / step)
    hits = []  # (time, role, velocity 0..1)
    pattern = None
    for s in range(n_steps):
        bar_pos = s % 16
        if bar_pos == 0 and (pattern is None or rng.random() < 0.3):
            pattern = {"kick": [0, 8] + [int(v) for v in rng.choice(16, int(rng.integers(0, 3)), replace=False)],
                       "snare": [4, 12], "hat": list(range(0, 16, int(rng.choice([1, 2, 2, 4]))))}
            ghosts = [int(v) for v in rng.choice(16, int(rng.integers(0, 4)), replace=False)]
            cymbal = "ride" if "ride" in kit and rng.random() < 0.4 else "hat"
            rest_bar = rng.random() < 0.12
            fill_bar = rng.random() < 0.2 and "tom" in kit
        if rest_bar:
            continue
        t = 0.25 + s * step
        if fill_bar and bar_pos >= 12:
            hits.append((t, "tom", float(rng.uniform(0.5, 1.0))))
            continue
        if bar_pos in pattern["kick"]:
            hits.append((t, "kick", float(rng.uniform(0.6, 1.0))))
        if bar_pos in pattern["snare"]:
            hits.append((t, "snare", float(rng.uniform(0.6, 1.0))))
        elif bar_pos in ghosts:
            hits.append((t, "snare", float(rng.uniform(0.2, 0.4))))
        if bar_pos in pattern["hat"]:
            hits.append((t, cymbal if cymbal in kit else "hat", float(rng.uniform(0.3, 0.8))))
        if bar_pos == 0 and "crash" in kit and rng.random() < 0.15:
            hits.append((t, "crash", float(rng.uniform(0.6, 1.0))))
        if "stick" in kit and rng.random() < 0.02:
            hits.append((t, "stick", float(rng.uniform(0.4, 0.9))))
    out = np.zeros(int((CHUNK_S + 2.5) * SR), np.float32)
    truth = []
    choice = {role: kit[role][int(rng.integers(len(kit[role])))] for role in kit}
    for t, role, vel in hits:
        if role not in choice:
            continue
        layers = choice[role]
        fitting = [lay for lay in layers if lay[0] <= vel <= lay[1]] or layers
        path = fitting[int(rng.integers(len(fitting)))][2]
        x = _sample(path)
        t = t + float(rng.normal(0.0, 0.005))
        i0 = int(round(t * SR))
        d = first_audible(x, 0, min(x.size, int(0.3 * SR)))
        if d is None or i0 >= out.size:
            continue
        seg = x[: out.size - i0] * np.float32(vel ** 1.5)
        out[i0:i0 + seg.size] += seg
        truth.append((i0 + max(0, d)) / SR)
    return out, merge_onsets(truth)


# ---------------------------------------------------------------------------------
# the room: reverb, noise, hum, level

def _condition(x: np.ndarray, cond, rng) -> np.ndarray:
    level_db, wet, noise_db, hum_db = cond
    y = x.astype(np.float64)
    if wet > 0.0:
        from scipy.signal import fftconvolve
        rt60 = float(rng.uniform(0.3, 1.2))
        n = int(rt60 * SR)
        t = np.arange(n) / SR
        ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
        ir[: int(0.01 * SR)] = 0.0   # reflections start after the direct sound
        ir /= np.sqrt(np.sum(ir ** 2)) + 1e-12
        tail = fftconvolve(y, ir)[: y.size]
        y = y + wet * tail * (np.max(np.abs(y)) / (np.max(np.abs(tail)) + 1e-12))
    peak = float(np.max(np.abs(y))) or 1.0
    y *= 10.0 ** (level_db / 20.0) / peak
    if noise_db is not None:
        white = rng.standard_normal(y.size)
        # a little pinker than white: rooms rumble more than they hiss
        pink = np.cumsum(white) * 0.02
        pink -= np.convolve(pink, np.ones(4801) / 4801, mode="same")
        noise = white + pink
        noise *= 10.0 ** (noise_db / 20.0) / (np.sqrt(np.mean(noise ** 2)) + 1e-12)
        y += noise
    if hum_db is not None:
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        t = np.arange(y.size) / SR
        hum = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.28)) / h for h in (1, 2, 3, 5))
        hum *= 10.0 ** (hum_db / 20.0) / (np.sqrt(np.mean(hum ** 2)) + 1e-12)
        y += hum
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def build_chunk(job: Job, root: Path) -> Path:
    """Render one chunk under ``root/<family>/`` (skipped when already there)."""
    import soundfile as sf

    from rolypoly.io import atomic_path
    folder = root / job.family
    audio = folder / f"{job.name}.flac"
    meta = folder / f"{job.name}.json"
    if meta.is_file() and audio.is_file():
        return meta
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([job.seed, job.program + 1000, sum(map(ord, job.preset))])
    if job.family == "drums":
        x, truth = _drum_chunk(job, rng)
    else:
        x, truth = _pitched_chunk(job, rng, root)
    cond = CONDITIONS[job.condition]
    y = _condition(x, cond, rng)
    with atomic_path(audio) as tmp:
        sf.write(str(tmp), y, SR, format="FLAC", subtype="PCM_24")
    with atomic_path(folder / f"{job.name}.onsets.txt") as tmp:
        np.savetxt(tmp, truth, fmt="%.6f")
    info = dict(asdict(job), level_db=cond[0], reverb=cond[1], noise_db=cond[2], hum_db=cond[3],
                seconds=round(y.size / SR, 3), n_onsets=int(truth.size), audio=audio.name,
                onsets=f"{job.name}.onsets.txt", audible_db=AUDIBLE_DB, merge_s=MERGE_S)
    with atomic_path(meta) as tmp:   # written last: its presence marks the chunk complete
        tmp.write_text(json.dumps(info, indent=1))
    return meta


def build(root: Path, minutes_per_family: float = 3.0, families=None, part: tuple[int, int] = (0, 1),
          on_chunk=None) -> list[Path]:
    """Build (or complete) the corpus under ``root``; ``part=(i, n)`` takes every n-th
    chunk starting at i, so n processes can share the work."""
    missing = available()
    if missing:
        raise CorpusError("onsets corpus needs: " + "; ".join(missing))
    jobs = plan(minutes_per_family, families)
    i, n = part
    done = []
    for k, job in enumerate(jobs):
        if k % n != i:
            continue
        done.append(build_chunk(job, Path(root)))
        if on_chunk is not None:
            on_chunk(job)
    return done


@dataclass
class Item:
    """One corpus chunk loaded for scoring."""
    family: str
    preset: str
    name: str
    level_db: float
    audio: np.ndarray
    truth: np.ndarray


def load(root: Path, families=None) -> list[Item]:
    """Every complete chunk under ``root`` (mono float32 at :data:`SR`)."""
    import soundfile as sf
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: no onsets corpus here; build it with `rolypoly data onsets-corpus`")
    items = []
    for meta in sorted(root.glob("*/*.json")):
        if meta.parent.name.startswith("_"):
            continue
        info = json.loads(meta.read_text())
        if families and info["family"] not in families:
            continue
        x, sr = sf.read(str(meta.parent / info["audio"]), dtype="float32")
        truth = np.loadtxt(meta.parent / info["onsets"], ndmin=1)
        items.append(Item(info["family"], info["preset"], meta.stem, float(info["level_db"]), x, truth))
    return items


def default_root(cache_dir) -> Path:
    return Path(os.path.expanduser(str(cache_dir))) / "onsets_corpus"
