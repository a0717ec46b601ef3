#!/usr/bin/env python3
"""Independent reference of KVScope's score-based policies, for the agreement test.

Written from the policy specification (shared docs/policies.md and the comment blocks at the top of
core/policies/<policy>.cpp), NOT from the C++ code. For every fixture model in tests/golden/models it
runs HF transformers (fp32, eager attention, CPU) on a fixed prompt, takes the prompt statistics the
policies decide from, and computes the token sets each policy keeps after the prompt, per
(layer, KV head). It writes, per variant, tests/golden/policy_ref/<variant>.json with

  the statistics used:   colsum [L][H][N] (fp32 column sums of the prompt attention),
                         window [L][H][W][N] (the last W prompt attention rows),
                         key_norm [L][H_kv][N] (||k|| of the post-RoPE cached keys, fp32)
  cases:                 policy, budget, params ("key=value" strings as the CLI takes them),
                         kept [L][H_kv][indices ascending]
  ref_prompt_cases:      the same for the fixture prompt tests/golden/ref/<variant>.json
                         prompts[1], for the policies that need only column sums / last rows
                         (h2o, tova), so the C++ test can also feed the recorded HF attention.

The C++ test (tests/policies/policy_reference_test.cpp) feeds exactly these statistics to our
policies and requires identical kept sets. For decode-continuous policies (h2o, tova,
streaming_llm) what is compared is the one-shot compression after the prompt.

Numerics convention shared with core/policies/selection.h (so that exact comparison is
meaningful): scores in float64 from the fp32 statistics; sums in increasing index order (window
rows, then query heads); mean = that sum / count; ties in a ranking go to the lower index.

Run on the GPU machine (torch, transformers, safetensors), from the repository root:
    python3 tools/golden/policy_reference.py --out tests/golden/policy_ref
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

VARIANTS = ["llama2", "llama3_tied", "mistral_gqa4", "qwen2_bias", "qwen3_qknorm",
            "llama_headdim_sharded", "llama_sp"]
PROMPT_LEN = 96
WINDOW_ROWS = 32  # the largest observation window any case uses


# ---- selection helpers (float64, deterministic ties) -----------------------------------------

def ranked(scores, candidates, highest=True):
    """Candidates best first; ties to the lower index."""
    if highest:
        return sorted(candidates, key=lambda i: (-scores[i], i))
    return sorted(candidates, key=lambda i: (scores[i], i))


def top_k(scores, k, candidates):
    return sorted(ranked(scores, candidates)[:max(k, 0)])


def bottom_k(scores, k, candidates):
    return sorted(ranked(scores, candidates, highest=False)[:max(k, 0)])


def aggregate(per_q, mode):
    out = per_q[0].copy()
    for a in per_q[1:]:
        out = np.maximum(out, a) if mode == "max" else out + a
    if mode != "max":
        out = out / float(len(per_q))
    return out


def select_gqa(per_q, mode, k, candidates):
    """mean / max: one ranking of the aggregated score. per_query_head: round-robin union of the
    query heads' own rankings (rank 0 of head 0, rank 0 of head 1, ..., skipping taken slots)."""
    if mode != "per_query_head":
        return top_k(aggregate(per_q, mode), k, candidates)
    ranks = [ranked(s, candidates) for s in per_q]
    want = min(max(k, 0), len(candidates))
    taken, out = set(), []
    for r in range(len(candidates)):
        for q in range(len(per_q)):
            if len(out) >= want:
                break
            i = ranks[q][r]
            if i not in taken:
                taken.add(i)
                out.append(i)
    return sorted(out)


def pool(s, kernel, kind):
    if kind == "none" or kernel <= 1:
        return s
    n, p = len(s), kernel // 2
    if kind == "max":
        out = np.full(n, -np.inf)
    else:
        out = np.zeros(n)
    for off in range(-p, p + 1):  # increasing source index for every output j
        lo, hi = max(0, -off), min(n, n - off)
        if kind == "max":
            out[lo:hi] = np.maximum(out[lo:hi], s[lo + off:hi + off])
        else:
            out[lo:hi] = out[lo:hi] + s[lo + off:hi + off]
    return out if kind == "max" else out / float(kernel)


# ---- the policies, from the spec ----------------------------------------------------------------

def group_rows(arr_h, g, kv):
    """Query heads of KV head kv (HF repeat_kv: query head h uses KV head h // g)."""
    return [arr_h[kv * g + q] for q in range(g)]


