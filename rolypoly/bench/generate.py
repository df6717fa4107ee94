"""``rolypoly bench generate``: generated bars against GMD test bars, next to two baselines, in one run.

Prompts (``--prompts tiled``, the default) cut every 4/4 take of the split into spans: the
``--prompt-bars`` P bars before bar k are the prompt, and the event model continues them
(``continue`` mode, seeded, ``--samples`` times) for the ``g = min(--bars, n - k)`` bars that
the drummer really played next, for k = P, P + bars, ... while at least 4 bars are left.
The generated bars thus stand in for bars P.. of every take, weighted as the takes are,
and are measured against exactly those GMD bars (the *reference*: "GMD <split> bars
P.."); ``distances_all_test_bars`` also measures everything against all bars of the split,
with the real drummer's bars as a row, to show how far a correct continuation sits from
them (the takes' first P bars, often sparser intros, are never continued).
``--prompts first`` is the earlier design (the first P bars of each take long enough,
``--bars`` bars each, reference all bars of the split).

The performance model plays the result (its velocities are the ones measured), reading the
generated rows as written scores are (per drum and bar position, the mean of the velocities
drawn there so far: :func:`rolypoly.free.generate.written_velocities`).  A second row keeps
the drawn velocities themselves (within the event model's velocity classes) and takes only
the micro-timing from the performance model (``filter_hits score_notes_and_vels``).  The same number of bars comes from two baselines: *random train
bars* (bars drawn at random from GMD train, with their real velocities; tiled: from bars
P.. of the train takes, the positions the generated bars stand for) and *supertonic's way*
(for each bar and drum, a pattern drawn by frequency from that drum's 64 most common
GMD-train patterns, at the drum's mean velocity).  Every system is measured with
:mod:`rolypoly.free.stats`; ``novelty`` is the share of its bars absent from GMD train.

The style check compares, span by span, the first 4 generated bars with the prompt's
last 4 (the same statistics, averaged over spans), next to the baselines' first 4 bars
and to what the real drummer played next.  A knob table shows density and complexity
steering the sampling (free mode from the takes' first prompts).
"""
from __future__ import annotations

import time

import numpy as np

from rolypoly.free import stats as st

HELP = "free mode: generated bars vs GMD test bars, random-bar baseline and supertonic's way"
MODEL = "event model (continue)"
OWN = "event model (continue), generated velocities"
STAT_KEYS = ("hits_per_bar_l1", "offbeat_share_diff", "ioi_tv", "velocity_intersection", "repetition_diff")


def add_arguments(p) -> None:
    p.add_argument("--bars", type=int, default=16, help="bars generated per prompt (default 16)")
    p.add_argument("--prompt-bars", type=int, default=8, help="bars of each test take given as the prompt")
    p.add_argument("--max-prompts", type=int, default=None, help="use at most this many test takes")
    p.add_argument("--samples", type=int, default=3, help="continuations per prompt (default 3)")
    p.add_argument("--split", default="test", choices=("test", "validation"),
                   help="GMD split of the prompts and reference bars (validation: for tuning the sampling)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling and of the baselines")
    p.add_argument("--temperature", type=float, default=None, help="default generate.temperature")
    p.add_argument("--drum-temperature", type=float, default=None, help="default generate.drum_temperature")
    p.add_argument("--vel-temperature", type=float, default=None, help="default generate.vel_temperature")
    p.add_argument("--loop-temperature", type=float, default=None, help="default generate.loop_temperature")
    p.add_argument("--prompts", default="tiled", choices=("tiled", "first"),
                   help="tiled: continue every take from bar P, P+bars, ... (reference: those bars); "
                        "first: only the first P bars of each take (reference: all bars)")
    p.add_argument("--events-model", default=None, help="default generate.events_model")
    p.add_argument("--model", default=None, help="performance model (default engine.model_path)")


