#!/usr/bin/env python3
"""Backend parity at engine level (issue 9): every KV-cache policy run twice, on backend A and on
backend B, and the two recorded traces compared step by step.

    python3 bench/backend_parity.py --a cpu --b cuda --env-b KVSCOPE_CUDA_MATH=fp32 --expect-identical
    python3 bench/backend_parity.py --a cpu --b cuda                # native (bf16) mode: report only
    python3 bench/backend_parity.py --a cpu --b cpu --expect-identical    # smoke test: determinism

For each policy, `kvscope run` records a trace of the same run (needle-in-a-haystack prompt of
--length tokens built by `--scenario niah`, greedy decoding of --max-new tokens with
--ignore-eos, budget --ratio of the prompt, so that every compressing policy evicts, merges or
quantises) with `--device A` and with `--device B` (extra environment per side: --env-a/--env-b
KEY=VALUE). Each trace is exported with `kvscope export --csv` (so only the Python standard
library is needed, no h5py/numpy) and its /events are replayed as traces/SCHEMA.md prescribes
(prompt positions 0..P-1 held at 16 bits before step 0; append -> held, evict / merge -> gone,
quantize / demote -> held at the event's bits for its part: keys, values or both; events whose
position is outside 0..P+s-1 are ignored; the last event of a position decides).

What is compared, after every step s and for every cache (layer, head):
  kept set   the positions held at any precision (held, quantised, demoted). "Identical" means
             the two sets are equal; the overlap is the Jaccard index |A & B| / |A | B|
             (1.0 for two empty sets).
  bits       for the kept positions, (key bits, value bits) of every position; reported for the
             policies that quantise or demote (kivi, mikv); identical means equal maps.
  events     the step's ordered list of (op, position, dst_position) for that cache (dst_position
             is the token a merge folds into, -1 for other ops); identical means equal lists
             (same count, same ops on the same tokens in the same order). Merge weights,
             similarities and thresholds are floats and are not compared.
  tokens     the generated token ids (/steps/token_id); identical means equal sequences. The
             first step where they differ is reported: after it the two runs decode different
             tokens, so their caches are expected to drift apart; the JSON therefore also gives
             the kept-set figures over the steps before that one (`before_token_divergence`),
             and per step (`per_step`; step 0 is the prefill's compression).
Also recorded in the JSON (not part of "identical"): the largest |difference| of the top-1
log-probability over the steps before the tokens diverge, and each trace's recorded backend and
device (`backend`, `device` in /meta/run_json), so that a silent fallback would show.

A policy is "identical" when every kept set, every bits map, every event list and every token is
equal - exact equality, no tolerance. Exit status: 1 when --expect-identical is given and any
policy is not identical, or when any kvscope run or export fails; 2 on usage errors (including a
missing binary or model); else 0. The Markdown table goes to stdout, the details to --json.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (policy, extra `kvscope run` arguments). --ratio is added to every policy whose budget is not
# replaced here: DMC's checkpoint mode needs a DMC-retrofitted checkpoint (on a vanilla model it
# merges almost nothing), so it runs its training-free proxy, which compresses by cr=4.
POLICIES = [
    ("full", []),
    ("streaming_llm", []),
    ("h2o", []),
    ("tova", []),
    ("snapkv", []),
    ("pyramidkv", []),
    ("kivi", []),
    ("d2o", []),
    ("dmc", ["--param", "mode=proxy"]),
    ("dynamickv", []),
    ("knorm", []),
    ("mikv", []),
]
NO_RATIO = {"dmc"}
QUANTISING_OPS = {"quantize", "demote"}
OP_NAMES = {"0": "append", "1": "evict", "2": "merge", "3": "quantize", "4": "demote"}


class RunError(Exception):
    pass


def parse_env(items, flag):
    env = {}
    for it in items or []:
        if "=" not in it or it.startswith("="):
            raise SystemExit(usage_error(f"{flag} expects KEY=VALUE, got {it!r}"))
        k, v = it.split("=", 1)
        env[k] = v
    return env


def usage_error(msg):
    print(f"backend_parity.py: error: {msg}", file=sys.stderr)
    return 2


def run_checked(cmd, env, what):
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stdout + r.stderr).strip()[-1500:]
        raise RunError(f"{what} failed (rc={r.returncode}): {' '.join(cmd)}\n{tail}")
    return r


def record(a, policy, extra, device, env_over, workdir, tag):
    """Runs `kvscope run` and `kvscope export --csv`; returns the CSV folder."""
    trace = os.path.join(workdir, f"{policy}.{tag}.kvtrace.h5")
    csv_dir = os.path.join(workdir, f"{policy}.{tag}.csv")
    cmd = [a.kvscope, "run", "--model", a.model, "--scenario", "niah", "--length", str(a.length),
           "--depth", str(a.depth), "--policy", policy, "--max-new", str(a.max_new),
           "--ignore-eos", "--temperature", "0", "--device", device, "--trace", trace,
           "--force", "--quiet"] + extra
    if policy not in NO_RATIO:
        cmd += ["--ratio", str(a.ratio)]
    if a.threads is not None:
        cmd += ["--threads", str(a.threads)]
    env = dict(os.environ)
    env.update(env_over)
    t0 = time.time()
    run_checked(cmd, env, f"{policy} on {tag} ({device})")
    run_checked([a.kvscope, "export", trace, "--csv", csv_dir, "--force"], env,
                f"export of {trace}")
    return csv_dir, time.time() - t0


def load(csv_dir):
    """The parts of an exported trace that parity needs."""
    meta = json.load(open(os.path.join(csv_dir, "metadata.json")))
    run = meta["run"]
    with open(os.path.join(csv_dir, "steps.csv"), newline="") as f:
        steps = list(csv.DictReader(f))
    events = {}  # step -> (layer, head) -> [(op, position, dst_position, bits, part)]
    with open(os.path.join(csv_dir, "events.csv"), newline="") as f:
        for r in csv.DictReader(f):
            op = OP_NAMES.get(r["op"], r["op"])
            ev = (op, int(r["position"]), int(r["dst_position"]), int(r["bits"]), int(r["part"]))
            events.setdefault(int(r["step"]), {}).setdefault(
                (int(r["layer"]), int(r["head"])), []).append(ev)
    return dict(
        P=int(run["n_prompt_tokens"]), L=int(run["n_layers"]), H=int(run["n_heads"]),
        backend=run.get("backend"), device=run.get("device"),
        tokens=[int(s["token_id"]) for s in steps],
        top1=[float(s["topk_logprob_0"]) if s.get("topk_logprob_0") not in (None, "") else
              float("nan") for s in steps],
        events=events)


class Cache:
    """Replayed state of one (layer, head) cache: position -> [key bits, value bits]."""

    def __init__(self, P):
        self.held = {p: [16, 16] for p in range(P)}

    def apply(self, evs, n):
        for op, pos, _dst, bits, part in evs:
            if not 0 <= pos < n:
                continue
            if op == "append":
                b = bits if bits > 0 else 16
                self.held[pos] = [b, b]
            elif op in ("evict", "merge"):
                self.held.pop(pos, None)
            elif op in QUANTISING_OPS:
                if pos in self.held:  # applies to held tokens only
                    kb = self.held[pos]
                    if part in (0, 2):
                        kb[0] = bits
                    if part in (1, 2):
                        kb[1] = bits


def jaccard(x, y):
    if not x and not y:
        return 1.0
    inter = len(x & y)
    return inter / (len(x) + len(y) - inter)


def compare(A, B):
    res = dict(backend_a=A["backend"], device_a=A["device"], backend_b=B["backend"],
               device_b=B["device"])
    if (A["P"], A["L"], A["H"]) != (B["P"], B["L"], B["H"]):
        res.update(shape_mismatch=True, identical=False,
                   detail=f"P,L,H {A['P'], A['L'], A['H']} vs {B['P'], B['L'], B['H']}")
        return res
    P, L, H = A["P"], A["L"], A["H"]
    S = min(len(A["tokens"]), len(B["tokens"]))
    ta, tb = A["tokens"], B["tokens"]
    first_tok_diff = next((s for s in range(S) if ta[s] != tb[s]), None)
    if first_tok_diff is None and len(ta) != len(tb):
        first_tok_diff = S
    quantising = any(op in QUANTISING_OPS for tr in (A, B) for lh in tr["events"].values()
                     for evs in lh.values() for op, *_ in evs)
    ca = {(l, h): Cache(P) for l in range(L) for h in range(H)}
    cb = {(l, h): Cache(P) for l in range(L) for h in range(H)}
    cells = same_sets = same_bits = same_events = 0
    jac_sum, jac_min = 0.0, 1.0
    n_events_a = n_events_b = 0
    first_set_diff = first_event_diff = None
    per_step = []
    for s in range(S):
        n = P + s
        ea, eb = A["events"].get(s, {}), B["events"].get(s, {})
        s_same = 0
        s_jac_min, s_jac_sum = 1.0, 0.0
        for key in ca:
            la, lb = ea.get(key, []), eb.get(key, [])
            n_events_a += len(la)
            n_events_b += len(lb)
            ca[key].apply(la, n)
            cb[key].apply(lb, n)
            ka, kb = set(ca[key].held), set(cb[key].held)
            j = jaccard(ka, kb)
            cells += 1
            jac_sum += j
            s_jac_sum += j
            jac_min = min(jac_min, j)
            s_jac_min = min(s_jac_min, j)
            if ka == kb:
                same_sets += 1
                s_same += 1
            elif first_set_diff is None:
                first_set_diff = dict(step=s, layer=key[0], head=key[1],
                                      only_a=sorted(ka - kb)[:20], only_b=sorted(kb - ka)[:20])
            if ca[key].held == cb[key].held:
                same_bits += 1
            if [e[:3] for e in la] == [e[:3] for e in lb]:
                same_events += 1
            elif first_event_diff is None:
                first_event_diff = dict(step=s, layer=key[0], head=key[1], count_a=len(la),
                                        count_b=len(lb),
                                        a=[list(e[:3]) for e in la[:10]],
                                        b=[list(e[:3]) for e in lb[:10]])
        per_step.append(dict(step=s, kept_sets_identical=s_same, cells=L * H,
                             jaccard_mean=s_jac_sum / (L * H), jaccard_min=s_jac_min,
                             token_a=ta[s], token_b=tb[s]))
    upto = S if first_tok_diff is None else first_tok_diff
    pre = per_step[:upto]  # steps whose inputs were the same on both sides
    pre_cells = sum(x["cells"] for x in pre)
    d_top1 = [abs(A["top1"][s] - B["top1"][s]) for s in range(upto)]
    identical = (cells > 0 and same_sets == cells and same_bits == cells and
                 same_events == cells and first_tok_diff is None)
    res.update(
        steps=S, steps_a=len(ta), steps_b=len(tb), layers=L, heads=H, prompt_tokens=P,
        cells=cells, kept_sets_identical=same_sets,
        kept_sets_identical_pct=100.0 * same_sets / cells if cells else 0.0,
        jaccard_mean=jac_sum / cells if cells else 0.0, jaccard_min=jac_min,
        quantising=quantising, bits_identical=same_bits,
        bits_identical_pct=100.0 * same_bits / cells if cells else 0.0,
        event_lists_identical=same_events,
        event_lists_identical_pct=100.0 * same_events / cells if cells else 0.0,
        events_a=n_events_a, events_b=n_events_b,
        tokens_identical=first_tok_diff is None, first_token_diff_step=first_tok_diff,
        tokens_a=ta, tokens_b=tb,
        top1_logprob_max_abs_diff=max(d_top1) if d_top1 else 0.0,
        before_token_divergence=dict(
            steps=upto,
            kept_sets_identical_pct=(100.0 * sum(x["kept_sets_identical"] for x in pre) /
                                     pre_cells if pre_cells else None),
            jaccard_mean=(sum(x["jaccard_mean"] * x["cells"] for x in pre) / pre_cells
                          if pre_cells else None),
            jaccard_min=min((x["jaccard_min"] for x in pre), default=None)),
        first_kept_set_diff=first_set_diff, first_event_diff=first_event_diff,
        identical=identical, per_step=per_step)
    return res


def table(rows, a):
    out = [f"Backend parity: A = {a.a}{fmt_env(a.env_a)}, B = {a.b}{fmt_env(a.env_b)}; "
           f"niah prompt {a.length} tokens, {a.max_new} decode steps, ratio {a.ratio}",
           "",
           "| policy | steps | kept sets identical % | mean / min Jaccard | bits identical % "
           "| events identical | tokens identical | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            last = [ln for ln in r["error"].splitlines() if ln.strip()][-1]
            out.append(f"| {r['policy']} | - | - | - | - | - | - | ERROR: "
                       f"{last[:100].replace('|', '/')} |")
            continue
        if r.get("shape_mismatch"):
            out.append(f"| {r['policy']} | - | - | - | - | - | - | shapes differ: {r['detail']} |")
            continue
        bits = f"{r['bits_identical_pct']:.1f}" if r["quantising"] else "n/a"
        ev = ("yes" if r["event_lists_identical"] == r["cells"] else
              f"no ({r['event_lists_identical_pct']:.1f}% of lists; "
              f"{r['events_a']} vs {r['events_b']} events)")
        tok = ("yes" if r["tokens_identical"] else
               f"no (from step {r['first_token_diff_step']})")
        out.append(f"| {r['policy']} | {r['steps']} | {r['kept_sets_identical_pct']:.1f} | "
                   f"{r['jaccard_mean']:.4f} / {r['jaccard_min']:.4f} | {bits} | {ev} | {tok} | "
                   f"{'identical' if r['identical'] else 'differs'} |")
    return "\n".join(out)


def fmt_env(env):
    return " (" + " ".join(f"{k}={v}" for k, v in env.items()) + ")" if env else ""


def main():
    ap = argparse.ArgumentParser(
        description="Compare the traces of every KV-cache policy run on two backends "
                    "(kept sets, bits, events, tokens).")
    ap.add_argument("--kvscope", default=os.environ.get("KVSCOPE") or
                    os.path.join(ROOT, "build", "app", "cli", "kvscope"),
                    help="kvscope binary (default: $KVSCOPE, else build/app/cli/kvscope)")
    ap.add_argument("--model", default=os.path.join(ROOT, "resources", "models", "kvscope-demo"))
    ap.add_argument("--a", default="cpu", choices=["cpu", "cuda", "auto"], help="backend A")
    ap.add_argument("--b", default="cuda", choices=["cpu", "cuda", "auto"], help="backend B")
    ap.add_argument("--env-a", action="append", default=[], metavar="KEY=VALUE",
                    help="environment for the A runs (repeatable)")
    ap.add_argument("--env-b", action="append", default=[], metavar="KEY=VALUE",
                    help="environment for the B runs (repeatable), e.g. KVSCOPE_CUDA_MATH=fp32")
    ap.add_argument("--policies", default=",".join(p for p, _ in POLICIES),
                    help="comma-separated subset of the policies")
    ap.add_argument("--length", type=int, default=512, help="prompt tokens (niah scenario)")
    ap.add_argument("--depth", type=float, default=0.5, help="needle depth")
    ap.add_argument("--max-new", type=int, default=24, help="decode steps (tokens generated)")
    ap.add_argument("--ratio", type=float, default=0.25, help="budget as a fraction of the prompt")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (kvscope --threads)")
    ap.add_argument("--json", default=None, help="write the full comparison here")
    ap.add_argument("--keep", default=None, metavar="DIR",
                    help="record the traces and CSVs into DIR and keep them (default: a "
                         "temporary folder, removed)")
    ap.add_argument("--expect-identical", action="store_true",
                    help="exit 1 unless every policy is identical on both backends")
    a = ap.parse_args()

    env_a, env_b = parse_env(a.env_a, "--env-a"), parse_env(a.env_b, "--env-b")
    a.env_a, a.env_b = env_a, env_b
    known = dict(POLICIES)
    chosen = [p.strip() for p in a.policies.split(",") if p.strip()]
    bad = [p for p in chosen if p not in known]
    if bad or not chosen:
        return usage_error(f"unknown policies {bad}; known: {', '.join(known)}")
    if a.length < 64 or a.max_new < 1 or not 0 < a.ratio <= 1:
        return usage_error("need --length >= 64, --max-new >= 1, 0 < --ratio <= 1")
    if not (os.path.isfile(a.kvscope) and os.access(a.kvscope, os.X_OK)):
        return usage_error(f"kvscope binary not found or not executable: {a.kvscope} "
                           "(build it: cmake --build build --target kvscope, or pass --kvscope / "
                           "set $KVSCOPE)")
    if not os.path.isfile(os.path.join(a.model, "config.json")):
        return usage_error(f"model not found: {a.model} (no config.json); pass --model")
    a.model = os.path.abspath(a.model)
    a.kvscope = os.path.abspath(a.kvscope)

    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
        workdir, cleanup = os.path.abspath(a.keep), None
    else:
        workdir = tempfile.mkdtemp(prefix="kvscope-parity-")
        cleanup = workdir
    rows, failed_runs = [], 0
    t_start = time.time()
    try:
        for policy in chosen:
            extra = known[policy]
            row = dict(policy=policy, args=extra + ([] if policy in NO_RATIO else
                                                    ["--ratio", str(a.ratio)]))
            try:
                dir_a, sec_a = record(a, policy, extra, a.a, env_a, workdir, "A")
                dir_b, sec_b = record(a, policy, extra, a.b, env_b, workdir, "B")
                row.update(compare(load(dir_a), load(dir_b)), seconds_a=sec_a, seconds_b=sec_b)
            except (RunError, OSError, KeyError, ValueError) as e:
                failed_runs += 1
                row.update(error=str(e), identical=False)
                print(f"[{policy}] {e}", file=sys.stderr)
            rows.append(row)
            verdict = ("error" if "error" in row else
                       "identical" if row.get("identical") else "differs")
            print(f"[{policy}] {verdict} "
                  f"({time.time() - t_start:.0f} s)", file=sys.stderr)
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)

    print(table(rows, a))
    n_diff = sum(not r.get("identical") for r in rows)
    summary = dict(a=a.a, b=a.b, env_a=env_a, env_b=env_b, model=a.model, kvscope=a.kvscope,
                   length=a.length, depth=a.depth, max_new=a.max_new, ratio=a.ratio,
                   expect_identical=a.expect_identical, policies_differing=n_diff,
                   runs_failed=failed_runs, seconds=time.time() - t_start, policies=rows)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)
    print(f"\n{len(rows) - n_diff}/{len(rows)} policies identical; {failed_runs} failed runs; "
          f"{time.time() - t_start:.0f} s")
    if failed_runs or (a.expect_identical and n_diff):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