def snap_keep(window_h, n, w, kernel, kind, gqa, k):
    """window_h: per query head of the group, array [W, N] (W >= w)."""
    if w >= n or n <= k + w:
        return list(range(n))
    per_q = []
    for rows in window_h:
        s = rows[rows.shape[0] - w].astype(np.float64)[:n - w].copy()
        for i in range(rows.shape[0] - w + 1, rows.shape[0]):
            s = s + rows[i][:n - w].astype(np.float64)
        per_q.append(pool(s, kernel, kind))
    keep = select_gqa(per_q, gqa, k, list(range(n - w))) if k > 0 else []
    return sorted(set(keep) | set(range(n - w, n)))


def pyramid_counts(C, w, N, L, beta):
    """Per-layer selection counts (window excluded), KVCache-Factory integer arithmetic."""
    if N < 2 * (C - w) or L <= 1:
        return [C - w] * L
    k_top = (C - w) // beta
    k_bottom = 2 * (C - w) - k_top
    if k_bottom >= N - w:
        k_bottom = N - w
        k_top = 2 * (C - w) - k_bottom
    steps = (k_bottom - k_top) // (L - 1)
    return [max(0, k_bottom - l * steps) for l in range(L)]


def run_policy(name, C, params, st):
    """Kept sets [L][H_kv][...] after the prompt. st: statistics dict (numpy, see main)."""
    L, H, Hkv, N = st["L"], st["H"], st["Hkv"], st["N"]
    g = H // Hkv
    kept = []
    if name == "pyramidkv":
        w = min(int(params["window"]), C)
        counts = pyramid_counts(C, w, N, L, int(params["beta"]))
    for l in range(L):
        layer = []
        if name == "tova":
            mode = params.get("gqa", "mean")
            rows = [st["last_row"][l][h].astype(np.float64) for h in range(H)]
            if mode == "per_kv_head":
                for kv in range(Hkv):
                    s = aggregate(group_rows(rows, g, kv), "mean")
                    layer.append(top_k(s, C, list(range(N))) if N > C else list(range(N)))
            else:
                s = aggregate(rows, "max" if mode == "max" else "mean")
                keep = top_k(s, C, list(range(N))) if N > C else list(range(N))
                layer = [keep for _ in range(Hkv)]
            kept.append(layer)
            continue
        for kv in range(Hkv):
            if name == "streaming_llm":
                s = min(int(params["sinks"]), C)
                keep = list(range(N)) if N <= C else sorted(set(range(s)) | set(range(N - (C - s), N)))
            elif name == "h2o":
                if N <= C:
                    keep = list(range(N))
                else:
                    R = int(math.floor(C * float(params["recent_ratio"]) + 1e-9))
                    per_q = [x.astype(np.float64) for x in group_rows(st["colsum"][l], g, kv)]
                    keep = sorted(set(select_gqa(per_q, params["gqa"], C - R, list(range(N - R))))
                                  | set(range(N - R, N)))
            elif name == "knorm":
                skip = [int(x) for x in params["skip_layers"].split(",") if x != ""]
                if l in skip or N <= C:
                    keep = list(range(N))
                else:
                    keep = bottom_k(st["key_norm"][l][kv].astype(np.float64), C, list(range(N)))
            elif name == "snapkv":
                w = min(int(params["window"]), C)
                keep = list(range(N)) if N <= C else snap_keep(
                    group_rows(st["window"][l], g, kv), N, w, int(params["kernel"]), params["pool"],
                    params["gqa"], C - w)
            elif name == "pyramidkv":
                kl = counts[l]
                if N < C or N <= kl + w:
                    keep = list(range(N))
                else:
                    keep = snap_keep(group_rows(st["window"][l], g, kv), N, w, int(params["kernel"]),
                                     params["pool"], params["gqa"], kl)
            else:
                raise ValueError(name)
            layer.append(keep)
        kept.append(layer)
    return kept


# (policy, budget, params) compared on the fixed prompt. Params are the CLI's key=value strings;
# every parameter a policy reads is given explicitly so that defaults cannot drift silently.
CASES = [
    ("streaming_llm", 24, {"sinks": "4"}),
    ("streaming_llm", 40, {"sinks": "0"}),
    ("h2o", 32, {"recent_ratio": "0.5", "gqa": "mean"}),
    ("h2o", 24, {"recent_ratio": "0.25", "gqa": "max"}),
    ("h2o", 32, {"recent_ratio": "0.5", "gqa": "per_query_head"}),
    ("tova", 32, {"gqa": "mean"}),
    ("tova", 20, {"gqa": "max"}),
    ("tova", 32, {"gqa": "per_kv_head"}),
    ("snapkv", 32, {"window": "8", "kernel": "7", "pool": "max", "gqa": "mean"}),
    ("snapkv", 40, {"window": "16", "kernel": "5", "pool": "avg", "gqa": "mean"}),
    ("snapkv", 48, {"window": "32", "kernel": "7", "pool": "max", "gqa": "max"}),
    ("snapkv", 32, {"window": "8", "kernel": "7", "pool": "avg", "gqa": "per_query_head"}),
    ("pyramidkv", 24, {"beta": "20", "window": "8", "kernel": "7", "pool": "max", "gqa": "mean"}),
    ("pyramidkv", 48, {"beta": "20", "window": "8", "kernel": "7", "pool": "max", "gqa": "mean"}),
    ("pyramidkv", 40, {"beta": "4", "window": "8", "kernel": "5", "pool": "avg", "gqa": "max"}),
    ("knorm", 32, {"skip_layers": ""}),
    ("knorm", 48, {"skip_layers": "0"}),
]
REF_PROMPT_CASES = [
    ("h2o", 12, {"recent_ratio": "0.5", "gqa": "mean"}),
    ("tova", 12, {"gqa": "mean"}),
]