def take_score(r: dict):
    """A GMD take's rows (16th grid, performed velocities) as a Score at its own tempo."""
    from rolypoly.score.midi import Score, TempoMap
    bpm = float(r["bpm"][0])
    tm = TempoMap(480, [0], [60e6 / bpm], [0], [(4, 4)])
    n = len(r["vel"])
    times = (r["bar"] + r["phase"]) * r["bar_ms"]
    return Score(times.astype(np.float64), r["vel"].astype(np.int16), np.zeros((n, 9)), r["bpm"].astype(np.float64),
                 r["tsig"].astype(np.float64), r["phase"].astype(np.float64), r["bar"].astype(np.int64), np.zeros(n), tm)


def _opt(a, b):
    return float(a) if a is not None else (None if b is None else float(b))


def _bars_of(r: dict, b0: int, b1: int) -> dict:
    """Rows of bars ``b0 .. b1-1`` of a take's rows, re-counted from bar 0."""
    sel = (r["bar"] >= b0) & (r["bar"] < b1)
    out = {k: v[sel] for k, v in r.items()}
    out["bar"] = out["bar"] - b0
    return out


def _seq_of_score(sc):
    return st.grid_sequence(sc.vel, sc.phase, sc.bar)


def _random_bars(train_bars: list, n: int, rng) -> tuple:
    """A sequence of ``n`` bars drawn at random from ``train_bars`` (list of (steps 0..15, vel))."""
    steps, vels = [], []
    for b, i in enumerate(rng.integers(0, len(train_bars), n)):
        s, v = train_bars[i]
        steps.append(s + b * st.STEPS); vels.append(v)
    return np.concatenate(steps).astype(np.int64), np.concatenate(vels)


def _supertonic_bars(common: list, mean_vel: np.ndarray, n: int, rng) -> tuple:
    """``n`` bars, each drum's pattern drawn from its common patterns by frequency."""
    rows = {}
    for b in range(n):
        for d, (pats, w) in enumerate(common):
            p = int(pats[rng.choice(len(pats), p=w)])
            for s in range(st.STEPS):
                if (p >> s) & 1:
                    rows.setdefault(b * st.STEPS + s, np.zeros(9))[d] = mean_vel[d]
    a = np.array(sorted(rows), dtype=np.int64)
    return a, (np.stack([rows[k] for k in a]) if len(a) else np.zeros((0, 9)))


