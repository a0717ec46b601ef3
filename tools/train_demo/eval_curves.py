#!/usr/bin/env python3
"""Accuracy curves (SVG) of `kvscope eval` grids: for each split, accuracy against needle depth
(pooled over context lengths) and against context length (pooled over depths), one line per
(policy, budget). Standard library only; the output is deterministic (same input, same bytes).

Each argument is a grid CSV (`kvscope eval ... --csv FILE`: task, policy, budget, ratio, length,
depth, trials, correct, accuracy, split). Cells of several files for the same (split, policy,
budget) are pooled, so a grid run length by length (or on two machines) reads as one. Each point
is drawn at correct / trials of its pooled cells and carries them as data attributes
(`data-correct`, `data-trials`), so a reader or a test can check a curve without rendering it.

Writes OUT/<split>_by_depth.svg and OUT/<split>_by_length.svg (split "" -> "all") and prints
their names. Exit 1 with the file's name when an input is not a grid CSV.

Usage: eval_curves.py --out DIR [--title TEXT] GRID.csv...
"""
import argparse
import collections
import csv
import os
import sys
from xml.sax.saxutils import escape

GRID_COLUMNS = {"task", "policy", "budget", "ratio", "length", "depth", "trials", "correct",
                "split"}
# Colour-blind-safe line colours (Okabe-Ito order), then grey; full cache is always black.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#999999"]
W, H = 640, 340                 # canvas (px)
LEFT, RIGHT, TOP, BOTTOM = 56, 230, 36, 48  # plot margins; the legend sits in the right one
NAMES = {"full": "full cache", "snapkv": "SnapKV", "h2o": "H2O", "tova": "TOVA",
         "streaming_llm": "StreamingLLM", "pyramidkv": "PyramidKV", "kivi": "KIVI", "d2o": "D2O",
         "dmc": "DMC", "dynamickv": "DynamicKV", "key_l2": "key-L2", "mikv": "MiKV"}


def read_grid(path):
    """Rows of one grid CSV as dicts of numbers; raises ValueError naming the file otherwise."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = GRID_COLUMNS - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: not a kvscope eval grid CSV (no column "
                                 f"{', '.join(sorted(missing))})")
            rows = []
            for n, r in enumerate(reader, start=2):
                try:
                    rows.append({"policy": r["policy"], "split": r["split"],
                                 "budget": int(r["budget"]), "ratio": float(r["ratio"]),
                                 "length": int(r["length"]), "depth": float(r["depth"]),
                                 "trials": int(r["trials"]), "correct": int(r["correct"])})
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{path}: line {n}: {e}") from None
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: {e}") from None


def label(policy, budget, ratio):
    name = NAMES.get(policy, policy)
    if policy == "full":
        return name
    if budget > 0:
        return f"{name} {budget} tokens"
    return f"{name} {ratio * 100:g} %"


def curves(rows, axis):
    """{split: {(policy, budget, ratio): {x: [correct, trials]}}} pooled over the other axis."""
    out = collections.defaultdict(lambda: collections.defaultdict(
        lambda: collections.defaultdict(lambda: [0, 0])))
    for r in rows:
        cell = out[r["split"]][(r["policy"], r["budget"], r["ratio"])][r[axis]]
        cell[0] += r["correct"]
        cell[1] += r["trials"]
    return out


def svg(title, xlabel, series, log_x):
    """One chart: series {(policy, budget, ratio): {x: [correct, trials]}}; x evenly spaced by
    rank (depths) or by log2 (lengths)."""
    xs = sorted({x for pts in series.values() for x in pts})
    if log_x:
        import math
        pos = {x: math.log2(x) for x in xs}
    else:
        pos = {x: float(x) for x in xs}
    lo, hi = min(pos.values()), max(pos.values())
    span = (hi - lo) or 1.0
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x):
        return LEFT + (pos[x] - lo) / span * pw if len(xs) > 1 else LEFT + pw / 2

    def py(acc):
        return TOP + (1.0 - acc) * ph

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for pct in range(0, 101, 25):  # horizontal grid and y labels
        y = py(pct / 100)
        o.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" '
                 f'stroke="#dddddd"/>')
        o.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{pct} %</text>')
    for x in xs:  # x ticks
        t = f"{x:g}" if not log_x else (f"{x // 1024}k" if x % 1024 == 0 else str(x))
        o.append(f'<line x1="{px(x):.1f}" y1="{TOP + ph}" x2="{px(x):.1f}" y2="{TOP + ph + 4}" '
                 f'stroke="black"/>')
        o.append(f'<text x="{px(x):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{t}</text>')
    o.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" '
             f'stroke="black"/>')
    o.append(f'<text x="{LEFT + pw / 2:.1f}" y="{H - 10}" text-anchor="middle">'
             f'{escape(xlabel)}</text>')
    o.append(f'<text transform="translate(14 {TOP + ph / 2:.1f}) rotate(-90)" '
             f'text-anchor="middle">accuracy (correct / trials)</text>')
    order = sorted(series, key=lambda k: (k[0] != "full", k[0], k[1], k[2]))
    colour_iter = iter(COLOURS * (1 + len(order) // len(COLOURS)))
    for i, key in enumerate(order):
        colour = "#000000" if key[0] == "full" else next(colour_iter)
        pts = series[key]
        name = label(*key)
        coords = " ".join(f"{px(x):.1f},{py(c / n):.1f}" for x, (c, n) in sorted(pts.items())
                          if n)
        o.append(f'<g class="series" data-label="{escape(name)}">')
        o.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                 f'stroke-width="2"/>')
        for x, (c, n) in sorted(pts.items()):
            if n:
                o.append(f'<circle cx="{px(x):.1f}" cy="{py(c / n):.1f}" r="3" fill="{colour}" '
                         f'data-x="{x:g}" data-correct="{c}" data-trials="{n}"/>')
        o.append("</g>")
        ly = TOP + 8 + i * 18  # legend entry
        total_c = sum(c for c, _ in pts.values())
        total_n = sum(n for _, n in pts.values())
        o.append(f'<line x1="{LEFT + pw + 12}" y1="{ly}" x2="{LEFT + pw + 30}" y2="{ly}" '
                 f'stroke="{colour}" stroke-width="2"/>')
        o.append(f'<text x="{LEFT + pw + 36}" y="{ly + 4}">{escape(name)} '
                 f'({100 * total_c / max(total_n, 1):.0f} %)</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for the SVG files")
    ap.add_argument("--title", default="", help="prefix of each chart's title")
    ap.add_argument("grids", nargs="+", help="kvscope eval --csv files")
    a = ap.parse_args()
    rows = []
    try:
        for path in a.grids:
            rows += read_grid(path)
    except ValueError as e:
        print(f"eval_curves: {e}", file=sys.stderr)
        return 1
    if not rows:
        print(f"eval_curves: no grid rows in {', '.join(a.grids)}", file=sys.stderr)
        return 1
    os.makedirs(a.out, exist_ok=True)
    prefix = f"{a.title}: " if a.title else ""
    for axis, xlabel, log_x in (("depth", "needle depth (0 = start of the prompt)", False),
                                ("length", "context length (tokens)", True)):
        for split, series in sorted(curves(rows, axis).items()):
            name = split or "all"
            path = os.path.join(a.out, f"{name}_by_{axis}.svg")
            shown = {"heldout": "held-out"}.get(split, split)
            title = f"{prefix}{shown} split, by {axis}" if split else f"{prefix}by {axis}"
            with open(path, "w", encoding="utf-8") as f:
                f.write(svg(title, xlabel, series, log_x))
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
