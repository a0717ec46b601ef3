#!/usr/bin/env python3
"""Where a profiled kernel's warps wait, from two ncu exports of one report (stage ncu-attn):

    ncu_stalls.py RAW.csv SASS.csv

RAW.csv  = `ncu --import R --page raw --csv`: every stall reason's warps per issued instruction
           and the pipes' utilisation, largest first.
SASS.csv = `ncu --import R --page source --print-source sass --csv`: the 40 SASS instructions
           with the most stall samples, each with its three largest reasons.
Column names differ between ncu versions, so both are matched by pattern; what is not found is
said, not guessed.
"""
import csv
import re
import sys


def number(text):
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return None


def rows_of(path):
    with open(path, newline="", errors="replace") as f:
        # ncu may print "==PROF==" lines before the table.
        lines = [ln for ln in f if not ln.startswith("==")]
    return list(csv.reader(lines))


def raw_summary(path):
    rows = rows_of(path)
    if len(rows) < 3:
        print(f"{path}: no metric rows")
        return
    head, values = rows[0], rows[-1]  # row 1: units; the last row: the profiled launch
    stall = re.compile(r"smsp__average_warps?_issue_stalled_(\w+?)_per_issue_active\.ratio$")
    found = []
    for name, val in zip(head, values):
        m = stall.match(name)
        v = number(val)
        if m and v is not None:
            found.append((v, m.group(1)))
    print("stall reasons (warps per issued instruction):")
    for v, name in sorted(found, reverse=True)[:14]:
        print(f"  {name:28s} {v:8.3f}")
    if not found:
        print("  (no smsp__average_warp*_issue_stalled_* metric in this ncu's raw page)")
    pipes = []
    for name, val in zip(head, values):
        v = number(val)
        if v is not None and "pipe" in name and name.endswith("pct_of_peak_sustained_active"):
            pipes.append((v, name))
    print("pipes (% of peak, active cycles):")
    for v, name in sorted(pipes, reverse=True)[:12]:
        print(f"  {name:78s} {v:6.1f}")


def sass_summary(path):
    rows = rows_of(path)
    # ncu 2025+ puts a "Kernel Name" line above the table's header (whose first cell is Address).
    start = next((i for i, r in enumerate(rows) if r and r[0] == "Address"), 0)
    rows = rows[start:]
    if len(rows) < 2:
        print(f"{path}: no source rows")
        return
    head = rows[0]
    col = {name: i for i, name in enumerate(head)}
    total = next((i for n, i in col.items() if n.startswith("Warp Stall Sampling (All")), None)
    src = next((i for n, i in col.items() if n == "Source"), None)
    if total is None or src is None:
        print(f"{path}: no 'Warp Stall Sampling (All Samples)' / 'Source' column; columns: "
              + ", ".join(head[:30]))
        return
    reasons = [(n, i) for n, i in col.items()
               if n.startswith("stall_") or ("Stall" in n and not n.startswith("Warp Stall Sampling"))]
    body = [r for r in rows[1:] if len(r) == len(head) and number(r[total]) is not None]
    grand = sum(number(r[total]) for r in body) or 1.0
    print(f"SASS lines by stall samples ({len(body)} lines, {grand:.0f} samples):")
    for r in sorted(body, key=lambda r: -number(r[total]))[:40]:
        top = sorted(((number(r[i]) or 0.0, n) for n, i in reasons), reverse=True)[:3]
        why = ", ".join(f"{n} {v:.0f}" for v, n in top if v > 0)
        print(f"  {100 * number(r[total]) / grand:5.1f}%  {r[src].strip()[:70]:70s} {why}")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    raw_summary(sys.argv[1])
    sass_summary(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