def run(cfg, args):
    from rolypoly.errors import RolypolyError
    from rolypoly.free.generate import generate, perform_many
    from rolypoly.free.runtime import load_events
    from rolypoly.model.evaluate import model_from_path, predictor_from_model
    from rolypoly.report import Table
    from rolypoly.score.gmd import load_gmd

    if args.samples < 1:
        raise RolypolyError("--samples must be at least 1")
    if args.bars < 4 or args.prompt_bars < 4:
        raise RolypolyError("--bars and --prompt-bars must be at least 4 (the style check uses 4 bars)")
    t0 = time.perf_counter()
    g = cfg.generate
    runtime = load_events(args.events_model or g.events_model)
    perf_module, perf_desc, perf_window, perf_inc = model_from_path(args.model or cfg.engine.model_path)
    predict = predictor_from_model(perf_module)
    perf_step = perf_module if perf_inc else None   # an incremental model steps, as live
    temperature = float(args.temperature if args.temperature is not None else g.temperature)
    heads = {"drum_temperature": _opt(args.drum_temperature, g.get("drum_temperature")),
             "vel_temperature": _opt(args.vel_temperature, g.get("vel_temperature")),
             "loop_temperature": _opt(args.loop_temperature, g.get("loop_temperature"))}
    window = tuple(float(v) for v in g.generate_vels)
    takes = load_gmd(cfg, grid="16", show_progress=False)
    four = np.array([str(t) in ("4-4", "4/4") for t in takes.meta["time_signature"]])
    train = takes.select((takes.meta["split"] == "train") & four)
    test = takes.select((takes.meta["split"] == args.split) & four)
    P, G = int(args.prompt_bars), int(args.bars)

    # reference: every GMD test bar; known patterns: every GMD train bar
    test_seqs = [st.grid_sequence(*(test.rows(i)[k] for k in ("vel", "phase", "bar"))) for i in range(len(test))]
    all_ref = ref = st.bar_stats(test_seqs, [(int(s[0][0] // 16), int(s[0][-1] // 16) + 1) for s in test_seqs])
    train_seqs = [st.grid_sequence(*(train.rows(i)[k] for k in ("vel", "phase", "bar"))) for i in range(len(train))]
    known = st.known_patterns(train_seqs)
    train_bars, train_pos, per_drum = [], [], [{} for _ in range(9)]
    vel_sum, vel_n = np.zeros(9), np.zeros(9)
    for a, v in train_seqs:
        for b in np.unique(a // 16):
            sel = a // 16 == b
            train_bars.append((a[sel] % 16, v[sel]))
            train_pos.append(int(b - a[0] // 16))
        pats = st.bar_patterns_of((a, v), int(a[0] // 16), int(a[-1] // 16) + 1)
        for d in range(9):
            for p in pats[:, d].tolist():
                per_drum[d][p] = per_drum[d].get(p, 0) + 1
        vel_sum += v.sum(0); vel_n += (v > 0).sum(0)
    common = []
    for d in range(9):
        items = sorted(per_drum[d].items(), key=lambda kv: -kv[1])[:64]
        w = np.array([c for _, c in items], dtype=np.float64)
        common.append((np.array([p for p, _ in items]), w / w.sum()))
    mean_vel = np.rint(vel_sum / np.maximum(vel_n, 1))

    # prompts and continuations: spans (take, k, g) -> prompt bars k-P .. k-1, generated bars k .. k+g-1
    tiled = args.prompts == "tiled"
    spans = []   # (take, k, bars generated, bars the take really has from k)
    for i in range(len(test)):
        n = int(test.rows(i)["bar"].max()) + 1
        if tiled:
            spans += [(i, k, min(G, n - k), n - k) for k in range(P, n - 3, G)]
        elif n >= P + 4:
            spans.append((i, P, G, n - P))
        if args.max_prompts and len({t for t, _, _, _ in spans}) >= args.max_prompts:
            break
    prompts, real_next, lengths, opening, real_len = [], [], [], [], []
    for i, k, g, left in spans:
        r = _bars_of(test.rows(i), k - P, k + g)
        if not (r["bar"] < P).any():
            continue   # nothing played in the prompt: nothing to continue
        sc = take_score(r)
        prompts.append(sc.crop_bars(P))
        real_next.append(_seq_of_score(sc))
        lengths.append(g)
        real_len.append(min(g, left))
        opening.append(k == P)
    if not prompts:
        raise RolypolyError(f"no GMD {args.split} take has {P + 4} bars")
    distinct = list(prompts)
    # reference: the split's real bars that the generated ones stand in for (tiled), or all its bars
    n_tiles = len(distinct)
    if tiled:
        ref = st.bar_stats(real_next, [(P, P + g) for g in lengths])
        if P > 0:
            train_bars = [tb for tb, pos in zip(train_bars, train_pos) if pos >= P]
    # several continuations per prompt: one drummer's groove is one draw, and grooves vary a lot
    prompts = [p for p in distinct for _ in range(args.samples)]
    real_next = [r for r in real_next for _ in range(args.samples)]
    lengths = [g for g in lengths for _ in range(args.samples)]
    gens, drawn_scores = [], []
    n_events = 0
    t1 = time.perf_counter()
    for k, sc in enumerate(prompts):
        out = generate(runtime, sc, "continue", bars=lengths[k], temperature=temperature, generate_vels=window,
                       seed=args.seed * 1000 + k, **heads)
        gens.append(out.score)
        with_drawn = out.score.copy()   # the velocities drawn, not their per-position means
        with_drawn.vel[out.generated] = out.drawn
        drawn_scores.append(with_drawn)
        n_events += len(sc.times_ms) + len(out.events)   # each read (prompt) or drawn event is one model step
    t_gen = time.perf_counter() - t1
    played = perform_many(gens, predict=predict, window=perf_window, stepper=perf_step)
    model_seqs = [_seq_of_score(p) for p in played]
    own_vel = perform_many(drawn_scores, predict=predict, window=perf_window, filter_hits="score_notes_and_vels",
                           stepper=perf_step)
    own_seqs = [_seq_of_score(p) for p in own_vel]
    rng = np.random.default_rng(args.seed)
    rand_seqs = [_random_bars(train_bars, g, rng) for g in lengths]
    sup_seqs = [_supertonic_bars(common, mean_vel, g, rng) for g in lengths]
    # generated bars are P .. P+g-1 of the model's sequences, 0 .. g-1 of the baselines'
    gen_ranges, base_ranges = [(P, P + g) for g in lengths], [(0, g) for g in lengths]
    systems = {MODEL: (model_seqs, gen_ranges), OWN: (own_seqs, gen_ranges),
               "random train bars": (rand_seqs, base_ranges),
               "supertonic's way": (sup_seqs, base_ranges)}
    measured = {name: st.bar_stats(seqs, ranges, known) for name, (seqs, ranges) in systems.items()}
    dist = {name: st.compare(m, ref) for name, m in measured.items()}
    # everything against all bars of the split, the real drummer's bars included (one copy of each span)
    real_bars = st.bar_stats(real_next[::args.samples], [(P, P + g) for g in real_len], known)
    dist_all = {name: st.compare(m, all_ref) for name, m in {**measured, "real continuation": real_bars}.items()}

    from rolypoly.score.drums import DRUMS
    ref_name = f"GMD {args.split} bars {P}.." if tiled else f"GMD {args.split}"
    main = Table(f"generated bars vs {ref_name}", ["system", "bars", "hits_per_bar", "hits_per_bar_l1",
                                                   "offbeat_share", "ioi_tv", "velocity_intersection",
                                                   "repetition", "novelty"])
    main.add(ref_name, ref["bars"], round(float(ref["hits_per_bar"].sum()), 2), 0.0, round(ref["offbeat_share"], 4),
             0.0, 1.0, round(ref["repetition"], 4), None)
    for name, m in measured.items():
        d = dist[name]
        main.add(name, m["bars"], round(float(m["hits_per_bar"].sum()), 2), round(d["hits_per_bar_l1"], 4),
                 round(m["offbeat_share"], 4), round(d["ioi_tv"], 4), round(d["velocity_intersection"], 4),
                 round(m["repetition"], 4), round(m["novelty"], 4))
    main.notes.append("hits_per_bar_l1: sum over drums of |hits per bar - the reference's|; ioi_tv: total-variation "
                      "distance of onset-gap histograms; velocity_intersection: 1 = same velocity histogram; "
                      "novelty: share of bars whose 9-drum pattern is not in GMD train")
    drums = Table("hits per bar per drum", ["drum", "reference"] + [k.replace(" ", "_").replace("'", "").replace("(", "").replace(")", "") for k in measured])
    for d in range(9):
        drums.add(DRUMS[d], round(float(ref["hits_per_bar"][d]), 3), *[round(float(m["hits_per_bar"][d]), 3) for m in measured.values()])

    # style check: first 4 generated bars vs the prompt's last 4
    style = {name: {k: [] for k in STAT_KEYS} for name in list(systems) + ["real continuation"]}
    for k, sc in enumerate(prompts):
        last4 = st.bar_stats([_seq_of_score(sc)], [(P - 4, P)])
        cands = {MODEL: (model_seqs[k], (P, P + 4)), OWN: (own_seqs[k], (P, P + 4)), "random train bars": (rand_seqs[k], (0, 4)),
                 "supertonic's way": (sup_seqs[k], (0, 4)), "real continuation": (real_next[k], (P, P + 4))}
        for name, (seq, rg) in cands.items():
            c = st.compare(st.bar_stats([seq], [rg]), last4)
            for key in STAT_KEYS:
                style[name][key].append(c[key])
    stab = Table("style check: first 4 generated bars vs the prompt's last 4 (mean over prompts)",
                 ["system"] + list(STAT_KEYS))
    style_mean = {name: {k: float(np.mean(v)) for k, v in s.items()} for name, s in style.items()}
    for name, s in style_mean.items():
        stab.add(name, *[round(s[k], 4) for k in STAT_KEYS])

    # knobs: density and complexity steer the sampling (free mode from each prompt's first bar)
    knobs = Table("knobs (free mode, first 16 prompts)", ["density", "complexity", "hits_per_bar", "offbeat_share"])
    sub = [p for p, first in zip(distinct, opening) if first][:16]
    knob_rows = []
    for dens, comp in ((0.1, 0.5), (0.5, 0.5), (0.9, 0.5), (0.5, 0.1), (0.5, 0.9)):
        seqs = []
        for k, sc in enumerate(sub):
            out = generate(runtime, sc, "free", bars=0, temperature=temperature, density=dens, complexity=comp,
                           generate_vels=window, seed=args.seed * 1000 + k, **heads)
            seqs.append(_seq_of_score(out.score))
        m = st.bar_stats(seqs, [(1, P)] * len(seqs))
        knobs.add(dens, comp, round(float(m["hits_per_bar"].sum()), 2), round(m["offbeat_share"], 4))
        knob_rows.append({"density": dens, "complexity": comp, "hits_per_bar": float(m["hits_per_bar"].sum()),
                          "offbeat_share": m["offbeat_share"]})

    def closer(a: dict, b: dict) -> dict:
        return {k: (a[k] >= b[k] - 1e-12) if st.HIGHER_IS_CLOSER[k] else (a[k] <= b[k] + 1e-12) for k in STAT_KEYS}

    rand = "random train bars"
    targets = {}
    for model, key in ((MODEL, "performance_model_velocities"), (OWN, "generated_velocities")):
        t = {"vs_gmd_test_at_least_as_close_as_random": closer(dist[model], dist[rand]),
             "novelty_above_half": bool(measured[model]["novelty"] > 0.5),
             "style_at_least_as_close_as_random": closer(style_mean[model], style_mean[rand])}
        t["all_met"] = bool(all(t["vs_gmd_test_at_least_as_close_as_random"].values()) and t["novelty_above_half"]
                            and all(t["style_at_least_as_close_as_random"].values()))
        targets[key] = t
    seconds = time.perf_counter() - t0
    main.notes.append(f"{n_tiles} prompts of {P} bars from GMD {args.split} (4/4, {args.prompts}), {args.samples} continuations of "
                      f"up to {G} bars each; event model {runtime.version}, temperature {temperature} (drums "
                      f"{heads['drum_temperature'] or temperature}, velocity classes {heads['vel_temperature'] or temperature}, "
                      f"loops {heads['loop_temperature']}), "
                      f"generate_vels {window}; performance model {perf_desc}; "
                      f"generation {t_gen:.1f} s ({1000 * t_gen / max(n_events, 1):.3f} ms per event, one event per model "
                      f"step), total {seconds:.1f} s")
    all_table = Table(f"against all GMD {args.split} bars (the real continuation shows where a correct one sits)",
                      ["system"] + list(STAT_KEYS))
    for name, d in dist_all.items():
        all_table.add(name, *[round(d[k], 4) for k in STAT_KEYS])
    extra = {"distances": dist, "distances_all_test_bars": dist_all, "reference": ref_name,
             "style_check": style_mean, "knobs": knob_rows, "targets": targets, "prompts_design": args.prompts,
             "temperature": temperature, "drum_temperature": heads["drum_temperature"] or temperature,
             "vel_temperature": heads["vel_temperature"] or temperature, "loop_temperature": heads["loop_temperature"],
             "split": args.split, "prompts": n_tiles, "samples": args.samples, "prompt_bars": P, "bars": G, "events_model": runtime.version,
             "performance_model": perf_desc, "seconds": seconds,
             "ms_per_event": 1000 * t_gen / max(n_events, 1),
             "novelty": {k: m["novelty"] for k, m in measured.items()},
             "repetition": {"gmd_test": ref["repetition"], **{k: m["repetition"] for k, m in measured.items()}}}
    return [main, drums, all_table, stab, knobs], extra
