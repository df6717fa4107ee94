"""``rolypoly midi ports``: the MIDI inputs and outputs the box can follow and play to."""
from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("midi", parents=[common], help="MIDI ports (clock sync and notes for the box)",
                       description="List MIDI ports. `rolypoly box --midi-in PORT --midi-out PORT` follows a "
                                   "port's clock and start/stop and sends the box's hits as notes on channel 10.")
    p.set_defaults(subparser=p)
    msub = p.add_subparsers(dest="midi_command", metavar="<action>")
    ports = msub.add_parser("ports", parents=[common], help="list MIDI input and output ports",
                            description="List the MIDI ports of the system (ALSA on Linux) or of --api.")
    ports.add_argument("--api", default=None, choices=("default", "alsa", "jack", "core", "windows"),
                       help="MIDI API (default: the system's)")
    ports.set_defaults(func=run_ports)


def run_ports(args, cfg) -> int:
    from rolypoly.bridges.midi import list_ports
    from rolypoly.report import Table, emit
    found = list_ports(args.api)
    t = Table("midi ports", ["direction", "index", "port"], key="ports")
    for direction in ("inputs", "outputs"):
        for i, name in enumerate(found[direction]):
            t.add(direction[:-1], i, name)
    if not any(found.values()):
        t.notes.append("no MIDI ports (start a MIDI device, or use --api jack with a JACK server running)")
    emit(t, as_json=args.json)
    return 0
