"""The Max and Pd patches: cords join existing boxes at valid inlets/outlets, OSC addresses are served."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAXPAT = REPO / "max" / "rolypoly.maxpat"
PDPAT = REPO / "pd" / "rolypoly.pd"

# Inlet and outlet counts of the Max objects the patch uses, from the Max reference (arguments change
# some of them: route/sel/unpack/pak by their argument count).
MAX_OBJECTS = {"udpsend": (1, 0), "udpreceive": (1, 1), "loadbang": (1, 1), "opendialog": (1, 2),
               "prepend": (2, 1), "zl.reg": (2, 2), "zl.lookup": (2, 2), "makenote": (3, 2), "noteout": (3, 0),
               "print": (1, 0), "s": (1, 0)}
MAX_UI = {"message": (2, 1), "button": (1, 1), "toggle": (1, 1), "slider": (1, 1), "flonum": (1, 2),
          "number": (1, 2), "comment": (1, 0)}


def _max_counts(text: str) -> tuple[int, int] | None:
    words = text.split()
    name, args = words[0], words[1:]
    if name == "route":
        return 2, len(args) + 1
    if name in ("sel", "select"):
        return (2 if len(args) == 1 else 1), len(args) + 1
    if name == "unpack":
        return 1, len(args)
    if name in ("pak", "pack"):
        return len(args), 1
    return MAX_OBJECTS.get(name)


@pytest.fixture(scope="module")
def maxpat():
    return json.loads(MAXPAT.read_text())


def test_maxpat_is_a_max_patcher(maxpat):
    p = maxpat["patcher"]
    assert p["fileversion"] == 1 and p["appversion"]["major"] >= 8
    assert isinstance(p["boxes"], list) and isinstance(p["lines"], list) and p["boxes"] and p["lines"]
    ids = [b["box"]["id"] for b in p["boxes"]]
    assert len(ids) == len(set(ids)), "box ids must be unique"
    for b in p["boxes"]:
        box = b["box"]
        assert len(box["patching_rect"]) == 4
        if box["maxclass"] in MAX_UI:
            assert (box["numinlets"], box["numoutlets"]) == MAX_UI[box["maxclass"]], box
        elif box["maxclass"] == "newobj":
            known = _max_counts(box["text"])
            assert known is not None, f"unknown object in the test's table: {box['text']}"
            assert (box["numinlets"], box["numoutlets"]) == known, box
        else:
            raise AssertionError(f"unexpected maxclass {box['maxclass']}")
        if box["numoutlets"]:
            assert len(box["outlettype"]) == box["numoutlets"], box


def test_maxpat_cords_join_existing_boxes_at_valid_inlets(maxpat):
    boxes = {b["box"]["id"]: b["box"] for b in maxpat["patcher"]["boxes"]}
    for line in maxpat["patcher"]["lines"]:
        (src, out), (dst, inl) = line["patchline"]["source"], line["patchline"]["destination"]
        assert src in boxes and dst in boxes, line
        assert 0 <= out < boxes[src]["numoutlets"], f"{boxes[src].get('text')} has no outlet {out}"
        assert 0 <= inl < boxes[dst]["numinlets"], f"{boxes[dst].get('text')} has no inlet {inl}"


def _max_addresses(maxpat) -> tuple[set[str], set[str]]:
    """(addresses the patch sends, addresses it routes) from message boxes, prepends and routes."""
    sent, routed = set(), set()
    for b in maxpat["patcher"]["boxes"]:
        box = b["box"]
        text = box.get("text", "")
        words = text.split()
        if not words:
            continue
        if box["maxclass"] == "message" and words[0].startswith("/"):
            sent.add(words[0])
        elif box["maxclass"] == "newobj" and words[0] == "prepend" and len(words) > 1 and words[1].startswith("/"):
            sent.add(words[1])
        elif box["maxclass"] == "newobj" and words[0] == "route":
            routed |= {w for w in words[1:] if w.startswith("/")}
    return sent, routed


def test_maxpat_addresses_are_served(maxpat):
    from rolypoly.bridges.osc import sent_addresses, served_addresses
    sent, routed = _max_addresses(maxpat)
    assert sent and routed
    assert sent <= set(served_addresses()), sent - set(served_addresses())
    assert routed <= set(sent_addresses()), routed - set(sent_addresses())
    # the controls the issue asks for
    for needed in ("/rolypoly/read", "/rolypoly/start", "/rolypoly/stop", "/rolypoly/train", "/rolypoly/write",
                   "/rolypoly/set", "/rolypoly/reply_to"):
        assert needed in sent, needed
    assert {"/rolypoly/hit", "/rolypoly/status", "/rolypoly/error"} <= routed
    texts = [b["box"].get("text", "") for b in maxpat["patcher"]["boxes"]]
    classes = [b["box"]["maxclass"] for b in maxpat["patcher"]["boxes"]]
    assert "noteout 10" in texts and "opendialog" in texts and "route 0 1 2 3 4 5 6 7 8" in texts
    assert classes.count("slider") == 3 and "toggle" in classes and "flonum" in classes


def test_maxpat_hits_reach_noteout_and_per_drum_route(maxpat):
    """Follow the cords from the /rolypoly/hit outlet of the route to noteout and the per-drum route."""
    boxes = {b["box"]["id"]: b["box"] for b in maxpat["patcher"]["boxes"]}
    edges: dict[str, set] = {}
    for line in maxpat["patcher"]["lines"]:
        (src, out), (dst, _) = line["patchline"]["source"], line["patchline"]["destination"]
        edges.setdefault((src, out), set()).add(dst)
    route = next(i for i, b in boxes.items() if b.get("text", "").startswith("route /rolypoly/hit"))
    seen, todo = set(), list(edges.get((route, 0), ()))
    while todo:
        b = todo.pop()
        if b in seen:
            continue
        seen.add(b)
        for (src, _), dsts in edges.items():
            if src == b:
                todo.extend(dsts)
    reached = {boxes[b].get("text", "") for b in seen}
    assert "noteout 10" in reached and "route 0 1 2 3 4 5 6 7 8" in reached


# -- Pd ----------------------------------------------------------------------------------------------
def parse_pd(path: Path):
    """Top-level boxes (index -> (kind, words)) and connections of a Pd patch (subpatches skipped)."""
    text = path.read_text()
    records = [r.strip() for r in re.split(r"(?<!\\);", text) if r.strip()]
    boxes, conns, depth = [], [], 0
    for r in records:
        words = r.split()
        if words[0] == "#N" and words[1] == "canvas":
            depth += 1
            continue
        if words[0] == "#X" and words[1] == "restore":
            depth -= 1
            if depth == 1:
                boxes.append(("obj", words[4:]))
            continue
        if depth != 1 or words[0] != "#X":
            continue
        if words[1] == "connect":
            conns.append(tuple(int(w) for w in words[2:6]))
        elif words[1] in ("obj", "msg", "floatatom", "symbolatom", "listbox", "text"):
            boxes.append((words[1], words[4:]))
    return boxes, conns


def test_pd_patch_connections_refer_to_existing_boxes():
    boxes, conns = parse_pd(PDPAT)
    assert boxes and conns
    for src, out, dst, inl in conns:
        assert 0 <= src < len(boxes) and 0 <= dst < len(boxes), (src, dst)
        assert boxes[src][0] != "text" and boxes[dst][0] != "text", "a cord to a comment"
        assert out >= 0 and inl >= 0


def test_pd_patch_uses_vanilla_osc_objects_and_served_addresses():
    from rolypoly.bridges.osc import INCOMING, OUTGOING
    boxes, _ = parse_pd(PDPAT)
    objs = [" ".join(w) for k, w in boxes if k == "obj"]
    for needed in ("netsend -u -b", "netreceive -u -b", "oscparse", "noteout 10"):
        assert needed in objs, needed
    formats = [w for k, w in boxes if k == "obj" and w[0] == "oscformat"]
    assert formats and all(w[1] == "rolypoly" and w[2] in INCOMING for w in formats), formats
    routes = [w for k, w in boxes if k == "obj" and w[:2] == ["route", "hit"]]
    assert routes and set(routes[0][1:]) <= set(OUTGOING)


@pytest.mark.skipif(shutil.which("pd") is None, reason="Pure Data (pd) not installed")
def test_pd_loads_the_patch_without_errors():
    """Pd itself checks every object and cord: any failure prints 'couldn't create' or 'connection failed'."""
    out = subprocess.run(["pd", "-nogui", "-nosound", "-nomidi", "-stderr", "-open", str(PDPAT), "-send", "pd quit"],
                         capture_output=True, text=True, timeout=60)
    log = out.stdout + out.stderr
    assert "couldn't create" not in log and "connection failed" not in log, log


