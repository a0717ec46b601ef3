#!/usr/bin/env python3
"""The Python reader (traces/python/kvscope_trace) against the C++ reader, and SCHEMA.md's replay.

(a) For every committed step, layer and head of four traces, Trace.token_states (state, bits,
    merged_into) must equal TraceReader::token_states exactly, as dumped by dump_token_states:
    the D2O sample (merges, no prefill appends), the MiKV sample (quantised tokens), and the
    synthetic sample of make_sample_trace complete (every op, prefill appends recorded) and
    SIGKILLed after 9 steps (incomplete, read through steps_committed).
(b) The Python block of SCHEMA.md's "Reading a trace in Python" section is extracted, run, and
    its replay_token_states must equal the package's states everywhere on the same traces.
(c) Schema version 1 (tests/traces/v1, recorded by the last version 1 writer) and its upgrade:
    `kvscope upgrade` writes a version 2 copy whose token states equal the version 1 file's at
    every step, layer and head (both read through the package and the C++ reader), whose events
    differ only in the destination of evict / quantize / demote rows (-1), and the input file is
    unchanged byte for byte.
(d) One replay rule: /summary/held equals the number of held, quantized or demoted positions of
    the replay on every step, layer and head, on a synthetic trace that demotes merged tokens.
Plus the documented facts the package relies on: needle survival counts quantised tokens as held,
D2O's budget is -1 at step 0, the debiased attention formula, strings through .asstr().

Usage: test_python_reader.py --dump dump_token_states --writer make_sample_trace
       --kvscope kvscope --schema traces/SCHEMA.md --samples tests/traces/old_samples
       --v1 tests/traces/v1 --workdir DIR
(kvscope_trace must be importable: PYTHONPATH=traces/python.)
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np

import kvscope_trace as kt


def read_dump(path):
    """{(step, layer, head): (state uint8 [n], bits int8 [n], merged_into int32 [n])}."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"KVTS0001", raw[:8]
    S, L, H, P = (int(x) for x in np.frombuffer(raw[8:40], np.int64))
    out, o = {}, 40
    for s in range(S):
        n = P + s
        for layer in range(L):
            for head in range(H):
                st = np.frombuffer(raw[o:o + n], np.uint8)
                bits = np.frombuffer(raw[o + n:o + 2 * n], np.int8)
                into = np.frombuffer(raw[o + 2 * n:o + 6 * n], np.int32)
                out[(s, layer, head)] = (st, bits, into)
                o += 6 * n
    assert o == len(raw), (o, len(raw))
    return (S, L, H, P), out


def check_against_cpp(dump_tool, trace_path, workdir):
    """(a): exact equality with the C++ replay; returns the state counts over all (s, l, h)."""
    out = os.path.join(workdir, os.path.basename(trace_path) + ".states")
    subprocess.run([dump_tool, trace_path, out], check=True, stdout=subprocess.DEVNULL)
    (S, L, H, P), ref = read_dump(out)
    totals = np.zeros(6, np.int64)
    with kt.Trace(trace_path) as t:
        assert (t.n_steps, t.n_layers, t.n_heads, t.n_prompt_tokens) == (S, L, H, P)
        for (s, layer, head), (st, bits, into) in ref.items():
            d = t.token_states(layer, head, s, detail=True)
            for name, want in (("state", st), ("bits", bits), ("merged_into", into)):
                got = d[name]
                assert got.dtype == want.dtype and np.array_equal(got, want), \
                    (trace_path, s, layer, head, name, np.flatnonzero(got != want)[:10])
            totals += np.bincount(st, minlength=6)
    return totals


