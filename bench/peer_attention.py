#!/usr/bin/env python3
"""The peer of bench_cuda_attention: torch's scaled_dot_product_attention (bf16, causal, GQA) on
the same shape, timed with CUDA events (median of --reps after one warm-up). It computes out only
(no LSE handed back, no column sums, no window rows): the line to compare with is
bench_cuda_attention's "forward". Prints one JSON line per backend torch offers (flash, cuDNN,
efficient), skipping those that refuse the shape.

  python3 bench/peer_attention.py [--n 32768] [--heads 32] [--kv-heads 8] [--dim 128] [--reps 5]
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32768)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not torch.cuda.is_available():
        print("peer_attention: no CUDA device", file=sys.stderr)
        return 1
    n, H, G, d = args.n, args.heads, args.kv_heads, args.dim
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, H, n, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(1, G, n, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(1, G, n, d, device="cuda", dtype=torch.bfloat16, generator=gen)
    logits = H * n * (n + 1) / 2
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION)]:
        try:
            with sdpa_kernel(backend):
                def f():
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                          enable_gqa=True)
                f()
                torch.cuda.synchronize()
                times = []
                for _ in range(args.reps):
                    a = torch.cuda.Event(enable_timing=True)
                    b = torch.cuda.Event(enable_timing=True)
                    a.record()
                    f()
                    b.record()
                    b.synchronize()
                    times.append(a.elapsed_time(b))
        except RuntimeError as e:
            print(json.dumps({"peer": "torch sdpa " + name, "skipped": str(e).splitlines()[0][:200]}))
            continue
        times.sort()
        ms = times[len(times) // 2]
        print(json.dumps({"peer": "torch sdpa " + name, "device": torch.cuda.get_device_name(0),
                          "torch": torch.__version__, "n": n, "heads": H, "kv_heads": G,
                          "dim": d, "ms": round(ms, 3),
                          "tflops": round(4 * d * logits / (ms * 1e-3) / 1e12, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
