"""The block: what runs once per audio block, compiled, with no Python and no GIL.

:func:`run_block` is a numba ``nogil`` kernel over preallocated arrays.  The JACK
driver calls it from a numba ``cfunc`` registered as the JACK process callback
(:func:`jack_process`), so the audio thread never enters the interpreter: a Python
thread holding the GIL (a ``json.dumps`` of a long take, a plot, a UI) cannot delay
a block.  Offline and clock-only drivers call the same kernel from Python, so every
driver plays the same samples.

Per block the kernel

1. copies the input into the *input ring* (read by the reader thread: listener,
   sound check, recorder);
2. fixes every row whose earliest hit falls before the end of the next block
   (*commit*): with the model's prediction when the worker has published it for
   that row, as written otherwise (counted as late), so a stalled worker never stops
   the drums;
3. starts due hits at their exact sample in the voice bank (chokes, steal fades,
   velocity, pan as in :mod:`rolypoly.synth.render`) and reports each on the *hit
   ring*;
4. renders the voices, writes the output and copies it into the *drum ring*
   (the recorder's).

Why a numba cfunc and not python-rtmixer: rtmixer plays pre-rendered buffers, so
the drums would be synthesised in Python ahead of time and a 200 ms GIL hold would
need 200 ms of rendered (hence fixed) drums; here the synthesis itself runs in the
callback and rows are fixed only one block before they sound.

Ownership (single producer, single consumer; one writer per field):

* ``ctl`` slots, ring write indices, a take's ``tc`` counters, ``committed``,
  ``late``, ``real_vel``, ``real_off`` (the lean included), ``lean_at`` (the lean a row
  was fixed with), ``pend``: the audio side (this kernel);
* ring read indices, ``tf[LEAN]`` and ``pos_lean`` (per bar position, then per drum: the drums' lean towards the
  musician, overall and per bar position, a bar fraction added to every row it fixes):
  the reader thread;
* ``pred``/``ready`` and ``pred_early``/``ready_early``: the model worker (``ready[s] =
  k + 1`` after ``pred[s]`` is written, so a slot of an earlier loop iteration is never
  mistaken for row ``k``; the early pair is a fallback made further ahead, so a worker
  stalled for a few hundred ms still leaves the drums a prediction to play);
* ``ctl[PENDING_TAKE]``, ``tc[FILTER]``, ``tc[USE_MODEL]``, ``tf[GEN_*]``: the engine's
  command side; each is one machine word the kernel reads at the block's start.

Memory order: a producer writes data, then a fence, then its index; a consumer reads
the index, a fence, then the data (:func:`fence`).
"""
from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from rolypoly.synth.render import bank_trigger
from rolypoly.synth.voice import process_bank

# -- ctl: the stage's control words (int64) ---------------------------------------------------------
(PENDING_TAKE, ACTIVE_TAKE, BLOCKS, XRUNS, IN_DROPPED, HITS_DROPPED, DRUMS_DROPPED, NULL_TAKE,
 PORT_IN, PORT_OUT_L, PORT_OUT_R, TAKE_RING_POS, TAKE_GEN, CB_LAST_US, STAGE_TABLE, SYN_CLOCK,
 SYN_SEED, SYN_POLY, FRAMES_ODD, TAKE_START_SAMPLE, INJECT_ADDR, INJECT_LEN, INJECT_POS, SHUTDOWN, TAKE_T0_US, PA_IN_CH, PA_LAST_FLAG, TS_ADDR, SWITCH_BLOCK) = range(29)
N_CTL = 32
# -- tc: a take's counters (int64) ----------------------------------------------------------------
(NEXT_COMMIT, LATE_ROWS, DROPPED_HITS, N_PEND, FILTER, USE_MODEL, LOOP, N_ROWS, CAPACITY, SAMPLE,
 FINISHED, EARLY_ROWS) = range(12)
N_TC = 16
# -- tf: a take's floats ----------------------------------------------------------------------------
(LENGTH, GEN_LO, GEN_HI, FADE_SAMPLES, SR, LEAN) = range(6)
N_TF = 8
FILTER_CODES = {"score_notes": 0, "score_notes_and_vels": 1, "none": 2}
MAX_PENDING = 512
# ring indices: write at [0], read at [8] (a cache line apart)
W, R = 0, 8
N_IDX = 16
HIST_US = 8192          # callback duration histogram: 1 us bins
N_DRUMS = 9
VEL_SCALE = 127.0


