"""``rolypoly box``: the terminal drum machine (textual).

The grid shows the 8 channels of the current pattern (rows) and its steps (columns):
``x`` a trigger, ``X`` an accented one, ``f`` a fill step, ``·`` a rest; the cursor is
reverse video, the playing step underlined, the basis channel of "generate" marked
``▶``.  Every key is listed on the help screen (``?``) and in :data:`KEYS`; every
edit can be undone (``u``) and redone (``U``).

Keys follow supertonic's gestures where a terminal allows: a terminal cannot tell a
held key, so "hold and move to lay down beats" is ``shift`` + arrow (lays a beat on
each step it passes), and ``backspace`` erases the step under the cursor and moves on.

The app works without audio (``audio=False``: tests, CI, the headless script runner);
with audio, :class:`rolypoly.box.player.Player` plays through the engine.
"""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from rolypoly.box.model import (
    FILL_RATES,
    N_CHANNELS,
    PATTERN_NAMES,
    STEP_RATES,
    Box,
    BoxError,
)
from rolypoly.errors import RolypolyError

#: (key, action, description) of every key on the main screen (the help screen lists these).
KEYS = [
    ("left,right,up,down", "move", "move the cursor (steps, channels)"),
    ("x,space", "toggle('trigger')", "set or clear the step under the cursor"),
    ("a", "toggle('accent')", "accent the step (sets it too)"),
    ("f", "toggle('fill')", "make the step a fill step"),
    ("shift+right,shift+left", "paint", "lay down a beat and move (hold shift and move: many beats)"),
    ("backspace", "erase_step", "erase the step under the cursor and move right"),
    ("E", "erase_channel", "erase the selected channel of this pattern"),
    ("ctrl+x", "erase_pattern", "erase the whole pattern"),
    ("b", "basis", "make the selected channel the basis of generate"),
    ("g", "generate", "generate the selected channel from the basis channel (again: another answer)"),
    ("G", "generate_all", "generate every channel from the kick"),
    ("f1..f12", "pattern", "select pattern a..l (queued to the pattern's end while playing)"),
    ("comma,full_stop", "pattern_step", "previous / next pattern"),
    ("c", "chain", "chain this pattern into the next one (or unchain)"),
    ("C", "copy_next", "copy this pattern onto the next one"),
    ("left_curly_bracket,right_curly_bracket", "length", "pattern length -1 / +1 step (1..32)"),
    ("minus,plus", "tempo", "tempo -1 / +1 bpm"),
    ("left_square_bracket,right_square_bracket", "swing", "swing -5 / +5 %"),
    ("r", "step_rate", "cycle the step rate (1/8, 1/8T, 1/16, 1/16T, 1/32)"),
    ("y", "fill_rate", "cycle the fill rate (every N-th pass plays the fills)"),
    ("F", "fill_mode", "hold fill on / off (fill steps play on every pass)"),
    ("m", "mute", "mute the selected channel"),
    ("s", "solo", "solo the selected channel"),
    ("v,V", "level", "channel level -1 / +1 dB"),
    ("n,N", "pan", "channel pan left / right"),
    ("k", "choke", "cycle the channel's choke group (0 = none, 1..3)"),
    ("o,O", "morph", "morph toward kit A / kit B by 0.1"),
    ("h", "humanize", "humanize on/off (the performance model plays the pattern)"),
    ("i", "listen", "listen on/off (follow a musician on the input)"),
    ("enter,p", "play", "play / stop"),
    ("t", "channel_page", "the channel page: every voice parameter of the selected channel"),
    ("T", "train", "train the model on the last take (train-after-take)"),
    ("u", "undo", "undo"),
    ("U", "redo", "redo"),
    ("ctrl+s", "save", "save the project (TOML)"),
    ("question_mark", "help", "this help"),
    ("q", "quit", "quit"),
]


_FOOTER = {"play": "play/stop", "toggle('trigger')": "step", "generate": "generate", "generate_all": "all from kick",
           "chain": "chain", "undo": "undo", "channel_page": "channel", "help": "keys", "quit": "quit"}