def test_maxpat_free_mode_controls_reach_udpsend_with_valid_values(maxpat):
    """generate / density / complexity messages (as in the Pd patch) go to udpsend and pass the engine's checks."""
    from rolypoly.free.live import check_attribute
    boxes = {b["box"]["id"]: b["box"] for b in maxpat["patcher"]["boxes"]}
    udp = next(i for i, b in boxes.items() if b.get("text", "").startswith("udpsend"))
    to_udp = {line["patchline"]["source"][0] for line in maxpat["patcher"]["lines"]
              if line["patchline"]["destination"][0] == udp}
    seen = set()
    for i in to_udp:
        words = boxes[i].get("text", "").split()
        if boxes[i]["maxclass"] == "message" and len(words) > 2 and words[0] == "/rolypoly/set" \
                and words[1] in ("generate", "density", "complexity"):
            check_attribute(words[1], words[2:])      # raises on a bad mode or value
            seen.add(words[1] if words[1] != "generate" else f"generate {words[2]}")
        elif boxes[i]["maxclass"] == "newobj" and words[:2] == ["prepend", "/rolypoly/set"] and words[2:] in (["density"], ["complexity"]):
            feeders = [line["patchline"]["source"][0] for line in maxpat["patcher"]["lines"]
                       if line["patchline"]["destination"][0] == i]
            assert any(boxes[f]["maxclass"] == "flonum" and boxes[f]["minimum"] == 0 and boxes[f]["maximum"] == 1
                       for f in feeders), words
            seen.add(f"{words[2]} knob")
    assert {"generate off", "generate continue", "generate fill", "generate free", "density", "complexity",
            "density knob", "complexity knob"} <= seen, seen
