"""Introspection: pattern strings, table building, back-off queries, score generation, CLI."""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rolypoly.errors import IntrospectError, RolypolyError
from rolypoly.patterns.introspect import (
    PatternTable,
    bar_patterns,
    build_table,
    corpus_from_patterns,
    format_pattern,
    generate_for_score,
    parse_pattern,
)
from rolypoly.score.drums import DRUM_INDEX, N_DRUMS

REPO = Path(__file__).resolve().parents[1]
from conftest import SHARED_DATA as DATA, shared  # noqa: E402
KICK, SNARE, HIHAT = DRUM_INDEX["kick"], DRUM_INDEX["snare"], DRUM_INDEX["hihat"]

# Patterns written out by hand (first character = step 0).
A = "x---x---x---x---"       # four on the floor
B = "----x-------x---"       # backbeat
C = "x-------x-------"
D = "----x-------x-x-"
E = "--------x-------"
F = "----x---x---x---"


def bars_of(*pairs):
    """A take of bars where the kick plays p and the snare q (other drums silent)."""
    out = np.zeros((len(pairs), N_DRUMS), np.int64)
    for i, (p, q) in enumerate(pairs):
        out[i, KICK] = parse_pattern(p)
        out[i, SNARE] = parse_pattern(q)
    return out


@pytest.fixture
def small_table(tmp_path):
    takes = [bars_of((A, B), (A, B), (A, B), (A, F)),
             bars_of((C, D), (C, E))]
    path = tmp_path / "p.sqlite"
    build_table(path, corpus_from_patterns(takes, 16, key="test"))
    table = PatternTable(path, max_hamming=4, seed=0)
    yield table
    table.close()


# ---------------------------------------------------------------- pattern strings

def test_parse_pattern_bits_follow_steps():
    assert parse_pattern("x" + "-" * 15) == 1
    assert parse_pattern("-" * 15 + "x") == 1 << 15
    assert parse_pattern("X...#...1...x...") == parse_pattern(A)
    assert parse_pattern("x--- x--- x--- x---") == parse_pattern("x---|x---|x---|x---") == parse_pattern(A)
    assert parse_pattern("0" * 32) == 0 and parse_pattern("1" * 32) == (1 << 32) - 1
    rng = np.random.default_rng(3)
    for v in rng.integers(0, 1 << 16, 50):
        text = format_pattern(int(v))
        assert all((text[i] == "x") == bool((int(v) >> i) & 1) for i in range(16))
        assert parse_pattern(text) == v


@pytest.mark.parametrize("text, fragment", [("x---x---x---x--y", "'y' at position 16"),
                                            ("x-?-x---x---x---", "'?' at position 3"),
                                            ("x---x---", "8 steps"),
                                            ("x" * 17, "17 steps")])
def test_parse_pattern_rejects_bad_text(text, fragment):
    with pytest.raises(IntrospectError, match=fragment.replace("?", r"\?")):
        parse_pattern(text)


def test_parse_pattern_wants_table_steps():
    with pytest.raises(IntrospectError, match="expected 32"):
        parse_pattern(A, steps=32)


def test_bar_patterns_from_rows():
    vel = np.zeros((4, N_DRUMS))
    vel[0, KICK] = vel[1, SNARE] = vel[2, KICK] = vel[3, SNARE] = 90
    phase = np.array([0.0, 0.25, 0.5, 0.98])  # the last rounds onto the next bar line
    bar = np.array([0, 0, 0, 0])
    pats = bar_patterns(vel, phase, bar)
    assert pats.shape == (2, N_DRUMS)
    assert pats[0, KICK] == parse_pattern("x-------x-------")
    assert pats[0, SNARE] == parse_pattern("----x-----------")
    assert pats[1, SNARE] == 1 and pats[1, KICK] == 0


# ---------------------------------------------------------------- queries

def test_exact_answer_and_probability(small_table):
    ans = small_table.ask("kick", "snare", parse_pattern(C), greedy=True)
    assert ans.level == "exact" and format_pattern(ans.pattern) in (D, E)
    assert ans.probability == pytest.approx(0.5)
    ans = small_table.ask("kick", "snare", A, greedy=True)
    assert (str(ans), ans.level, ans.probability) == (B, "exact", pytest.approx(0.75))