def layer_keys(cache, l):
    """Post-RoPE keys [1, H_kv, N, d] of layer l from an HF cache object (v5 or v4 layout)."""
    if hasattr(cache, "layers"):
        return cache.layers[l].keys
    if hasattr(cache, "key_cache"):
        return cache.key_cache[l]
    return cache[l][0]


@torch.no_grad()
def statistics(model, ids):
    x = torch.tensor([ids])
    res = model(x, output_attentions=True, use_cache=True)
    attn = [a[0].float() for a in res.attentions]  # [H, N, N] per layer
    st = {
        "colsum": [[h.sum(0).numpy() for h in a] for a in attn],
        "last_row": [[h[-1].numpy() for h in a] for a in attn],
        "window": [[h[-min(WINDOW_ROWS, h.shape[0]):].numpy() for h in a] for a in attn],
        "key_norm": [layer_keys(res.past_key_values, l)[0].float().norm(dim=-1).numpy()
                     for l in range(len(attn))],
    }
    st["L"] = len(attn)
    st["H"] = attn[0].shape[0]
    st["Hkv"] = st["key_norm"][0].shape[0]
    st["N"] = len(ids)
    return st


def tolist(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).reshape(-1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default=os.path.join("tests", "golden", "models"))
    ap.add_argument("--refs", default=os.path.join("tests", "golden", "ref"))
    args = ap.parse_args()
    import transformers
    os.makedirs(args.out, exist_ok=True)
    torch.set_grad_enabled(False)
    summary = []
    for variant in VARIANTS:
        mdir = os.path.join(args.models, variant)
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        cls = getattr(transformers, cfg["architectures"][0])
        try:
            model = cls.from_pretrained(mdir, dtype=torch.float32, attn_implementation="eager").eval()
        except TypeError:
            model = cls.from_pretrained(mdir, torch_dtype=torch.float32, attn_implementation="eager").eval()
        gen = torch.Generator().manual_seed(4242)
        ids = torch.randint(3, cfg["vocab_size"], (PROMPT_LEN,), generator=gen).tolist()
        st = statistics(model, ids)
        out = {
            "variant": variant, "torch": torch.__version__, "transformers": transformers.__version__,
            "ids": ids, "n_layers": st["L"], "n_heads": st["H"], "n_kv_heads": st["Hkv"],
            "prompt_len": st["N"], "window_rows": int(st["window"][0][0].shape[0]),
            "colsum": [[tolist(h) for h in layer] for layer in st["colsum"]],
            "window": [[tolist(h) for h in layer] for layer in st["window"]],
            "key_norm": [[tolist(h) for h in layer] for layer in st["key_norm"]],
            "cases": [], "ref_prompt_cases": [],
        }
        for name, C, params in CASES:
            kept = run_policy(name, C, params, st)
            out["cases"].append({"policy": name, "budget": C,
                                 "params": [f"{k}={v}" for k, v in params.items()], "kept": kept})
            summary.append((variant, name, C, sum(len(h) for layer in kept for h in layer)))
        ref = json.load(open(os.path.join(args.refs, variant + ".json")))
        rids = ref["prompts"][1]["ids"]
        rst = statistics(model, rids)
        for name, C, params in REF_PROMPT_CASES:
            kept = run_policy(name, C, params, rst)
            out["ref_prompt_cases"].append({"policy": name, "budget": C, "prompt_index": 1,
                                            "params": [f"{k}={v}" for k, v in params.items()],
                                            "kept": kept})
        with open(os.path.join(args.out, variant + ".json"), "w") as f:
            json.dump(out, f)
        print(f"{variant}: {len(out['cases'])} cases + {len(out['ref_prompt_cases'])} on the "
              f"fixture prompt", flush=True)
    for row in summary:
        print(*row)


if __name__ == "__main__":
    sys.exit(main())