def schema_replay(schema_path):
    """(b): runs the first python block of SCHEMA.md's 'Reading a trace in Python' section."""
    text = open(schema_path, encoding="utf-8").read()
    m = re.search(r"^## Reading a trace in Python\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "SCHEMA.md has no '## Reading a trace in Python' section"
    code = re.search(r"```python\n(.*?)```", m.group(1), re.S)
    assert code, "the section has no python block"
    ns = {}
    exec(compile(code.group(1), "SCHEMA.md", "exec"), ns)  # the documented code, as written
    assert "replay_token_states" in ns, "the block must define replay_token_states(f, l, h, s)"
    return ns["replay_token_states"]


def check_schema_replay(replay, trace_path):
    with kt.Trace(trace_path) as t, h5py.File(trace_path, "r", swmr=True) as f:
        for s in range(t.n_steps):
            for layer in range(t.n_layers):
                for head in range(t.n_heads):
                    got = np.asarray(replay(f, layer, head, s))
                    want = t.token_states(layer, head, s)
                    assert np.array_equal(got, want), \
                        (trace_path, s, layer, head, np.flatnonzero(got != want)[:10])


def check_survival(t):
    """Stored needle survival = fraction of the span held at any precision (replayed)."""
    held = (kt.HELD, kt.QUANTIZED, kt.DEMOTED)
    for n, sp in enumerate(t.spans()):
        stored = t.needle_survival(n)  # [S, L, H]
        for s in range(t.n_steps):
            for layer in range(t.n_layers):
                for head in range(t.n_heads):
                    st = t.token_states(layer, head, s)[sp["begin"]:sp["end"]]
                    frac = np.isin(st, held).mean()
                    assert abs(stored[s, layer, head] - frac) < 1e-6, (n, s, layer, head)


def check_real_samples(t_d2o, t_mikv):
    P = t_d2o.n_prompt_tokens
    m = t_d2o.meta
    assert m["policy"] == "d2o" and m["extra"]["prefill_appends_recorded"] is False
    # A ratio run stores both: the ratio and the tokens it resolves to on the prompt.
    assert m["budget_ratio"] == 0.5 and m["budget_tokens"] == 256, m
    assert (t_d2o.budgets(0) == -1).all() and (t_d2o.budgets(1) > 0).any()
    assert t_d2o.events(0, 1)["op"].size == 0  # D2O compresses from step 1
    ev = t_d2o.events(1, 2)
    merges = ev["op"] == 2
    assert merges.any() and (ev["dst_position"][merges] >= 0).all()
    # The sample is schema version 1: its evict rows hold their slot in destination, which the
    # reader adapts to version 2's -1.
    ev_ = ev["op"] == 1
    assert t_d2o.schema_version == 1 and not t_d2o.prefill_appends
    assert (ev["destination"][ev_] == -1).all()
    b = int(t_d2o.file["steps/event_begin"][1])
    raw = t_d2o.file["events/destination"][b:b + ev["op"].size]
    assert (raw[ev_] == ev["slot"][ev_]).all() and (raw[ev_] >= 0).all()
    # D2O's threshold is compared with the head-averaged similarity: some merged rows sit below it.
    assert (ev["similarity"][merges] < ev["threshold"][merges]).any()
    assert t_d2o.spans()[0]["label"] == "needle"
    assert isinstance(t_d2o.spans()[0]["expected_answer"], str)
    dens = t_d2o.prefill("density")
    assert dens.shape == (t_d2o.n_layers, t_d2o.n_heads) and ((dens >= 0) & (dens < 1)).all()
    # Debiased attention: divide by the P - j causal queries that see key j.
    ar = t_d2o.prefill("attn_received", 2, 1)
    assert np.allclose(t_d2o.debiased_attention(2, 1) * (P - np.arange(P)), ar, rtol=1e-6)
    assert t_d2o.debiased_attention().shape == (t_d2o.n_layers, t_d2o.n_heads, P)
    assert t_d2o.bytes_held().shape == (t_d2o.n_steps, t_d2o.n_layers)
    toks = t_d2o.tokens()
    assert len(toks.ids) == len(toks.pieces) == P + t_d2o.n_steps
    assert (toks.roles[:P] == 0).all() and (toks.roles[P:] == 1).all()
    assert t_d2o.text() == b"".join(toks.pieces[P:]).decode("utf-8", "replace")
    # MiKV: the budget is the high-precision budget; quantised needle tokens count as surviving.
    assert t_mikv.meta["policy"] == "mikv" and (t_mikv.budgets(0) == 128).all()
    last = t_mikv.token_states(3, 0, t_mikv.n_steps - 1)
    sp = t_mikv.spans()[0]
    assert (last[sp["begin"]:sp["end"]] == kt.QUANTIZED).any()
    assert (t_mikv.needle_survival("needle") == 1).all()
    check_survival(t_d2o)
    check_survival(t_mikv)


def check_summary_agrees(path):
    """(d): /summary/held == replayed held count everywhere; returns the demotes that found their
    token not held (the case the rule decides)."""
    holding = (kt.HELD, kt.QUANTIZED, kt.DEMOTED)
    ignored = 0
    with kt.Trace(path) as t:
        held = t.file["summary/held"][:t.n_steps]
        for s in range(t.n_steps):
            for layer in range(t.n_layers):
                for head in range(t.n_heads):
                    st = t.token_states(layer, head, s)
                    assert np.isin(st, holding).sum() == held[s, layer, head], \
                        (path, s, layer, head, np.isin(st, holding).sum(), held[s, layer, head])
            ev = t.events(s, s + 1)
            for layer, head, p in zip(ev["layer"][ev["op"] == kt.DEMOTE],
                                      ev["head"][ev["op"] == kt.DEMOTE],
                                      ev["position"][ev["op"] == kt.DEMOTE]):
                ignored += int(t.token_states(int(layer), int(head), s)[p] != kt.DEMOTED)
    return ignored


def check_upgrade(kvscope, v1_path, workdir):
    """(c): upgrade the version 1 fixture, compare everything a reader sees."""
    out = os.path.join(workdir, "upgraded-" + os.path.basename(v1_path))
    if os.path.exists(out):
        os.remove(out)
    before = open(v1_path, "rb").read()
    subprocess.run([kvscope, "upgrade", v1_path, out, "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    assert open(v1_path, "rb").read() == before, "the input changed"
    with kt.Trace(v1_path) as a, kt.Trace(out) as b:
        assert (a.schema_version, b.schema_version) == (1, 2)
        assert not a.prefill_appends and not b.prefill_appends
        assert b.meta["extra"]["upgraded_from"]["schema_version"] == 1
        ea, eb = a.events(), b.events()
        for c in kt.EVENT_COLUMNS:
            assert np.array_equal(ea[c], eb[c], equal_nan=ea[c].dtype.kind == "f"), c
        with h5py.File(v1_path, "r") as fa, h5py.File(out, "r") as fb:
            raw_a, raw_b = fa["events/destination"][:], fb["events/destination"][:]
            op = fb["events/op"][:]
            other = (op != kt.APPEND) & (op != kt.MERGE)
            assert other.any() and (raw_a[other] >= 0).all() and (raw_b[other] == -1).all()
            assert np.array_equal(raw_a[~other], raw_b[~other])
        for s in range(a.n_steps):
            for layer in range(a.n_layers):
                for head in range(a.n_heads):
                    da = a.token_states(layer, head, s, detail=True)
                    db = b.token_states(layer, head, s, detail=True)
                    for k in ("state", "bits", "merged_into", "changed_step"):
                        assert np.array_equal(da[k], db[k]), (v1_path, s, layer, head, k)
    return out


def check_frames(t):
    try:
        import pandas  # noqa: F401
    except ImportError:
        try:
            t.events_frame(0, 1)
        except ImportError as e:
            assert "pandas" in str(e)
        else:
            raise AssertionError("events_frame without pandas must raise ImportError")
        return
    df = t.events_frame(1, 2)
    assert len(df) == t.events(1, 2)["op"].size and set(df["op_name"]) <= set(kt.OP_NAMES)
    assert len(t.tokens_frame()) == t.n_tokens


def main():
    ap = argparse.ArgumentParser()
    for a in ("--dump", "--writer", "--kvscope", "--schema", "--samples", "--v1", "--workdir"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    d2o = os.path.join(args.samples, "sample.kvtrace.h5")
    mikv = os.path.join(args.samples, "sample_mikv.kvtrace.h5")
    synth = os.path.join(args.workdir, "synthetic.kvtrace.h5")
    killed = os.path.join(args.workdir, "killed.kvtrace.h5")
    for p in (synth, killed, synth + ".part", killed + ".part"):  # a stale .part is refused
        if os.path.exists(p):
            os.remove(p)
    subprocess.run([args.writer, synth, "--rows"], check=True)
    r = subprocess.run([args.writer, killed, "--kill-after", "9"])
    assert r.returncode == -signal.SIGKILL, r.returncode
    # A killed writer never renames: its steps are in the .part (SCHEMA.md, killed runs).
    assert not os.path.exists(killed)
    killed += ".part"

    # (c) version 1 fixtures and their upgraded copies.
    v1 = [os.path.join(args.v1, n + ".kvtrace.h5") for n in ("d2o", "mikv")]
    upgraded = [check_upgrade(args.kvscope, p, args.workdir) for p in v1]

    # (a) exact equality with the C++ reader; each trace must exercise what it is here for.
    c = {p: check_against_cpp(args.dump, p, args.workdir)
         for p in [d2o, mikv, synth, killed] + v1 + upgraded}
    assert c[d2o][kt.MERGED] > 0 and c[d2o][kt.EVICTED] > 0, c[d2o]
    assert c[mikv][kt.QUANTIZED] > 0, c[mikv]
    assert (c[synth][1:] > 0).all(), c[synth]  # held, quantized, demoted, merged, evicted
    with kt.Trace(killed) as k:
        assert k.complete == 0 and k.n_steps == 9 and k.end is None
        assert k.file["steps/entropy"].shape[0] >= 9

    # (b) SCHEMA.md's replay code gives the same states.
    replay = schema_replay(args.schema)
    for p in [d2o, mikv, synth, killed] + v1 + upgraded:
        check_schema_replay(replay, p)

    # (d) the summary and the replay agree, where demotes of merged / evicted tokens occur.
    assert check_summary_agrees(synth) > 0, "the synthetic trace must demote tokens not held"
    for p in upgraded:
        check_summary_agrees(p)

    with kt.Trace(d2o) as t_d2o, kt.Trace(mikv) as t_mikv:
        check_real_samples(t_d2o, t_mikv)
        check_frames(t_d2o)
    with kt.Trace(synth) as t:
        # The synthetic writer appends the prompt at step 0 and says so (root attribute).
        assert t.schema_version == kt.SCHEMA_VERSION and t.prefill_appends
        assert int(t.file.attrs["prefill_appends"]) == 1
        pos, val = t.attention_row(3, 0, 0)
        assert len(pos) == len(val) > 0
        # The record-time prompt states (/summary/prompt_state) equal the replay after step 0.
        P = t.n_prompt_tokens
        for layer in range(t.n_layers):
            for head in range(t.n_heads):
                state, bits = t.prompt_states(layer, head)
                d = t.token_states(layer, head, 0, detail=True)
                assert np.array_equal(state, d["state"][:P]), (layer, head)
                assert np.array_equal(bits, np.minimum(d["bits"][:P], 31)), (layer, head)
    with kt.Trace(d2o) as t:
        assert t.prompt_states(0, 0) is None  # written before /summary/prompt_state

    # A newer schema is refused with a message naming the version.
    newer = os.path.join(args.workdir, "newer.kvtrace.h5")
    shutil.copy(synth, newer)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = np.int32(kt._trace.SCHEMA_VERSION + 1)
    try:
        kt.Trace(newer)
    except kt.TraceError as e:
        assert "schema version" in str(e), e
    else:
        raise AssertionError("a newer schema version must be refused")

    print("python reader OK: " + ", ".join(
        f"{os.path.basename(p)} {dict(zip(kt.STATE_NAMES, v.tolist()))}" for p, v in c.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
