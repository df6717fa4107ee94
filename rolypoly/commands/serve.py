"""``rolypoly serve``: the OSC bridge for Max, Pd or any OSC client (see :mod:`rolypoly.bridges.osc`)."""
from __future__ import annotations

EPILOG = """\
addresses served (UDP, OSC 1.0):
  /rolypoly/read <score.mid>     /rolypoly/start     /rolypoly/stop
  /rolypoly/train [w_v w_o w_g [w_r]]   /rolypoly/write [name.mid]   /rolypoly/load [model.pt]
  /rolypoly/kit [file]   /rolypoly/introspect <from> <to...>   /rolypoly/soundcheck [s] [instrument]
  /rolypoly/set <attribute> <value...>   (enable latency lookahead filter_hits generate_vels loop device countin
                                          follow generate density complexity)
  /rolypoly/ping [args]  -> /rolypoly/pong [args]
  /rolypoly/reply_to <port>  send replies to this port on the sender's host (0 = to the sender)
sent back:
  /rolypoly/hit <drum 0-8> <velocity> <time ms>   /rolypoly/onset <tau ms>   /rolypoly/playhead <ms>
  /rolypoly/status <text>   /rolypoly/error <text>
examples:
  rolypoly serve osc.audio=off            # hits only: the patch plays its own sounds or MIDI
  rolypoly serve osc.port=9000 osc.reply_port=9001
  oscsend localhost 5005 /rolypoly/read s data/demo.mid; oscsend localhost 5005 /rolypoly/start
--json: one JSON object per line on stdout: {"event": "listening", "host", "port", "audio", "reply_to"}
  once serving, then {"event": "stopped", "packets", "last_take"}.
"""


def register(sub, common) -> None:
    import argparse
    p = sub.add_parser("serve", parents=[common], help="serve the drum machine over OSC (Max/Pd bridge)",
                       description="Listen for OSC messages /rolypoly/<message> on UDP osc.host:osc.port (loopback "
                                   "by default) and drive the rolypoly object with them; hits, onsets, playhead, "
                                   "status and errors go back as OSC to the sender (or osc.reply_host:reply_port, "
                                   "or the port named by /rolypoly/reply_to). osc.audio=on plays the drums through "
                                   "the sound card, osc.audio=off only sends hits. Runs until Ctrl-C; a take in "
                                   "progress is saved.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--score", default=None, help="read this MIDI score before serving")
    p.add_argument("--verbose", action="store_true", help="print every status and error line on stderr")
    p.set_defaults(func=serve)


def serve(args, cfg) -> int:
    import logging
    import signal

    from rolypoly.bridges.osc import OscBridge, log
    # python-osc logs odd argument types of bad packets as warnings; the bridge answers those itself
    logging.basicConfig(level=logging.ERROR, format="rolypoly: %(message)s")
    bridge = OscBridge(cfg)
    if args.verbose or args.debug:
        bridge.engine.connect("status", lambda text: log(text))
        bridge.engine.connect("error", lambda text: log(f"error: {text}"))

    def terminate(signum, frame):  # a SIGTERM saves the take like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    if args.score:
        from rolypoly.errors import RolypolyError
        if not bridge.engine.message("read", args.score):
            bridge.close()
            raise RolypolyError(bridge.engine.last_errors()[-1])
    try:
        bridge.start(serve=False)  # the audio driver first: a missing sound card fails before "listening"
    except BaseException:
        bridge.close()
        raise
    host, port = bridge.address
    reply = (f"{bridge.fixed_reply[0]}:{bridge.fixed_reply[1]}" if bridge.fixed_reply
             else "the sender (or /rolypoly/reply_to)")
    log(f"OSC bridge listening on {host}:{port}, audio {'on' if bridge.audio else 'off'}, replies to {reply}")
    if args.json:
        _json_line({"event": "listening", "host": host, "port": port, "audio": "on" if bridge.audio else "off",
                    "reply_to": reply})
    try:
        bridge.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        bridge.close()
    log(f"served {bridge.packets} packets; last take {bridge.engine.last_take}")
    if args.json:
        _json_line({"event": "stopped", "packets": bridge.packets,
                    "last_take": str(bridge.engine.last_take) if bridge.engine.last_take else None})
    return 0


def _json_line(obj) -> None:
    import json
    import sys
    print(json.dumps(obj), file=sys.stdout, flush=True)