_KEY_GLYPHS = {"left_curly_bracket": "{", "right_curly_bracket": "}", "left_square_bracket": "[",
               "right_square_bracket": "]", "minus": "-", "plus": "+", "comma": ",", "full_stop": ".",
               "question_mark": "?"}


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "close")]

    def compose(self) -> ComposeResult:
        lines = Text("rolypoly box: keys\n\n", style="bold")
        for keys, _, desc in KEYS:
            shown = ",".join(_KEY_GLYPHS.get(k, k) for k in keys.split(","))
            lines.append(f"  {shown:<24}", style="bold cyan")
            lines.append(desc + "\n")
        lines.append("\n  channel page: up/down choose a parameter, left/right change it (shift: x10), "
                     "a audition, ctrl+s save the kit, escape back\n")
        yield Static(lines, id="help")


# voice parameters in the order of Microtonic's channel panel
PAGE_PARAMS = ["oscWave", "oscFreq", "oscAtk", "oscDcy", "modMode", "modRate", "modAmt", "nFilMod", "nFilFrq",
               "nFilQ", "nStereo", "nEnvMod", "nEnvAtk", "nEnvDcy", "mix", "distAmt", "eQFreq", "eQGain",
               "level", "oscVel", "nVel", "modVel"]
_CHOICES = {"oscWave": ("sine", "triangle", "saw"), "modMode": ("decay", "sine", "noise"),
            "nFilMod": ("LP", "BP", "HP"), "nStereo": ("off", "on"), "nEnvMod": ("exp", "linear", "mod")}


class ChannelPage(Screen):
    """Every voice parameter of one channel; changes audition the sound and can be undone."""

    BINDINGS = [Binding("escape,t", "app.pop_screen", "back"), Binding("up", "sel(-1)", "up", show=False),
                Binding("down", "sel(1)", "down", show=False), Binding("left", "change(-1)", "-"),
                Binding("right", "change(1)", "+"), Binding("shift+left", "change(-10)", "-10", show=False),
                Binding("shift+right", "change(10)", "+10", show=False), Binding("a", "audition", "audition"),
                Binding("u", "app.undo_page", "undo"), Binding("ctrl+s", "app.save_kit", "save kit")]

    def __init__(self, channel: int):
        super().__init__()
        self.channel = channel
        self.row = 0

    def compose(self) -> ComposeResult:
        yield Static(id="page")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_page()

    def refresh_page(self) -> None:
        box: Box = self.app.box
        patch = box.kit.channels[self.channel].patch
        t = Text(f"channel {self.channel + 1}: {box.channel_names()[self.channel]}\n\n", style="bold")
        for i, name in enumerate(PAGE_PARAMS):
            v = getattr(patch, name)
            shown = _CHOICES[name][int(v)] if name in _CHOICES else f"{v:.4g}"
            t.append(f"{'>' if i == self.row else ' '} {name:<10} {shown}\n", style="reverse" if i == self.row else "")
        self.query_one("#page", Static).update(t)

    def action_sel(self, d: int) -> None:
        self.row = (self.row + d) % len(PAGE_PARAMS)
        self.refresh_page()

    def action_change(self, d: int) -> None:
        from rolypoly.synth.patch import SPECS
        box: Box = self.app.box
        name = PAGE_PARAMS[self.row]
        lo, hi, kind = SPECS[name]
        v = getattr(box.kit.channels[self.channel].patch, name)
        if kind == "choice":
            new = (int(v) + (1 if d > 0 else -1)) % (int(hi) + 1)
        elif kind in ("hz", "ms"):
            new = (max(v, 1.0) * 2 ** (d / 12)) if kind == "hz" else max(0.0, v * 2 ** (d / 12) + (d if v < 1 else 0))
        elif kind == "db":
            new = (v if v > -120 else -60.0) + 0.5 * d
        else:
            new = v + (hi - lo) / 200.0 * d
        new = min(max(new, lo), hi)
        try:
            box.set_param(self.channel, name, new)
        except RolypolyError as exc:
            self.app.say(str(exc))
        self.refresh_page()
        self.app.audition(self.channel)

    def action_audition(self) -> None:
        self.app.audition(self.channel)


