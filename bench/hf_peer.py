#!/usr/bin/env python3
"""What a user of HF transformers gets on the same GPU and model directory as `kvscope bench`:

  1. SDPA prefill at each length (no attention statistics), ms, median of --reps;
  2. decode ms/token after a prefill of each length (greedy, KV cache, batch 1);
  3. eager attention with output_attentions=True (the only way HF users get attention statistics)
     at each length until it runs out of memory: ms, the bytes of attention returned, peak memory.

    python3 bench/hf_peer.py --model out/models/llama-3.1-8b-shape \
        --lengths 1024,8192,32768 --decode-steps 32 --json $OUT/hf_peer_8b.json

Prompts are random token ids below 8192 (seeded), as in `kvscope bench`. Timing: CUDA events
after a warm-up. cuDNN SDPA is disabled (shared docs/performance.md: with it, decode was host-bound
at ~45-50 ms/token); pass --keep-cudnn-sdp to keep it. Prints a table and writes JSON.
"""
import argparse
import json
import statistics
import sys
import time


def parse_lengths(s):
    out = [int(x) for x in s.split(",") if x.strip()]
    if not out or min(out) < 2:
        raise SystemExit("--lengths: comma-separated lengths >= 2")
    return out


def load(model_dir, attn, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn)
    except TypeError:  # transformers 4.x
        m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype,
                                                 attn_implementation=attn)
    return m.to("cuda").eval()


def cuda_ms(fn, reps):
    import torch

    times = []
    for _ in range(reps):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--lengths", default="1024,8192,32768")
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--eager-lengths", default="1024,2048,4096,8192,16384,32768",
                    help="lengths tried with eager + output_attentions, ascending, until OOM")
    ap.add_argument("--json", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep-cudnn-sdp", action="store_true")
    a = ap.parse_args()

    import torch
    import transformers

    if not torch.cuda.is_available():
        sys.exit("hf_peer.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    if not a.keep_cudnn_sdp:
        torch.backends.cuda.enable_cudnn_sdp(False)
    dev = torch.cuda.get_device_properties(0)
    info = dict(model=a.model, gpu=dev.name, torch=torch.__version__,
                transformers=transformers.__version__, cudnn_sdp=a.keep_cudnn_sdp,
                decode_steps=a.decode_steps, sdpa=[], eager=[])
    print(f"hf_peer: {a.model} on {dev.name}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")

    gen = torch.Generator().manual_seed(a.seed)

    def prompt(n, vocab):
        return torch.randint(3, min(vocab, 8192), (1, n), generator=gen).to("cuda")

    # ---- SDPA: prefill and decode --------------------------------------------------------------
    model = load(a.model, "sdpa", torch.bfloat16)
    vocab = model.config.vocab_size
    with torch.no_grad():
        model(prompt(64, vocab), use_cache=True)  # warm-up
        for n in parse_lengths(a.lengths):
            ids = prompt(n, vocab)
            row = dict(length=n)
            try:
                torch.cuda.reset_peak_memory_stats()
                row["prefill_ms"] = cuda_ms(lambda: model(ids, use_cache=True), a.reps)
                out = model(ids, use_cache=True)
                pkv = out.past_key_values
                nxt = out.logits[:, -1:].argmax(-1)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                e0 = torch.cuda.Event(enable_timing=True)
                e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(a.decode_steps):
                    out = model(nxt, past_key_values=pkv, use_cache=True)
                    pkv = out.past_key_values
                    nxt = out.logits[:, -1:].argmax(-1)
                e1.record()
                torch.cuda.synchronize()
                row["decode_ms_per_token"] = e0.elapsed_time(e1) / a.decode_steps
                row["decode_wall_ms_per_token"] = (time.perf_counter() - t0) * 1e3 / a.decode_steps
                row["peak_bytes"] = torch.cuda.max_memory_allocated()
                del out, pkv
            except torch.cuda.OutOfMemoryError:
                row["error"] = "out of memory"
            torch.cuda.empty_cache()
            info["sdpa"].append(row)
            print(f"  sdpa   {n:7d}: prefill {row.get('prefill_ms', float('nan')):9.1f} ms, "
                  f"decode {row.get('decode_ms_per_token', float('nan')):7.2f} ms/token, "
                  f"peak {row.get('peak_bytes', 0) / 2**30:6.1f} GiB {row.get('error', '')}",
                  flush=True)
    del model
    torch.cuda.empty_cache()

    # ---- eager + output_attentions, until OOM ----------------------------------------------------
    model = load(a.model, "eager", torch.bfloat16)
    with torch.no_grad():
        for n in parse_lengths(a.eager_lengths):
            ids = prompt(n, vocab)
            row = dict(length=n)
            try:
                torch.cuda.reset_peak_memory_stats()

                def run():
                    o = model(ids, use_cache=False, output_attentions=True)
                    row["attention_bytes"] = sum(t.numel() * t.element_size() for t in o.attentions)
                    return o

                row["prefill_ms"] = cuda_ms(run, 1)
                row["peak_bytes"] = torch.cuda.max_memory_allocated()
            except torch.cuda.OutOfMemoryError:
                row["error"] = "out of memory"
            torch.cuda.empty_cache()
            info["eager"].append(row)
            print(f"  eager  {n:7d}: {row.get('prefill_ms', float('nan')):9.1f} ms, attention "
                  f"{row.get('attention_bytes', 0) / 2**30:7.2f} GiB, peak "
                  f"{row.get('peak_bytes', 0) / 2**30:6.1f} GiB {row.get('error', '')}", flush=True)
            if "error" in row:
                break

    print("\n| length | SDPA prefill ms | decode ms/token | eager+attn ms | attentions GiB |")
    print("|---:|---:|---:|---:|---:|")
    eager = {r["length"]: r for r in info["eager"]}
    for r in info["sdpa"]:
        e = eager.get(r["length"], {})
        em = "OOM" if "error" in e else (f"{e['prefill_ms']:.1f}" if e else "-")
        eb = f"{e['attention_bytes'] / 2**30:.2f}" if "attention_bytes" in e else "-"
        print(f"| {r['length']} | {r.get('prefill_ms', float('nan')):.1f} | "
              f"{r.get('decode_ms_per_token', float('nan')):.2f} | {em} | {eb} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(info, f, indent=2)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
