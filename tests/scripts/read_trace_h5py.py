#!/usr/bin/env python3
"""Reads KVScope traces with h5py + numpy using nothing but traces/SCHEMA.md.

Every dataset and attribute this script touches is looked up in the tables of SCHEMA.md first
(a name missing there is a test failure), and every documented dataset must exist in the file
with the documented dtype and shape. The analyses recompute things from the raw tables (token
states replayed from the events, needle survival, attention rows) and compare them with what the
trace stores, so a user can trust an analysis done outside KVScope.

The traces come from the test-only writer (make_sample_trace): a complete one and one whose
writer was killed with SIGKILL after 9 steps. Values follow the formulas in traces/synthetic/sample_trace.h.

Usage: read_trace_h5py.py --writer make_sample_trace --schema traces/SCHEMA.md --workdir DIR
"""
import argparse
import os
import re
import signal
import subprocess
import sys

import h5py
import numpy as np

HELD, QUANTIZED, DEMOTED, MERGED, EVICTED, ABSENT = "held", "quantized", "demoted", "merged", \
    "evicted", "absent"


def parse_schema(path):
    """Returns ({dataset: (dtype, axes, units)}, {root attribute: dtype}, {op value: name})."""
    datasets, attrs, ops = {}, {}, {}
    section = ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("## "):
                section = line[3:].strip()
            m = re.match(r"^\| `(/[^`]+)` \| (\w+) \| ([^|]+) \| ([^|]+) \|", line)
            if m:
                shape = m.group(3).strip()
                axes = [] if shape == "scalar" else shape.strip("[]").split(",")
                datasets[m.group(1)] = (m.group(2), axes, m.group(4).strip())
                continue
            m = re.match(r"^\| `(\w+)` \| (\w+) \|", line)
            if m and section == "Root attributes":
                attrs[m.group(1)] = m.group(2)
            m = re.match(r"^\| (\d) \| (\w+) \|", line)
            if m and section == "Events":
                ops[int(m.group(1))] = m.group(2)
    return datasets, attrs, ops


class Trace:
    """An h5py file whose accessors refuse names that SCHEMA.md does not document."""

    def __init__(self, path, schema):
        self.datasets, self.attrs, self.ops = schema
        self.f = h5py.File(path, "r", swmr=True)

    def attr(self, name):
        assert name in self.attrs, f"root attribute {name} is not in SCHEMA.md"
        return text(self.f.attrs[name])

    def ds(self, name):
        assert name in self.datasets, f"dataset {name} is not in SCHEMA.md"
        return self.f[name]

    def sizes(self):
        s = {a: int(self.attr(n)) for a, n in
             [("L", "n_layers"), ("H", "n_heads"), ("P", "n_prompt_tokens"), ("K", "top_k"),
              ("N", "n_spans")]}
        s["S"] = int(self.ds("/meta/steps_committed")[()])
        return s