class BoxApp(App):
    """The drum machine in a box (see module docs)."""

    CSS = """
    #grid { height: auto; padding: 0 1; }
    #status { height: auto; padding: 0 1; color: $text-muted; }
    #message { height: 1; padding: 0 1; color: $warning; }
    """
    TITLE = "rolypoly box"

    def __init__(self, box: Box | None = None, cfg=None, audio: bool = True, project_path=None, channel_map=None,
                 seed: int | None = None, table=None, driver: str = "auto"):
        super().__init__()
        self.box = box or Box()
        self.cfg = cfg
        self.audio = audio
        self.driver_kind = driver
        self.project_path = Path(project_path) if project_path else None
        self.channel_map = channel_map or []
        self.player = None
        self.sync = None                   # a rolypoly.bridges.midi.BoxSync when MIDI ports are open
        self.playing = False
        self.message = ""
        self._table = table
        self._seed = seed
        self._rng = None
        self._last_answer: dict[tuple[int, int], int] = {}
        self._bind_keys()

    # -- layout --------------------------------------------------------------------------------
    def _bind_keys(self) -> None:
        for keys, action, desc in KEYS:
            if action == "move":
                for k, a in (("left", "move(0,-1)"), ("right", "move(0,1)"), ("up", "move(-1,0)"), ("down", "move(1,0)")):
                    self.bind(k, a, show=False)
            elif action == "paint":
                self.bind("shift+right", "paint(1)", show=False)
                self.bind("shift+left", "paint(-1)", show=False)
            elif action == "pattern":
                for i, n in enumerate(PATTERN_NAMES):
                    self.bind(f"f{i + 1}", f"pattern('{n}')", show=False)
            elif action == "pattern_step":
                self.bind("comma", "pattern_step(-1)", show=False)
                self.bind("full_stop", "pattern_step(1)", show=False)
            elif action in ("length", "tempo", "swing", "level", "pan", "morph"):
                minus, plus = keys.split(",")       # listed as "less,more"
                self.bind(minus, f"{action}(-1)", show=False)
                self.bind(plus, f"{action}(1)", show=False)
            else:
                self.bind(keys, action, description=_FOOTER.get(action, desc.split(" (")[0][:18]),
                          show=action in _FOOTER)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="patterns")
            yield Static(id="grid")
            yield Static(id="status")
            yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(0.05, self._tick)
        if self.sync is not None:
            self._ensure_player()          # ready before the first MIDI start arrives
        self.redraw()

    def _tick(self) -> None:
        if self.player is not None and self.playing:
            if self.sync is None or self.sync.inp is None:   # a MIDI clock leads: the sync restarts on its bars
                self.player.poll()
            if self.player.errors:
                self.say(self.player.errors[-1])
                self.player.errors.clear()
            self.redraw()

    def say(self, text: str) -> None:
        self.message = text
        try:
            self.query_one("#message", Static).update(Text(text))
        except NoMatches:           # not mounted yet (or a modal screen on top): kept in .message
            pass

    # -- drawing -------------------------------------------------------------------------------
    def redraw(self) -> None:
        box = self.box
        pat = box.pattern
        pt = Text("patterns ")
        for n in PATTERN_NAMES:
            p = box.patterns[n]
            style = "bold reverse" if n == box.current else ("bold" if not p.empty else "dim")
            if n == box.queued:
                style += " underline"
            pt.append(f" {n}", style=style)
            pt.append("=" if p.chained else " ", style="cyan")
        pt.append(f"   chain {'+'.join(box.chain())}  length {pat.length}")
        playing_step = -1
        if self.player is not None and self.playing:
            j, k = self.player.position()
            if j >= 0 and self.player.sequence[j] == box.current:
                playing_step = k
        names = box.channel_names()
        from rolypoly.score.drums import DRUMS
        drums = box.channel_drums
        g = Text()
        g.append(" " * 24)
        for k in range(pat.length):
            g.append(str(k + 1 if (k % 4 == 0) else "").ljust(2) if k % 4 == 0 else "  ", style="dim")
        g.append("\n")
        for ch in range(N_CHANNELS):
            mark = "▶" if ch == box.basis else " "
            dname = DRUMS[drums[ch]] if drums[ch] >= 0 else "-"
            label = f"{mark}{ch + 1} {names[ch][:11]:<11} {dname[:7]:<7} "
            g.append(label, style="bold yellow" if ch == box.basis else ("bold" if ch == box.channel else ""))
            for k in range(pat.length):
                if pat.accents[ch, k]:
                    c = "X"
                elif pat.triggers[ch, k]:
                    c = "x"
                elif pat.fills[ch, k]:
                    c = "f"
                else:
                    c = "·"
                style = "green" if c in "xX" else ("magenta" if c == "f" else ("dim" if k % 4 else ""))
                if k == playing_step:
                    style += " underline"
                if ch == box.channel and k == box.cursor:
                    style += " reverse"
                g.append(c + " ", style=style)
            m = box.mix
            g.append(f" {'M' if m.mute[ch] else '-'}{'S' if m.solo[ch] else '-'} {m.level[ch]:+5.1f}dB "
                     f"pan {m.pan[ch]:+.1f} choke {m.choke[ch] or '-'}\n", style="dim" if not m.audible(ch) else "")
        st = Text(f"{'▶ playing' if self.playing else '■ stopped'}  {box.bpm:.1f} bpm  rate {box.step_rate}  "
                  f"swing {box.swing:.0f}%  fill rate {box.fill_rate or 'held'}{' FILL' if box.fill else ''}  "
                  f"humanize {'on' if box.humanize else 'off'}  listen {'on' if box.listen else 'off'}  "
                  f"morph {box.morph:.1f}{'' if box.kit_b is not None else ' (no kit B)'}  kit {box.kit_name}")
        if box.last_action:
            st.append(f"   last: {box.last_action}", style="italic")
        self.query_one("#patterns", Static).update(pt)
        self.query_one("#grid", Static).update(g)
        self.query_one("#status", Static).update(st)

    def _edited(self) -> None:
        if self.player is not None and self.playing:
            self.player.changed()
        self.redraw()

    def _do(self, fn, *args) -> None:
        try:
            fn(*args)
            self.say("")
        except RolypolyError as exc:
            self.say(str(exc))
        self._edited()

    # -- actions -------------------------------------------------------------------------------
    def action_move(self, dch: int, dstep: int) -> None:
        box = self.box
        box.channel = (box.channel + dch) % N_CHANNELS
        box.cursor = (box.cursor + dstep) % box.pattern.length
        self.redraw()

    def action_toggle(self, kind: str) -> None:
        self._do(self.box.toggle, self.box.channel, self.box.cursor, kind)

    def action_paint(self, d: int) -> None:
        box = self.box
        self._do(box.set_steps, box.channel, [box.cursor], True, "trigger", "paint")
        box.cursor = (box.cursor + d) % box.pattern.length
        self.redraw()

    def action_erase_step(self) -> None:
        box = self.box
        self._do(box.set_steps, box.channel, [box.cursor], False, "trigger", "erase step")
        box.cursor = (box.cursor + 1) % box.pattern.length
        self.redraw()

    def action_erase_channel(self) -> None:
        self._do(self.box.erase, self.box.channel)

    def action_erase_pattern(self) -> None:
        self._do(self.box.erase, None)

    def action_basis(self) -> None:
        self.box.basis = self.box.channel
        self.say(f"basis: channel {self.box.channel + 1}")
        self.redraw()

    def _pattern_table(self):
        if self._table is None:
            import numpy as np

            from rolypoly.patterns.introspect import PatternTable
            self.say("opening the pattern table...")
            self._table = PatternTable.open(self.cfg)
            self._rng = np.random.default_rng(self._seed)
        if self._rng is None:
            import numpy as np
            self._rng = np.random.default_rng(self._seed)
        return self._table

    def generate(self, targets: list[int], basis: int) -> list[str]:
        """Ask the pattern table for each target channel's part given the basis channel (one undo step)."""
        box = self.box
        drums = box.channel_drums
        if drums[basis] < 0:
            raise BoxError(f"channel {basis + 1} plays no drum class")
        table = self._pattern_table()
        src = box.pattern.as_int(basis)
        answers = {}
        for ch in targets:
            if ch == basis or drums[ch] < 0:
                continue
            key = (drums[basis], drums[ch], src)
            ans = table.ask(drums[basis], drums[ch], src, exclude=self._last_answer.get(key), rng=self._rng)
            self._last_answer[key] = ans.pattern
            answers[ch] = ans
        if not answers:
            raise BoxError("nothing to generate: choose a channel other than the basis")
        box._record("generate")
        saved = box._undo.pop()        # one undo point for the whole answer
        for ch, ans in answers.items():
            box.set_channel_pattern(ch, ans.pattern, action="generate")
            box._undo.pop()
        box._undo.append(saved)
        box.last_action = "generate"
        return [f"{ch + 1}:{ans} ({ans.level})" for ch, ans in answers.items()]

    def action_generate(self) -> None:
        box = self.box
        try:
            got = self.generate([box.channel], box.basis)
            self.say("generated " + ", ".join(got))
        except RolypolyError as exc:
            self.say(str(exc))
        self._edited()

    def action_generate_all(self) -> None:
        box = self.box
        drums = box.channel_drums
        kick = drums.index(0) if 0 in drums else box.basis
        box.basis = kick
        try:
            got = self.generate(list(range(N_CHANNELS)), kick)
            self.say(f"generated from channel {kick + 1}: " + ", ".join(got))
        except RolypolyError as exc:
            self.say(str(exc))
        self._edited()

    def action_pattern(self, name: str) -> None:
        self.box.select(name, playing=self.playing)
        self._edited()

    def action_pattern_step(self, d: int) -> None:
        i = (PATTERN_NAMES.index(self.box.current) + d) % len(PATTERN_NAMES)
        self.action_pattern(PATTERN_NAMES[i])

    def action_chain(self) -> None:
        self._do(self.box.toggle_chain)

    def action_copy_next(self) -> None:
        i = PATTERN_NAMES.index(self.box.current)
        if i + 1 < len(PATTERN_NAMES):
            self._do(self.box.copy_pattern, self.box.current, PATTERN_NAMES[i + 1])

    def action_length(self, d: int) -> None:
        self._do(self.box.set_length, max(1, min(32, self.box.pattern.length + d)))

    def action_tempo(self, d: int) -> None:
        self._do(self.box.set_bpm, min(400.0, max(20.0, self.box.bpm + d)))

    def action_swing(self, d: int) -> None:
        self._do(self.box.set_swing, min(100.0, max(0.0, self.box.swing + 5 * d)))

    def action_step_rate(self) -> None:
        rates = list(STEP_RATES)
        self._do(self.box.set_step_rate, rates[(rates.index(self.box.step_rate) + 1) % len(rates)])

    def action_fill_rate(self) -> None:
        self._do(self.box.set_fill_rate, FILL_RATES[(FILL_RATES.index(self.box.fill_rate) + 1) % len(FILL_RATES)])

    def action_fill_mode(self) -> None:
        self.box.fill = not self.box.fill
        self._edited()

    def action_mute(self) -> None:
        ch = self.box.channel
        self._do(self.box.set_mix, "mute", ch, not self.box.mix.mute[ch])

    def action_solo(self) -> None:
        ch = self.box.channel
        self._do(self.box.set_mix, "solo", ch, not self.box.mix.solo[ch])

    def action_level(self, d: int) -> None:
        ch = self.box.channel
        self._do(self.box.set_mix, "level", ch, min(12.0, max(-60.0, self.box.mix.level[ch] + d)))

    def action_pan(self, d: int) -> None:
        ch = self.box.channel
        self._do(self.box.set_mix, "pan", ch, round(min(1.0, max(-1.0, self.box.mix.pan[ch] + 0.1 * d)), 2))

    def action_choke(self) -> None:
        ch = self.box.channel
        self._do(self.box.set_mix, "choke", ch, (self.box.mix.choke[ch] + 1) % 4)

    def action_morph(self, d: int) -> None:
        if self.box.kit_b is None:
            self.say("no kit B to morph toward: start with --morph KIT")
            return
        self._do(self.box.set_morph, round(min(1.0, max(0.0, self.box.morph + 0.1 * d)), 2))

    def action_humanize(self) -> None:
        self.box.humanize = not self.box.humanize
        self._edited()

    def action_listen(self) -> None:
        self.box.listen = not self.box.listen
        self._edited()

    def _ensure_player(self) -> bool:
        if not self.audio:
            return False
        if self.player is None:
            from rolypoly.box.player import Player
            try:
                self.player = Player(self.box, self.cfg, driver=self.driver_kind)
            except RolypolyError as exc:
                self.say(f"no audio: {exc}")
                self.audio = False
                return False
            if self.sync is not None:
                self.sync.attach_player(self.player)
        return True

    def action_play(self) -> None:
        if self.playing:
            self.playing = False
            if self.player is not None:
                self.player.stop()
            if self.sync is not None:
                self.sync.send_transport(False)
        else:
            self.playing = True
            if self._ensure_player():
                try:
                    self.player.play()
                    if self.sync is not None:
                        self.sync.send_transport(True)
                except RolypolyError as exc:
                    self.playing = False
                    self.say(str(exc))
        self.redraw()

    def midi_transport(self, playing: bool) -> None:
        """A MIDI start or stop was obeyed (the sync calls this on the app's thread)."""
        self.playing = playing
        self.redraw()

    def audition(self, channel: int) -> None:
        if self._ensure_player():
            try:
                self.player.audition(channel)
            except RolypolyError as exc:
                self.say(str(exc))

    def call(self, fn, *args) -> None:
        """Run ``fn`` on the app's thread (MIDI callbacks come from rtmidi's)."""
        try:
            self.call_from_thread(fn, *args)
        except RuntimeError:        # already on the app's thread, or the app is not running
            fn(*args)

    def action_train(self) -> None:
        if self.player is None or getattr(self.player.engine, "last_take", None) is None:
            self.say("no take to train on yet: play first (humanize on makes the model play)")
            return
        if self.player.engine.message("train"):
            self.say(f"training on {self.player.engine.last_take} (the model updates when done)")
        else:
            self.say("train: " + "; ".join(self.player.engine.last_errors()[-1:]))

    def action_channel_page(self) -> None:
        self.push_screen(ChannelPage(self.box.channel))

    def action_undo(self) -> None:
        what = self.box.undo()
        self.say(f"undid {what}" if what else "nothing to undo")
        self._edited()

    def action_undo_page(self) -> None:
        self.action_undo()
        if isinstance(self.screen, ChannelPage):
            self.screen.refresh_page()

    def action_redo(self) -> None:
        what = self.box.redo()
        self.say(f"redid {what}" if what else "nothing to redo")
        self._edited()

    def action_save(self) -> None:
        from rolypoly.box.project import save_project
        path = self.project_path or Path("box.toml")
        try:
            save_project(self.box, path, force=self.project_path is not None)
            self.project_path = path
            self.say(f"saved {path}")
        except RolypolyError as exc:
            self.say(str(exc))

    def action_save_kit(self) -> None:
        from rolypoly.io import check_output
        from rolypoly.synth.kit import save_kit
        path = Path(f"{self.box.kit_name}_box_kit.toml")
        try:
            check_output(path, force=False, suffixes=(".toml",), what="kit file")
            save_kit(self.box.kit, path)
            self.say(f"kit saved: {path}")
        except RolypolyError as exc:
            self.say(str(exc))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if self.player is not None:
            self.player.close()
        self.exit()