@intrinsic
def as_pointer(typingctx, addr):
    """An integer address as a ``void *`` (to view foreign memory with ``numba.carray``)."""
    if not isinstance(addr, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(addr), codegen


@intrinsic
def fence(typingctx):
    """A full memory fence: what was written before it is visible before what comes after."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def row_time(k, row_samples, N, length):
    return row_samples[k % N] + (k // N) * length


@njit(nogil=True, cache=True, error_model="numpy")
def commit_rows(sample_end, row_samples, bar_samples, max_early, score_vel, off_clip, off_scale,
                pred, ready, pred_early, ready_early, committed, late, real_vel, real_off, lean_at, pos_of, pos_lean, pend, tc, tf):
    """Fix every row whose earliest hit falls before ``sample_end`` and queue its hits; returns rows fixed.

    A row plays the worker's prediction made within the lookahead (``pred``) when it is
    published, else its early prediction (``pred_early``, made further ahead as a
    fallback; counted in ``tc[EARLY_ROWS]``), else as written (counted as late).
    """
    N = tc[N_ROWS]
    C = tc[CAPACITY]
    loop = tc[LOOP] != 0
    length = tf[LENGTH]
    use_model = tc[USE_MODEL] != 0
    mode = tc[FILTER]
    lo = tf[GEN_LO] * VEL_SCALE
    hi = tf[GEN_HI] * VEL_SCALE
    lim = off_clip * off_scale
    n_pos = pos_lean.shape[0] - N_DRUMS   # pos_lean: the bar positions' leans, then each drum's
    n = 0
    while loop or tc[NEXT_COMMIT] < N:
        k = tc[NEXT_COMMIT]
        i = k % N
        if row_time(k, row_samples, N, length) - max_early[i] >= sample_end:
            break
        s = k % C
        t0 = row_time(k, row_samples, N, length)
        bar = bar_samples[i]
        fence()
        use_pred = use_model and ready[s] == k + 1
        src = pred
        if use_model and not use_pred and ready_early[s] == k + 1:
            use_pred = True
            src = pred_early
            tc[EARLY_ROWS] += 1
        fence()
        lean = (tf[LEAN] + pos_lean[pos_of[i]]) if use_model else 0.0   # model off: as written
        lean_at[s] = lean
        late[s] = 1 if (use_model and not use_pred) else 0
        if use_model and not use_pred:
            tc[LATE_ROWS] += 1
        for d in range(N_DRUMS):
            v = int(score_vel[i, d])
            off = 0.0
            if use_pred:
                pv = float(src[s, d]) * VEL_SCALE
                off = max(-off_clip, min(off_clip, float(src[s, 9 + d]))) * off_scale
                if mode == 0:
                    v = int(round(min(127.0, max(1.0, pv)))) if v > 0 else 0
                elif mode == 2:
                    v = int(round(min(hi, max(1.0, pv)))) if pv >= lo else 0
            if v <= 0:
                real_vel[s, d] = 0
                real_off[s, d] = 0.0
                continue
            # the drum's own lean (after the positions' in pos_lean): see Schedule
            off = max(-lim, min(lim, off + lean + (pos_lean[n_pos + d] if use_model else 0.0)))
            real_vel[s, d] = v
            real_off[s, d] = off
            at = int(round(t0 + off * bar))
            if at < 0:
                at = 0
            p = tc[N_PEND]
            if p < pend.shape[0]:
                pend[p, 0] = at
                pend[p, 1] = d
                pend[p, 2] = v
                pend[p, 3] = k
                tc[N_PEND] = p + 1
            else:
                tc[DROPPED_HITS] += 1
        fence()
        committed[s] = k + 1
        tc[NEXT_COMMIT] = k + 1
        n += 1
    return n


@njit(nogil=True, cache=True, error_model="numpy")
def run_block(n, fresh, inp, out_l, out_r, mix,
              coefs, states, active, vgroup, vage, params, pans, groups,
              in_ring, in_idx, dr_ring, dr_idx, hit_ring, hit_idx, ctl,
              row_samples, bar_samples, max_early, score_vel, consts,
              pred, ready, pred_early, ready_early, committed, late, real_vel, real_off, lean_at, pos_of, pos_lean, pend, tc, tf):
    """One block of ``n`` frames (see module docs); ``fresh`` = the first block of a new take."""
    if fresh:   # which block applied the last publish/retire (``ctl[BLOCKS]`` once it is done)
        ctl[SWITCH_BLOCK] = ctl[BLOCKS] + 1
    # 1. a new take: where its input starts in the ring, published before that input is
    if fresh and tc[N_ROWS] > 0:   # a take begins (a retired take's voices ring on)
        for v in range(active.shape[0]):
            active[v] = 0
        ctl[TAKE_RING_POS] = in_idx[W]
        ctl[TAKE_START_SAMPLE] = tc[SAMPLE]
        fence()
        ctl[TAKE_GEN] += 1
        fence()
    # the input into its ring (dropped and counted when the reader is behind)
    cap = in_ring.shape[0]
    w = in_idx[W]
    if w + n - in_idx[R] <= cap:
        for j in range(n):
            in_ring[(w + j) % cap] = inp[j]
        fence()
        in_idx[W] = w + n
    else:
        ctl[IN_DROPPED] += n
    playing = tc[N_ROWS] > 0 and tc[FINISHED] == 0
    if playing:
        b0 = tc[SAMPLE]
        b1 = b0 + n
        # 2. rows due by the end of the next block
        commit_rows(float(b1 + n), row_samples, bar_samples, max_early, score_vel, consts[0], consts[1],
                    pred, ready, pred_early, ready_early, committed, late, real_vel, real_off, lean_at, pos_of, pos_lean, pend, tc, tf)
        # 3. due hits, at their sample
        p = 0
        hcap = hit_ring.shape[0]
        while p < tc[N_PEND]:
            at = pend[p, 0]
            if at < b1:
                off = at - b0
                if off < 0:
                    off = 0
                ctl[SYN_CLOCK] += 1
                seed = (ctl[SYN_SEED] * 1103515245 + 12345) & 0x7FFFFFFF
                ctl[SYN_SEED] = seed
                bank_trigger(coefs, states, active, vgroup, vage, ctl[SYN_CLOCK], params, pans, groups,
                             pend[p, 1], float(pend[p, 2]), float(off), tf[SR], ctl[SYN_POLY], tf[FADE_SAMPLES],
                             seed)
                hw = hit_idx[W]
                if hw - hit_idx[R] < hcap:
                    q = hw % hcap
                    hit_ring[q, 0] = b0 + off
                    hit_ring[q, 1] = pend[p, 1]
                    hit_ring[q, 2] = pend[p, 2]
                    hit_ring[q, 3] = pend[p, 3]
                    fence()
                    hit_idx[W] = hw + 1
                else:
                    ctl[HITS_DROPPED] += 1
                last = tc[N_PEND] - 1
                for c in range(4):
                    pend[p, c] = pend[last, c]
                tc[N_PEND] = last
            else:
                p += 1
        tc[SAMPLE] = b1
        if not loop_active(tc) and tc[NEXT_COMMIT] >= tc[N_ROWS] and tc[N_PEND] == 0 and b1 >= tf[LENGTH]:
            fence()
            tc[FINISHED] = 1
    # 4. the voices (they ring on after a take ends)
    block = mix[:n]
    process_bank(coefs, states, active, block)
    dcap = dr_ring.shape[0]
    dw = dr_idx[W]
    keep = dw + n - dr_idx[R] <= dcap
    for j in range(n):
        out_l[j] = block[j, 0]
        out_r[j] = block[j, 1]
        if keep:
            q = (dw + j) % dcap
            dr_ring[q, 0] = block[j, 0]
            dr_ring[q, 1] = block[j, 1]
    if keep:
        fence()
        dr_idx[W] = dw + n
    else:
        ctl[DRUMS_DROPPED] += n
    ctl[BLOCKS] += 1


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def loop_active(tc):
    return tc[LOOP] != 0


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def take_switch(ctl, t0):
    """Apply the take the command side published (one word); True on that take's first block."""
    want = ctl[PENDING_TAKE]
    if want == ctl[ACTIVE_TAKE]:
        return False
    ctl[ACTIVE_TAKE] = want
    if want != 0:
        ctl[INJECT_POS] = 0
        ctl[TAKE_T0_US] = t0
    return True


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def inject_input(ctl, inp, n):
    """Fill ``inp`` from a recorded musician when one is set (benchmarks, tests); False otherwise."""
    if ctl[INJECT_ADDR] == 0:
        return False
    inj = carray(as_pointer(ctl[INJECT_ADDR]), (ctl[INJECT_LEN],), np.float32)
    q = ctl[INJECT_POS]
    for j in range(n):
        inp[j] = inj[q + j] if q + j < inj.shape[0] else 0.0
    ctl[INJECT_POS] = q + n
    return True


# -- rings, read from Python -------------------------------------------------------------------------
def ring_read(ring: np.ndarray, idx: np.ndarray, max_items: int | None = None) -> np.ndarray:
    """Take everything written to an SPSC ring since the last read (a copy); the reader's side."""
    w = int(idx[W])
    r = int(idx[R])
    n = w - r
    if max_items is not None:
        n = min(n, int(max_items))
    if n <= 0:
        return ring[:0].copy()
    cap = ring.shape[0]
    a = r % cap
    if a + n <= cap:
        out = ring[a:a + n].copy()
    else:
        out = np.concatenate([ring[a:], ring[:n - (cap - a)]])
    idx[R] = r + n
    return out


# -- the stage's table of arrays: what the JACK callback unpacks by address -------------------------
# (name, dtype, ndim) in the order run_block takes them
STAGE_ARRAYS = (("inp", np.float32, 1), ("out_l", np.float32, 1), ("out_r", np.float32, 1), ("mix", np.float32, 2),
                ("coefs", np.float64, 2), ("states", np.float64, 2), ("active", np.int64, 1),
                ("vgroup", np.int64, 1), ("vage", np.int64, 1), ("params", np.float64, 2),
                ("pans", np.float64, 2), ("groups", np.int64, 1), ("in_ring", np.float32, 1),
                ("in_idx", np.int64, 1), ("dr_ring", np.float32, 2), ("dr_idx", np.int64, 1),
                ("hit_ring", np.int64, 2), ("hit_idx", np.int64, 1), ("hist", np.int64, 1))
TAKE_ARRAYS = (("row_samples", np.float64, 1), ("bar_samples", np.float64, 1), ("max_early", np.float64, 1),
               ("score_vel", np.int16, 2), ("consts", np.float64, 1), ("pred", np.float32, 2),
               ("ready", np.int64, 1), ("pred_early", np.float32, 2), ("ready_early", np.int64, 1),
               ("committed", np.int64, 1), ("late", np.int8, 1),
               ("real_vel", np.int16, 2), ("real_off", np.float64, 2), ("lean_at", np.float64, 1),
               ("pos_of", np.int64, 1), ("pos_lean", np.float64, 1), ("pend", np.int64, 2),
               ("tc", np.int64, 1), ("tf", np.float64, 1))


def address_table(arrays: list[np.ndarray], specs) -> np.ndarray:
    """``(n, 3)`` int64: address, rows, columns of each array (checked against ``specs``)."""
    tab = np.zeros((len(specs), 3), np.int64)
    for i, ((name, dtype, ndim), a) in enumerate(zip(specs, arrays)):
        if a.dtype != dtype or a.ndim != ndim or not a.flags.c_contiguous:
            raise TypeError(f"block array {name}: need C-contiguous {np.dtype(dtype).name} with {ndim} dims, "
                            f"got {a.dtype} {a.shape}")
        tab[i] = (a.ctypes.data, a.shape[0], a.shape[1] if ndim == 2 else 1)
    return tab


def _view_code(specs, table: str, prefix: str = "") -> str:
    lines = []
    for i, (name, dtype, ndim) in enumerate(specs):
        shape = f"({table}[{i}, 1], {table}[{i}, 2])" if ndim == 2 else f"({table}[{i}, 1],)"
        lines.append(f"    {prefix}{name} = carray(as_pointer({table}[{i}, 0]), {shape}, np.{np.dtype(dtype).name})")
    return "\n".join(lines)


def _make_jack_callbacks():
    """Compile the JACK process and xrun callbacks (numba cfuncs, no GIL); returns them."""
    import ctypes
    import ctypes.util

    from numba import carray, cfunc
    lib = ctypes.CDLL(ctypes.util.find_library("jack") or "libjack.so.0")
    get_buffer = lib.jack_port_get_buffer
    get_buffer.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    get_buffer.restype = ctypes.c_void_p
    get_time = lib.jack_get_time
    get_time.argtypes = []
    get_time.restype = ctypes.c_uint64
    stage_names = ", ".join(n for n, _, _ in STAGE_ARRAYS)
    take_names = ", ".join(n for n, _, _ in TAKE_ARRAYS)
    # The array views are unpacked by generated code: carray needs each dtype as a constant.
    src = f"""
def _jack_process(nframes, arg):
    t0 = np.int64(get_time())
    ctl = carray(arg, (N_CTL,), np.int64)
    st = carray(as_pointer(ctl[STAGE_TABLE]), ({len(STAGE_ARRAYS)}, 3), np.int64)
{_view_code(STAGE_ARRAYS, "st")}
    n = int(nframes)
    src = carray(as_pointer(get_buffer(as_pointer(ctl[PORT_IN]), nframes)), (n,), np.float32)
    dst_l = carray(as_pointer(get_buffer(as_pointer(ctl[PORT_OUT_L]), nframes)), (n,), np.float32)
    dst_r = carray(as_pointer(get_buffer(as_pointer(ctl[PORT_OUT_R]), nframes)), (n,), np.float32)
    if n > inp.shape[0]:   # a period longer than the stage was built for: silence, counted
        ctl[FRAMES_ODD] += 1
        for j in range(n):
            dst_l[j] = 0.0
            dst_r[j] = 0.0
        return 0
    want = ctl[PENDING_TAKE]
    fresh = take_switch(ctl, t0)
    if not inject_input(ctl, inp, n):   # a recorded musician replaces the input port in benchmarks, tests
        for j in range(n):
            inp[j] = src[j]
    tt = carray(as_pointer(want if want != 0 else ctl[NULL_TAKE]), ({len(TAKE_ARRAYS)}, 3), np.int64)
{_view_code(TAKE_ARRAYS, "tt")}
    run_block(n, fresh, {stage_names.replace("hist, ", "").replace(", hist", "")}, ctl, {take_names})
    for j in range(n):
        dst_l[j] = out_l[j]
        dst_r[j] = out_r[j]
    dt = np.int64(get_time()) - t0
    ctl[CB_LAST_US] = dt
    if dt >= hist.shape[0]:
        dt = hist.shape[0] - 1
    hist[dt] += 1
    return 0


def _jack_xrun(arg):
    ctl = carray(arg, (N_CTL,), np.int64)
    ctl[XRUNS] += 1
    return 0


def _jack_shutdown(arg):
    ctl = carray(arg, (N_CTL,), np.int64)
    ctl[SHUTDOWN] = 1
"""
    scope = dict(globals())
    scope.update(carray=carray, get_buffer=get_buffer, get_time=get_time)
    exec(compile(src, "<rolypoly.live.block jack callback>", "exec"), scope)
    process = cfunc(types.intc(types.uint32, types.voidptr), nopython=True, error_model="numpy")(scope["_jack_process"])
    xrun = cfunc(types.intc(types.voidptr), nopython=True, error_model="numpy")(scope["_jack_xrun"])
    shutdown = cfunc(types.void(types.voidptr), nopython=True, error_model="numpy")(scope["_jack_shutdown"])
    return process, xrun, shutdown


def _make_portaudio_callback():
    """Compile the PortAudio stream callback (a numba cfunc over interleaved buffers, no GIL)."""
    import ctypes

    from numba import carray, cfunc
    libc = ctypes.CDLL(None)
    clock_gettime = libc.clock_gettime
    clock_gettime.argtypes = [ctypes.c_int, ctypes.c_void_p]
    clock_gettime.restype = ctypes.c_int
    stage_names = ", ".join(n for n, _, _ in STAGE_ARRAYS)
    take_names = ", ".join(n for n, _, _ in TAKE_ARRAYS)
    src = f"""
def _now_us(ctl):
    ts = carray(as_pointer(ctl[TS_ADDR]), (2,), np.int64)
    clock_gettime(1, as_pointer(ctl[TS_ADDR]))   # CLOCK_MONOTONIC
    return ts[0] * 1000000 + ts[1] // 1000


def _pa_process(input, output, frames, time_info, flags, arg):
    ctl = carray(arg, (N_CTL,), np.int64)
    t0 = _now_us(ctl)
    st = carray(as_pointer(ctl[STAGE_TABLE]), ({len(STAGE_ARRAYS)}, 3), np.int64)
{_view_code(STAGE_ARRAYS, "st")}
    n = int(frames)
    dst = carray(output, (2 * n,), np.float32)
    if n > inp.shape[0]:
        ctl[FRAMES_ODD] += 1
        for j in range(2 * n):
            dst[j] = 0.0
        return 0
    if (flags & 15) != 0:   # under/overflow flags: one event may flag consecutive blocks, count it once
        if ctl[BLOCKS] - ctl[PA_LAST_FLAG] > 1:
            ctl[XRUNS] += 1
        ctl[PA_LAST_FLAG] = ctl[BLOCKS]
    want = ctl[PENDING_TAKE]
    fresh = take_switch(ctl, t0)
    ch = ctl[PA_IN_CH]
    if not inject_input(ctl, inp, n):
        if ch > 0:
            src = carray(input, (n * ch,), np.float32)
            for j in range(n):
                inp[j] = src[j * ch]
        else:
            for j in range(n):
                inp[j] = 0.0
    tt = carray(as_pointer(want if want != 0 else ctl[NULL_TAKE]), ({len(TAKE_ARRAYS)}, 3), np.int64)
{_view_code(TAKE_ARRAYS, "tt")}
    run_block(n, fresh, {stage_names.replace("hist, ", "").replace(", hist", "")}, ctl, {take_names})
    for j in range(n):
        dst[2 * j] = out_l[j]
        dst[2 * j + 1] = out_r[j]
    dt = _now_us(ctl) - t0
    ctl[CB_LAST_US] = dt
    if dt >= hist.shape[0]:
        dt = hist.shape[0] - 1
    if dt < 0:
        dt = 0
    hist[dt] += 1
    return 0
"""
    scope = dict(globals())
    scope.update(carray=carray, clock_gettime=clock_gettime)
    exec(compile(src, "<rolypoly.live.block portaudio callback>", "exec"), scope)
    scope["_now_us"] = njit(nogil=True, error_model="numpy")(scope["_now_us"])
    sig = types.intc(types.voidptr, types.voidptr, types.uint64, types.voidptr, types.uint64, types.voidptr)
    return cfunc(sig, nopython=True, error_model="numpy")(scope["_pa_process"])


_PA = None


def portaudio_callback():
    """The compiled PortAudio stream callback, compiled once per process."""
    global _PA
    if _PA is None:
        _PA = _make_portaudio_callback()
    return _PA


_JACK = None


def jack_callbacks():
    """The compiled JACK callbacks ``(process, xrun, shutdown)``, compiled once per process."""
    global _JACK
    if _JACK is None:
        _JACK = _make_jack_callbacks()
    return _JACK


class Stage:
    """The audio side's memory: the voice bank, the rings, the control words (see module docs).

    One stage lives as long as its engine's kit; a take's schedule is handed over with
    :meth:`publish` and taken back with :meth:`retire`, each applied by the block at a
    block boundary.  :meth:`run` plays one block from Python (offline and clock-only
    drivers); the JACK driver runs the same kernel from its compiled callback.

    Parameters
    ----------
    renderer : rolypoly.synth.BlockRenderer (its voice bank becomes the stage's)
    max_block : the longest block a driver may ask for
    ring_s : seconds of input and drums the rings hold for the reader thread
    """

    def __init__(self, renderer, max_block: int = 4096, ring_s: float = 8.0):
        sr = int(renderer.sr)
        self.sr = sr
        self.renderer = renderer
        self.max_block = int(max_block)
        cap = 1 << int(np.ceil(np.log2(max(ring_s * sr, 4 * max_block))))
        self.inp = np.zeros(self.max_block, np.float32)
        self.out_l = np.zeros(self.max_block, np.float32)
        self.out_r = np.zeros(self.max_block, np.float32)
        self.mix = np.zeros((self.max_block, 2), np.float32)
        self.in_ring = np.zeros(cap, np.float32)
        self.in_idx = np.zeros(N_IDX, np.int64)
        self.dr_ring = np.zeros((cap, 2), np.float32)
        self.dr_idx = np.zeros(N_IDX, np.int64)
        self.hit_ring = np.zeros((8192, 4), np.int64)
        self.hit_idx = np.zeros(N_IDX, np.int64)
        self.hist = np.zeros(HIST_US, np.int64)
        self.ctl = np.zeros(N_CTL, np.int64)
        self.timespec = np.zeros(2, np.int64)
        self.ctl[TS_ADDR] = self.timespec.ctypes.data
        r = renderer
        self.ctl[SYN_POLY] = r.polyphony
        self.ctl[SYN_SEED] = 1
        self._stage_arrays = [self.inp, self.out_l, self.out_r, self.mix, r.coefs, r.states, r.active, r.vgroup,
                              r.vage, np.ascontiguousarray(r.params, np.float64),
                              np.ascontiguousarray(r.pans, np.float64), np.ascontiguousarray(r.groups, np.int64),
                              self.in_ring, self.in_idx, self.dr_ring, self.dr_idx, self.hit_ring, self.hit_idx,
                              self.hist]
        self.stage_table = address_table(self._stage_arrays, STAGE_ARRAYS)
        self.ctl[STAGE_TABLE] = self.stage_table.ctypes.data
        self._null = _null_take(sr)
        self._null_table = address_table(self._null, TAKE_ARRAYS)
        self.ctl[NULL_TAKE] = self._null_table.ctypes.data
        # tables the block may still be reading: kept alive until replaced twice
        self._live: list = []
        self.fade_samples = float(r.fade_samples)

    def publish(self, sched) -> None:
        """Hand ``sched`` to the audio side: the next block starts it (its first sample is ``sched.sample``)."""
        sched.tf[FADE_SAMPLES] = self.fade_samples
        sched.tf[SR] = self.sr
        arrays = sched.arrays()
        table = address_table(arrays, TAKE_ARRAYS)
        self._live = (self._live + [(table, arrays)])[-3:]
        # the tables are written by separate C calls before this store (in program order on x86-64)
        self.ctl[PENDING_TAKE] = table.ctypes.data

    def retire(self) -> None:
        """Take the current schedule back from the audio side (the next block plays none)."""
        self.ctl[PENDING_TAKE] = 0

    def acknowledged(self) -> bool:
        """Has the block applied the last publish/retire?"""
        return int(self.ctl[ACTIVE_TAKE]) == int(self.ctl[PENDING_TAKE])

    def run(self, inp: np.ndarray, out: np.ndarray) -> None:
        """Play one block from Python: ``inp`` (n,) or (n, c) float32 in, ``out`` (n, 2) float32 filled."""
        n = out.shape[0]
        if n > self.max_block:
            raise ValueError(f"block of {n} frames is longer than the stage's {self.max_block}")
        mono = inp if inp.ndim == 1 else inp[:, 0]
        self.inp[:n] = mono[:n]
        want = int(self.ctl[PENDING_TAKE])
        fresh = want != int(self.ctl[ACTIVE_TAKE])
        if fresh:
            self.ctl[ACTIVE_TAKE] = want
        arrays = self._null
        if want:
            for table, arr in self._live:
                if table.ctypes.data == want:
                    arrays = arr
        run_block(n, fresh, *self._stage_arrays[:-1], self.ctl, *arrays)
        out[:, 0] = self.out_l[:n]
        out[:, 1] = self.out_r[:n]

    def read_input(self) -> np.ndarray:
        return ring_read(self.in_ring, self.in_idx)

    def read_drums(self) -> np.ndarray:
        return ring_read(self.dr_ring, self.dr_idx)

    def read_hits(self) -> np.ndarray:
        return ring_read(self.hit_ring, self.hit_idx)

    def callback_us(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) of the compiled callback's duration in microseconds."""
        total = int(self.hist.sum())
        if total == 0:
            return None
        c = np.cumsum(self.hist)
        return float(np.searchsorted(c, q / 100.0 * total))


def _null_take(sr: int) -> list[np.ndarray]:
    tc = np.zeros(N_TC, np.int64)
    tc[CAPACITY] = 1
    tf = np.zeros(N_TF, np.float64)
    tf[SR] = sr
    return [np.zeros(1), np.ones(1), np.zeros(1), np.zeros((1, N_DRUMS), np.int16), np.zeros(2),
            np.zeros((1, 19), np.float32), np.zeros(1, np.int64), np.zeros((1, 19), np.float32), np.zeros(1, np.int64),
            np.zeros(1, np.int64), np.zeros(1, np.int8),
            np.zeros((1, N_DRUMS), np.int16), np.zeros((1, N_DRUMS)), np.zeros(1), np.zeros(1, np.int64), np.zeros(1),
            np.zeros((MAX_PENDING, 4), np.int64),
            tc, tf]
