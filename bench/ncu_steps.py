#!/usr/bin/env python3
"""Per-kernel device time of a decode step, from an `ncu --csv` run of `kvscope bench`.

Usage (GPU machine):
  ncu --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv --cache-control none \
      --clock-control none kvscope bench ... --decode-steps 3 > ncu.csv
  python3 bench/ncu_steps.py ncu.csv [--steps 2]

Steps are split at the embedding kernel (each forward call launches it first); the last --steps
segments are decode steps. Prints, per kernel name: launches per step, device us per step and
the bandwidth its DRAM reads reached, and the sum against the step's wall time from kvscope.
"""
import argparse
import csv
import collections
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args()
    rows = collections.OrderedDict()  # ID -> {name, metrics}
    with open(a.csv, newline="") as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        kid = r.get("ID")
        if kid is None or not kid.isdigit():
            continue
        e = rows.setdefault(int(kid), {"name": r["Kernel Name"], "m": {}})
        try:
            v = float(r["Metric Value"].replace(",", ""))
        except ValueError:
            continue
        unit = r.get("Metric Unit", "")
        name = r["Metric Name"]
        if name.startswith("gpu__time_duration"):
            v *= {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0}.get(unit, 1e-3)
        elif name.startswith("dram__bytes"):
            v *= {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}.get(unit, 1)
        e["m"][name] = v
    ids = sorted(rows)
    starts = [i for i in ids if "embed" in rows[i]["name"].lower()]
    if len(starts) < a.steps + 1:
        print(f"only {len(starts)} embedding launches found", file=sys.stderr)
        return 1
    segs = []
    for s in range(len(starts) - a.steps, len(starts)):
        lo = starts[s]
        hi = starts[s + 1] if s + 1 < len(starts) else ids[-1] + 1
        segs.append([i for i in ids if lo <= i < hi])
    agg = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for seg in segs:
        for i in seg:
            k = rows[i]["name"].split("(")[0][:70]
            d = agg[k]
            d[0] += 1
            d[1] += rows[i]["m"].get("gpu__time_duration.sum", 0.0)
            d[2] += rows[i]["m"].get("dram__bytes_read.sum", 0.0)
    n = len(segs)
    tot = sum(v[1] for v in agg.values()) / n
    print(f"decode step, {n} steps averaged: {sum(len(s) for s in segs) / n:.0f} kernels, "
          f"{tot:.0f} us of kernel time per step")
    print(f"{'kernel':70s} {'n/step':>7s} {'us/step':>9s} {'us/call':>8s} {'GB/s':>7s}")
    for k, v in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        us = v[1] / n
        gbs = v[2] / v[1] / 1e3 if v[1] else 0.0
        print(f"{k:70s} {v[0] / n:7.0f} {us:9.1f} {v[1] / v[0]:8.2f} {gbs:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