def test_weighted_draws_follow_counts(small_table):
    rng = np.random.default_rng(7)
    got = Counter(str(small_table.ask("kick", "snare", A, rng=rng)) for _ in range(4000))
    assert set(got) == {B, F}
    assert got[B] / 4000 == pytest.approx(0.75, abs=0.03)


def test_seeded_draws_repeat(small_table):
    first = [small_table.ask("kick", "snare", A, rng=np.random.default_rng(11)).pattern for _ in range(5)]
    again = [small_table.ask("kick", "snare", A, rng=np.random.default_rng(11)).pattern for _ in range(5)]
    assert first == again
    seq = np.random.default_rng(5)
    draws = {small_table.ask("kick", "snare", C, rng=seq).pattern for _ in range(40)}
    assert draws == {parse_pattern(D), parse_pattern(E)}


def test_exclude_previous_answer(small_table):
    rng = np.random.default_rng(1)
    for _ in range(50):
        ans = small_table.ask("kick", "snare", C, exclude=D, rng=rng)
        assert (str(ans), ans.level, ans.probability) == (E, "exact", 1.0)
    # A's only other answer is F; excluding B always gives F.
    assert {str(small_table.ask("kick", "snare", A, exclude=B, rng=rng)) for _ in range(30)} == {F}
    # A source that always gave one answer backs off to a wider level for something else.
    takes = [bars_of((A, B), (C, D))]
    path = small_table.path.with_name("one.sqlite")
    build_table(path, corpus_from_patterns(takes, 16, key="one"))
    with PatternTable(path, max_hamming=4) as table:
        ans = table.ask("kick", "snare", A, exclude=B, rng=rng)
        assert str(ans) == D and ans.level == "hamming-2"
        ans = table.ask("kick", "snare", A, exclude=B, greedy=True)
        assert str(ans) == D and ans.level == "hamming-2"


def test_back_off_levels(small_table):
    near = "x-x-x---x---x---"  # A with one extra hit: distance 1 from A, 3 from C
    ans = small_table.ask("kick", "snare", near, greedy=True)
    assert (str(ans), ans.level) == (B, "hamming-1")
    far = "x" * 16  # more than max_hamming from every seen kick pattern
    marginal = {parse_pattern(p) for p in (B, F, D, E)}
    for seed in range(20):
        ans = small_table.ask("kick", "snare", far, rng=seed)
        assert ans.level == "marginal" and ans.pattern in marginal
    assert small_table.ask("kick", "snare", far, greedy=True).pattern == parse_pattern(B)
    assert small_table.prior("snare").pattern == parse_pattern(B)


def test_every_query_answers(small_table):
    rng = np.random.default_rng(2)
    for p in rng.integers(0, 1 << 16, 200):
        for src, dst in [("kick", "snare"), ("snare", "kick"), ("hihat", "ride")]:
            ans = small_table.ask(src, dst, int(p), exclude=int(p), rng=rng)
            assert ans.level in ("exact", "marginal") or ans.level.startswith("hamming-")
            assert 0 <= ans.pattern < 1 << 16 and 0 < ans.probability <= 1


def test_next_bar_skips_silent_gaps(tmp_path):
    take = bars_of((A, B), (C, D), (A, B))
    gap = np.zeros((1, N_DRUMS), np.int64)
    take = np.concatenate([take, gap, bars_of((E, F))])  # A -> (silent) -> E is no transition
    path = tmp_path / "n.sqlite"
    stats = build_table(path, corpus_from_patterns([take], 16, key="n"))
    assert stats["bars"] == 4 and stats["transitions"] == 2
    with PatternTable(path, max_hamming=0) as table:
        for seed in range(10):
            ans = table.next_bar("kick", A, rng=seed)
            assert (str(ans), ans.level) == (C, "exact")
        assert str(table.next_bar("kick", C, greedy=True)) == A