def text(value):
    """A string attribute: fixed-length ones (version 2) come back as bytes, as SCHEMA.md says."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def check_layout(t):
    """Every documented dataset is present (when its condition holds) as documented."""
    sz = t.sizes()
    assert t.attr("format") == "kvscope-trace"
    assert int(t.attr("schema_version")) == 2
    numpy_kind = {"int8": "i1", "uint8": "u1", "int16": "i2", "int32": "i4", "int64": "i8",
                  "float32": "f4"}
    for name, (dtype, axes, units) in t.datasets.items():
        if name.startswith("/attention_rows") and not int(t.attr("record_attention_rows")):
            continue
        if name == "/prefill/maps" and not int(t.attr("record_maps")):
            continue
        if name == "/steps/needle_survival" and sz["N"] == 0:
            continue
        assert name in t.f, f"{name} documented but missing"
        d = t.f[name]
        if dtype == "str":
            assert h5py.check_string_dtype(d.dtype) is not None, name
        else:
            assert d.dtype.str.endswith(numpy_kind[dtype]), (name, d.dtype, dtype)
        assert len(d.shape) == len(axes), (name, d.shape, axes)
        for n, a in zip(d.shape, axes):
            if a in ("L", "H", "P", "K", "N"):
                assert n == sz[a], (name, d.shape, axes)
            elif a == "S":
                assert n >= sz["S"], (name, d.shape)
        assert text(d.attrs["units"]) == units, (name, d.attrs["units"], units)


def replay(ops_names, ops, pos, dest, bits, n):
    """Token states of one (layer, head) from its events, as SCHEMA.md 'Events' describes."""
    state = [ABSENT] * n
    b = [0] * n
    for o, p, d, q in zip(ops, pos, dest, bits):
        if p >= n:
            continue
        name = ops_names[int(o)]
        # Evict, quantize and demote act on held tokens only (a merged token stays merged).
        if name in ("evict", "quantize", "demote") and state[p] not in (HELD, QUANTIZED, DEMOTED):
            continue
        state[p] = {"append": HELD, "evict": EVICTED, "merge": MERGED, "quantize": QUANTIZED,
                    "demote": DEMOTED}[name]
        if name == "append":
            b[p] = int(q) if q > 0 else 16
        elif name in ("quantize", "demote"):
            b[p] = int(q) if q > 0 else b[p]
        else:
            b[p] = 0
    return state, b


def lh_events(t, layer, head, s_end):
    """Events of one (layer, head) for steps [0, s_end) via the lh index (no full scan)."""
    begin = t.ds("/events/lh_begin")[:s_end, layer, head]
    count = t.ds("/events/lh_count")[:s_end, layer, head]
    rows = np.concatenate([np.arange(b, b + c) for b, c in zip(begin, count)]).astype(np.int64)
    cols = {}
    for c in ("step", "op", "position", "destination", "bits"):
        cols[c] = t.ds("/events/" + c)[rows] if len(rows) else np.zeros(0)
    return cols


def check_complete(t):
    sz = t.sizes()
    P, L, H, S, K, N = sz["P"], sz["L"], sz["H"], sz["S"], sz["K"], sz["N"]
    assert int(t.ds("/meta/complete")[()]) == 1
    assert (S, P, L, H, K, N) == (25, 40, 3, 2, 4, 3), (S, P, L, H, K, N)

    import json
    run = json.loads(t.ds("/meta/run_json")[()])
    end = json.loads(bytes(t.ds("/meta/end_json")[:]).decode())
    assert run["policy"] == "toy" and run["n_layers"] == L, run
    assert end["complete"] is True and end["reason"] == "max_new_tokens", end

    # Tokens and text
    ids = t.ds("/tokens/ids")[: P + S]
    roles = t.ds("/tokens/role")[: P + S]
    assert (roles[:P] == 0).all() and (roles[P:] == 1).all()
    assert (ids[:P] == (7 * np.arange(P) + 3) % 1000).all()
    assert (t.ds("/steps/token_id")[:S] == ids[P:]).all()
    off = t.ds("/tokens/text_offset")[P: P + S]
    ln = t.ds("/tokens/text_length")[P: P + S]
    text = bytes(t.ds("/tokens/text_bytes")[off[0]: off[-1] + ln[-1]]).decode("utf-8")
    assert "blue42" in text, text
    assert list(t.ds("/spans/answer_found")[:]) == [1, 0, -1]
    labels = [s.decode() if isinstance(s, bytes) else s for s in t.ds("/spans/label")[:]]
    assert labels == ["needle", "distractor", "marker"], labels

    # Prefill statistics follow their formulas (sample_trace.h)
    l, h, j = np.meshgrid(np.arange(L), np.arange(H), np.arange(P), indexing="ij")
    assert np.allclose(t.ds("/prefill/key_norm")[...], 1 + 0.5 * l + 0.25 * h + 0.01 * j,
                       atol=1e-5)
    assert np.allclose(t.ds("/prefill/attn_received")[1, 1, :], 1 / (1 + np.arange(P)) + 0.1,
                       atol=1e-6)
    assert np.isnan(t.ds("/prefill/window_scores")[L - 1]).all()
    assert list(t.ds("/prefill/window_rows")[:]) == [8, 8, 0]
    sp = t.ds("/prefill/spearman")[...]
    assert np.all((sp >= -1) & (sp <= 1))
    assert (t.ds("/prefill/layer_done")[:] == 1).all()
    maps = t.ds("/prefill/maps")[0, 1]  # [P, P]
    assert np.allclose(maps.sum(axis=1), 1, atol=1e-5) and np.allclose(np.triu(maps, 1), 0)

    # Steps
    s = np.arange(S)
    assert np.allclose(t.ds("/steps/entropy")[:S], 1 + 0.01 * s, atol=1e-6)
    budget = t.ds("/steps/budget")[:S]
    sl, ll, hh = np.meshgrid(s, np.arange(L), np.arange(H), indexing="ij")
    assert (budget == P // 2 + 2 * ll + hh + sl).all()
    topk = t.ds("/steps/topk_ids")[:S]
    assert (topk[:, 0] == ids[P:]).all() and (topk[0, 3] == -1)

    # Events: index consistency, then per-(layer, head) replay against stored survival and rows
    ev_begin, ev_count = t.ds("/steps/event_begin")[:S], t.ds("/steps/event_count")[:S]
    E = int(ev_begin[-1] + ev_count[-1])
    assert (t.ds("/events/lh_count")[:S].sum(axis=(1, 2)) == ev_count).all()
    steps_col = t.ds("/events/step")[:E]
    assert (np.diff(steps_col) >= 0).all()
    ops_col = t.ds("/events/op")[:E]
    merge = [k for k, v in t.ops.items() if v == "merge"][0]
    merges = ops_col == merge
    dst = t.ds("/events/dst_position")[:E][merges]
    assert (dst == t.ds("/events/position")[:E][merges] - 1).all()
    counts = np.bincount(ops_col, minlength=len(t.ops))
    assert (counts > 0).all(), counts  # the sample exercises every op

    spans = list(zip(t.ds("/spans/begin")[:], t.ds("/spans/end")[:]))
    survival = t.ds("/steps/needle_survival")[:S]  # [S, N, L, H]
    for layer in range(L):
        for head in range(H):
            ev = lh_events(t, layer, head, S)
            for step in range(S):
                sel = ev["step"] <= step
                state, bits = replay(t.ops, ev["op"][sel], ev["position"][sel],
                                     ev["destination"][sel], ev["bits"][sel], P + step)
                kept = [q for q in range(P + step) if state[q] in (HELD, QUANTIZED, DEMOTED)]
                for n, (b, e) in enumerate(spans):
                    frac = sum(1 for q in range(b, e) if q in kept) / (e - b)
                    assert abs(survival[step, n, layer, head] - frac) < 1e-6, \
                        (layer, head, step, n, survival[step, n, layer, head], frac)
                if step in (0, 7, S - 1):
                    rb = int(t.ds("/attention_rows/begin")[step, layer, head])
                    rc = int(t.ds("/attention_rows/count")[step, layer, head])
                    pos = t.ds("/attention_rows/position")[rb: rb + rc]
                    val = t.ds("/attention_rows/value")[rb: rb + rc]
                    assert list(pos) == kept, (layer, head, step)
                    assert abs(val.sum() - 1) < 1e-4
                if (layer, head, step) == (0, 0, 0):
                    assert state[4] == EVICTED and state[5] == MERGED
                    assert state[6] == QUANTIZED and bits[6] == 4 and state[7] == HELD
    return E


def check_killed(t):
    sz = t.sizes()
    assert int(t.ds("/meta/complete")[()]) == 0
    S = sz["S"]
    assert S == 9, S
    assert len(t.ds("/meta/end_json")) == 0
    assert np.allclose(t.ds("/steps/entropy")[:S], 1 + 0.01 * np.arange(S), atol=1e-6)
    assert t.ds("/tokens/ids").shape[0] >= sz["P"] + S
    E = int(t.ds("/steps/event_begin")[S - 1] + t.ds("/steps/event_count")[S - 1])
    assert t.ds("/events/op").shape[0] >= E
    assert (t.ds("/events/step")[:E] < S).all()
    return S


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writer", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    schema = parse_schema(args.schema)
    assert len(schema[0]) >= 40 and len(schema[1]) >= 10 and len(schema[2]) == 5, \
        "SCHEMA.md tables not found"

    complete = os.path.join(args.workdir, "complete.kvtrace.h5")
    killed = os.path.join(args.workdir, "killed.kvtrace.h5")
    for p in (complete, killed, complete + ".part", killed + ".part"):  # a stale .part is refused
        if os.path.exists(p):
            os.remove(p)
    subprocess.run([args.writer, complete, "--rows", "--maps"], check=True)
    r = subprocess.run([args.writer, killed, "--kill-after", "9"])
    assert r.returncode == -signal.SIGKILL, r.returncode
    killed += ".part"  # a killed writer never renames: its steps are in the .part

    t = Trace(complete, schema)
    check_layout(t)
    n_events = check_complete(t)
    k = Trace(killed, schema)
    check_layout(k)
    n_killed = check_killed(k)
    print(f"h5py read OK: complete trace ({n_events} events), killed trace ({n_killed} steps), "
          f"{len(schema[0])} datasets documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
