"""The recorder: everything that comes back from the audio side, heard, dated and written down.

One reader (a thread in real time, inline after each block offline) is the only
consumer of the block's three rings (:mod:`rolypoly.live.block`):

* the *input ring* feeds the sound check (between takes) or the take's listener,
  whose onsets are dated in take samples and matched to rows, and the take's
  ``input.wav``;
* the *drum ring* feeds the take's ``drums.wav``;
* the *hit ring* becomes the take's hit list and the ``hit`` outlet.

Audio is streamed to disk while the take runs (:class:`TakeWriter`), in a hidden
folder under ``takes_dir`` whose WAV headers are brought up to date every second.  The
same writer keeps a journal there (see :mod:`rolypoly.live.takes` for the layout): the
take's settings and score at its first block, then every second the rows settled since
the last sync (one small ``journal/rows-NNNNNN.npz``, written whole or not at all) and
the onsets and hits as JSON lines.  A crash thus leaves the take so far readable
(:func:`rolypoly.live.takes.recover_take`), and memory stays bounded however long the
take.  :func:`rolypoly.live.takes.finish_take` turns the folder into a take at stop.
All of this runs on the reader, never on the audio callback.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from rolypoly.io import atomic_path
from rolypoly.live import block as blk
from rolypoly.live.takes import JOURNAL   # the partial take's sub-folder that only recovery reads

SFC_UPDATE_HEADER_NOW = 0x1060   # libsndfile: rewrite the header to the data written so far
HEADER_EVERY_S = 1.0
PLAYHEAD_EVERY_MS = 50.0


class TakeWriter:
    """Stream a take's input (mono) and drums (stereo) into ``folder``, and journal the rest.

    Audio goes out at each :meth:`write`; the journal (rows, onsets, hits) is buffered
    and written at each :meth:`sync` (every second), after the audio headers, so what
    the journal names is already in the audio.  A failure to journal stops the journal,
    never the audio (``journal_error``; ``error`` is the audio's).
    """

    def __init__(self, folder: Path, sr: int, fmt: str = "wav"):
        import soundfile as sf
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        ext, subtype = ("flac", "PCM_24") if fmt == "flac" else ("wav", "FLOAT")
        self.input = sf.SoundFile(str(self.folder / f"input.{ext}"), "w", sr, 1, subtype=subtype)
        self.drums = sf.SoundFile(str(self.folder / f"drums.{ext}"), "w", sr, 2, subtype=subtype)
        self.frames_in = 0
        self.frames_drums = 0
        self._last_header = time.monotonic()
        self.error: str | None = None
        self.journal = self.folder / JOURNAL
        self.journal.mkdir(exist_ok=True)
        self._head: tuple[dict, str | None] | None = None   # settings and score, written at the first block
        self._rows: list[dict] = []       # settled row chunks not yet on disk
        self._lines = {"onsets": [], "hits": []}
        self.chunks_written = 0
        self._jsonl = {}
        self.journal_error: str | None = None

    # -- the journal (the reader's side) ----------------------------------------------------------------
    def begin(self, settings: dict, score_path: str | None) -> None:
        """Remember the take's settings and score; they are written at the first block (off the start path)."""
        self._head = (dict(settings), score_path)

    def _write_head(self) -> None:
        settings, score_path = self._head
        self._head = None
        with atomic_path(self.folder / "settings.json") as tmp:
            tmp.write_text(json.dumps(settings, indent=1, default=str))
        if score_path and Path(score_path).is_file():
            with atomic_path(self.folder / "score.mid") as tmp:
                shutil.copyfile(score_path, tmp)

    def add_rows(self, chunk: dict) -> None:
        """A chunk of settled rows (:class:`RowLog`); on disk at the next sync."""
        if not self.journal_error:
            self._rows.append(chunk)

    def add_onset(self, onset: dict) -> None:
        if not self.journal_error:
            self._lines["onsets"].append(onset)

    def add_hit(self, hit: dict) -> None:
        if not self.journal_error:
            self._lines["hits"].append(hit)

    def _journal(self, head_only: bool = False) -> None:
        if self.journal_error:
            return
        try:
            if self._head is not None:
                self._write_head()
            if not head_only:
                self._write_journal()
        except Exception as exc:  # a full disk: as for the audio, the take goes on and the user is told
            self.journal_error = f"{type(exc).__name__}: {exc}"
            self._rows, self._lines = [], {"onsets": [], "hits": []}

    def _write_journal(self) -> None:
        if self._rows:
            chunks, self._rows = self._rows, []
            rows = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
            self.chunks_written += 1
            with atomic_path(self.journal / f"rows-{self.chunks_written:06d}.npz") as tmp:
                np.savez(tmp, **rows)
        for what, lines in self._lines.items():
            if not lines:
                continue
            f = self._jsonl.get(what)
            if f is None:
                f = self._jsonl[what] = open(self.journal / f"{what}.jsonl", "a", encoding="utf-8")
            f.write("".join(json.dumps(d) + "\n" for d in lines))
            lines.clear()
            f.flush()

    def write(self, inp: np.ndarray | None, drums: np.ndarray | None) -> None:
        if self.error:
            return
        if self._head is not None:
            self._journal(head_only=True)
        try:
            if inp is not None and len(inp):
                self.input.write(inp)
                self.frames_in += len(inp)
            if drums is not None and len(drums):
                self.drums.write(drums)
                self.frames_drums += len(drums)
            now = time.monotonic()
            if now - self._last_header >= HEADER_EVERY_S:
                self._last_header = now
                self.sync()
        except Exception as exc:  # a full disk: the take goes on, the writing stops, the user is told
            self.error = f"{type(exc).__name__}: {exc}"

    def sync(self) -> None:
        """Make what was written so far readable by others (headers, then the OS), then the journal."""
        for f in (self.input, self.drums):
            try:
                f._check_if_closed()
                from soundfile import _snd
                _snd.sf_command(f._file, SFC_UPDATE_HEADER_NOW, _snd_null(), 0)
                f.flush()
            except Exception:
                pass
        self._journal()

    def close(self) -> None:
        for f in (self.input, self.drums, *self._jsonl.values()):
            try:
                f.close()
            except Exception:
                pass
        self._jsonl = {}


def _snd_null():
    from soundfile import _ffi
    return _ffi.NULL


class RowLog:
    """The take's rows, copied out of the schedule's slots once settled (a loop reuses its slots).

    A row is settled a bar after its time: its drums have played and the musician's
    onset for it has been heard.
    """

    def __init__(self, sched, journal: TakeWriter | None = None):
        self.sched = sched
        self.done = 0
        self.chunks: list[dict] = []
        self.journal = journal   # each chunk also goes to the take's journal

    def collect(self, upto: int) -> None:
        sched = self.sched
        upto = min(int(upto), sched.next_commit)
        if upto <= self.done:
            return
        self.chunks.append(sched.row_record(np.arange(self.done, upto)))
        if self.journal is not None:
            self.journal.add_rows(self.chunks[-1])
        self.done = upto

    def settle(self) -> None:
        """Collect the rows more than a bar behind the playhead."""
        sched = self.sched
        k = self.done
        now = sched.sample
        while k < sched.next_commit and sched.row_time(k) + sched.bar_samples[k % sched.N] < now:
            k += 1
            if k - self.done >= 4096:
                break
        self.collect(k)

    def rows(self) -> dict:
        """Every row collected so far, then the rest up to the last committed one."""
        self.collect(self.sched.next_commit)
        if not self.chunks:
            return {}
        return {key: np.concatenate([c[key] for c in self.chunks]) for key in self.chunks[0]}


class Reader:
    """The one consumer of the stage's rings (see module docs)."""

    def __init__(self, engine):
        self.engine = engine
        self.stage = None
        self.gen = 0
        self.take = None           # the schedule being heard
        self.take_start = 0        # its first sample's take time (negative with a count-in)
        self.heard = 0             # input samples of the take given to its listener
        self.writer: TakeWriter | None = None
        self.hits: list[dict] = []
        self.onsets: list[dict] = []
        self.listener = None
        self.dropped_reported = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.lock = threading.Lock()   # drain() from the thread and from stop(): one at a time

    # -- set up by the engine between takes ----------------------------------------------------------
    def begin(self, sched, listener, writer: TakeWriter | None) -> None:
        with self.lock:
            self.take, self.listener, self.writer = sched, listener, writer
            self.rowlog = RowLog(sched, journal=writer)
            if writer is not None:
                writer.begin(getattr(self.engine, "take_settings", {}) or {}, getattr(self.engine, "score_path", None))
            self.hits, self.onsets = [], []
            self.heard = 0
            self.pending_take = True
            self.next_playhead = -10**12
            self.end_said = False
            self.journal_said = False

    def end(self) -> TakeWriter | None:
        with self.lock:
            self._drain()
            w, self.writer, self.take = self.writer, None, None
            return w

    # -- the thread ------------------------------------------------------------------------------------
    def start_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rolypoly-reader", daemon=True)
        self._thread.start()

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(0.004):
            try:
                self.drain()
            except Exception as exc:  # the reader must outlive a bug in what it feeds
                self.engine.emit("error", f"reader: internal error {type(exc).__name__}: {exc}")

    def drain(self) -> None:
        with self.lock:
            self._drain()

    def _drain(self) -> None:
        stage = self.engine.stage
        if stage is None:
            return
        ctl = stage.ctl
        # the write index first: a take that started within what we read has already published itself
        w = int(stage.in_idx[blk.W])
        gen = int(ctl[blk.TAKE_GEN])
        pos = int(ctl[blk.TAKE_RING_POS])
        r = int(stage.in_idx[blk.R])
        data = blk.ring_read(stage.in_ring, stage.in_idx, max_items=w - r)
        drums = stage.read_drums()
        hits = stage.read_hits()
        if gen != self.gen and self.take is not None and getattr(self, "pending_take", False):
            # the take began at ring position pos: what came before belongs to the time between takes
            cut = min(max(pos - r, 0), len(data))
            self._between_takes(data[:cut])
            data = data[cut:]
            self.gen = gen
            self.pending_take = False
            self.take_start = int(ctl[blk.TAKE_START_SAMPLE])
            if self.listener is not None:
                self.listener.reset()
            drums = drums[-len(data):] if len(data) else drums[:0]
        elif gen != self.gen:
            self.gen = gen
        for h in hits:   # first: the hit outlets are the ones a patch waits for
            self._hit(h)
        if self.take is None or getattr(self, "pending_take", False):
            self._between_takes(data)
        else:
            self._hear(data)
            if self.writer is not None:
                self.writer.write(data, drums)
                if self.writer.journal_error and not getattr(self, "journal_said", False):
                    self.journal_said = True
                    self.engine.emit("error", f"the take's journal stopped ({self.writer.journal_error}): "
                                              "a crash now would lose its rows; the take is saved at stop as usual")
        sched = self.take
        if sched is not None and not getattr(self, "pending_take", False):
            b1 = sched.sample
            if b1 >= self.next_playhead:
                self.engine.emit("playhead", 1000.0 * b1 / self.engine.sr)
                self.next_playhead = b1 + int(PLAYHEAD_EVERY_MS * self.engine.sr / 1000.0)
            self.rowlog.settle()
            if sched.done and not self.end_said:
                self.end_said = True
                self.engine.emit("status", "end of score")
        dropped = int(ctl[blk.IN_DROPPED])
        if dropped > self.dropped_reported:
            self.engine.emit("error", f"input dropped: {dropped - self.dropped_reported} samples (reader behind)")
            self.dropped_reported = dropped

    def _between_takes(self, data: np.ndarray) -> None:
        if len(data) and self.engine._soundcheck is not None:
            self.engine._soundcheck_feed(data)

    def _hear(self, data: np.ndarray) -> None:
        if not len(data) or self.listener is None:
            return
        eng = self.engine
        sched = self.take
        lst = self.listener
        B = eng.block_frames
        for a in range(0, len(data), B):
            seg = data[a:a + B]
            for t in lst.process(seg):
                if eng.latency_ms is not None:
                    t = t + lst.latency_s - eng.latency_ms / 1000.0
                at = t * eng.sr + self.take_start
                k = sched.match_onset(at)
                if k >= 0:
                    s = k % sched.capacity
                    tau_ms = float(sched.tau_g[s] * sched.bar_samples[k % sched.N] * 1000.0 / eng.sr)
                    self.onsets.append({"tau_ms": tau_ms, "row": int(k), "time_s": float(at / eng.sr)})
                    if self.writer is not None:
                        self.writer.add_onset(self.onsets[-1])
                    eng.emit("onset", tau_ms, int(k), float(at / eng.sr))
        self.heard += len(data)

    def _hit(self, h) -> None:
        sample, drum, vel, k = (int(v) for v in h)
        sched = self.take
        off_ms = 0.0
        if sched is not None and k >= 0:
            s = k % sched.capacity
            off_ms = float(sched.real_off[s, drum] * sched.bar_samples[k % sched.N] * 1000.0 / self.engine.sr)
        self.hits.append({"sample": sample, "drum": drum, "velocity": vel, "offset_ms": off_ms})
        if self.writer is not None and self.take is not None:
            self.writer.add_hit(self.hits[-1])
        self.engine.emit("hit", sample, drum, vel, off_ms)