def test_two_bar_patterns(tmp_path):
    take = bars_of((A, B), (C, D), (A, B), (C, D))
    path = tmp_path / "p32.sqlite"
    build_table(path, corpus_from_patterns([take], 32, key="32"))
    with PatternTable(path) as table:
        assert table.steps == 32
        ans = table.ask("kick", "snare", A + C, greedy=True)
        assert (str(ans), ans.level) == (B + D, "exact")
        with pytest.raises(IntrospectError, match="32"):
            table.ask("kick", "snare", A)


def test_query_errors(small_table, tmp_path):
    with pytest.raises(IntrospectError, match="next_bar"):
        small_table.ask("kick", "kick", A)
    with pytest.raises(RolypolyError, match="unknown drum"):
        small_table.ask("kick", "cowbell", A)
    with pytest.raises(IntrospectError, match="out of range"):
        small_table.ask("kick", "snare", 1 << 16)
    with pytest.raises(IntrospectError, match="bad character"):
        small_table.ask("kick", "snare", "x---x---x---x--o")
    with pytest.raises(IntrospectError, match="no pattern database"):
        PatternTable(tmp_path / "missing.sqlite")
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(IntrospectError, match="corrupt"):
        PatternTable(bad)


# ---------------------------------------------------------------- scores

def _score_file(tmp_path, kick=A, bars=4, extra_snare=True):
    from rolypoly.score.midi import Note, TempoMap, score_from_notes
    tm = TempoMap(480, [0], [500000.0], [0], [(4, 4)])
    notes = []
    for bar in range(bars):
        for s in range(16):
            tick = bar * 1920 + s * 120 + (7 if s % 2 else 0)  # a little swing on the off-steps
            if kick[s] == "x":
                notes.append(Note(tick, tm.seconds(tick), KICK, 100))
            if s % 2 == 0:
                notes.append(Note(tick, tm.seconds(tick), HIHAT, 70))
            if extra_snare and s == 2:
                notes.append(Note(tick, tm.seconds(tick), SNARE, 55))
    notes.sort(key=lambda n: (n.tick, n.drum))
    path = tmp_path / "in.mid"
    score_from_notes(notes, tm).write_midi(path)
    return path


def test_generate_for_score(small_table, tmp_path):
    from rolypoly.score.midi import read_score
    score = read_score(_score_file(tmp_path))
    out = generate_for_score(score, "kick", "snare", small_table, seed=0)
    path = out.write_midi(tmp_path / "out.mid")
    back = read_score(path)
    for got in (out, back):
        pats = bar_patterns(got.vel, got.phase, got.bar)
        assert len(pats) == 4
        assert set(pats[:, SNARE]) <= {parse_pattern(B), parse_pattern(F)}
        assert len(set(pats[:, SNARE])) == 1  # one answer per distinct kick pattern
        assert (pats[:, KICK] == parse_pattern(A)).all()
        assert (pats[:, HIHAT] == parse_pattern("x-x-x-x-x-x-x-x-")).all()
    # The generated snare plays at the mean velocity of the snare it replaces.
    assert set(out.vel[out.vel[:, SNARE] > 0, SNARE]) == {55}
    hat_times = np.sort(out.hit_times_ms()[:, HIHAT][out.vel[:, HIHAT] > 0])
    assert np.allclose(hat_times, np.sort(score.hit_times_ms()[:, HIHAT][score.vel[:, HIHAT] > 0]), atol=1.5)
    same = generate_for_score(score, "kick", ["snare", "openhat"], small_table, seed=0)
    assert np.array_equal(bar_patterns(same.vel, same.phase, same.bar)[:, SNARE], pats[:, SNARE])


def test_generate_for_score_errors(small_table, tmp_path):
    from rolypoly.score.midi import read_score
    score = read_score(_score_file(tmp_path))
    with pytest.raises(IntrospectError, match="also the source"):
        generate_for_score(score, "kick", "snare,kick", small_table)
    with pytest.raises(RolypolyError, match="unknown drum"):
        generate_for_score(score, "kick", "snare,bongo", small_table)
    with pytest.raises(IntrospectError, match="no ride hits"):
        generate_for_score(score, "ride", "snare", small_table)


# ---------------------------------------------------------------- config, rebuilds and the CLI (GMD needed)

@pytest.fixture(scope="module")
def gmd_overrides(tmp_path_factory):
    shared("groove", "info.csv")
    db = tmp_path_factory.mktemp("introspect") / "patterns.sqlite"
    return [f"data.root={DATA / 'groove'}", f"cache_dir={REPO / 'cache'}", f"introspect.db={db}",
            "introspect.max_takes=6"]


@pytest.mark.slow
def test_open_builds_once_and_repairs(gmd_overrides):
    from rolypoly.config import load_config
    cfg = load_config(gmd_overrides)
    Path(cfg.introspect.db).unlink(missing_ok=True)
    table = PatternTable.open(cfg)
    assert table.build_stats and table.build_stats["bars"] > 50
    assert table.ask("kick", "snare", A, rng=0).level
    table.close()
    with PatternTable.open(cfg) as again:
        assert again.build_stats is None  # inputs unchanged: not rebuilt
    Path(cfg.introspect.db).write_bytes(b"\0garbage" * 512)  # not a database at all: a user's file, left alone
    with pytest.raises(IntrospectError, match="not an SQLite pattern database"):
        PatternTable.open(cfg)
    assert Path(cfg.introspect.db).read_bytes() == b"\0garbage" * 512
    Path(cfg.introspect.db).write_bytes(b"SQLite format 3\0" + b"\0garbage" * 512)  # a damaged database: rebuilt
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        repaired = PatternTable.open(cfg)
    assert repaired.build_stats and any("rebuilding" in str(w.message) for w in caught)
    repaired.close()
    with PatternTable.open(load_config(gmd_overrides[:-1] + ["introspect.max_takes=5"])) as other:
        assert other.build_stats and other.build_stats["bars"] < table.build_stats["bars"]


@pytest.mark.slow
def test_cli_ask_and_score(gmd_overrides, tmp_path, capsys):
    import json

    from rolypoly.cli import main
    from rolypoly.score.midi import read_score
    assert main(["introspect", "build", "--json", *gmd_overrides]) == 0
    assert "pattern_database" in json.loads(capsys.readouterr().out)
    assert main(["introspect", "ask", "--from", "kick", "--to", "snare,hihat", "--pattern", A, "--count", "3",
                 "--seed", "1", "--json", *gmd_overrides]) == 0
    rows = next(iter(json.loads(capsys.readouterr().out).values()))
    assert [r["to"] for r in rows] == ["snare"] * 3 + ["hihat"] * 3
    assert all(len(r["pattern"]) == 16 and set(r["pattern"]) <= {"x", "-"} for r in rows)
    assert rows[0]["pattern"] != rows[1]["pattern"] != rows[2]["pattern"]  # each excludes the last answer
    assert main(["introspect", "ask", "--from", "snare", "--next", f"--pattern={B}", "--top", *gmd_overrides]) == 0
    capsys.readouterr()
    inp, out = _score_file(tmp_path, extra_snare=False), tmp_path / "new.mid"
    assert main(["introspect", "score", str(inp), "--from", "kick", "--to", "snare", "-o", str(out),
                 "--seed", "3", *gmd_overrides]) == 0
    new = read_score(out)
    pats = bar_patterns(new.vel, new.phase, new.bar)
    assert (pats[:, KICK] == parse_pattern(A)).all()
    snare_rows = new.vel[:, SNARE] > 0
    assert np.allclose((new.phase[snare_rows] * 16) % 1, 0, atol=1e-6)  # on the 16th grid


def test_cli_bad_input(capsys):
    from rolypoly.cli import main
    assert main(["introspect", "ask", "--from", "kick", "--to", "snare", "--pattern", "x---x---x---x--z"]) == 2
    assert "'z' at position 16" in capsys.readouterr().err
    assert main(["introspect", "ask", "--from", "kick", "--to", "snire", "--pattern", A]) == 2
    assert "unknown drum 'snire'" in capsys.readouterr().err
    assert main(["introspect", "ask", "--from", "kick", "--to", "snare", "--pattern", "x---"]) == 2
    assert "4 steps" in capsys.readouterr().err
