#!/usr/bin/env python3
"""Markdown tables of `kvscope eval needles --details` runs: correct / trials by depth, by length
and by the asked template's value kind, one row per (split, policy). Standard library only.

Each argument is a details CSV (`kvscope eval needles ... --details FILE`); the policy and ratio
come from the rows (`policy` column) and from the JSON written beside it when there is one. Rows of
several files for the same (split, policy) are pooled, so a grid run length by length reads as one.

Usage: eval_tables.py [--templates resources/needles/templates.json] DETAILS.csv...
"""
import argparse
import csv
import collections
import json
import os
import sys


def value_kinds(path):
    """template id -> value kind (number, word, name, code) from the template set."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return {t["id"]: t["value"]["kind"] for t in doc["templates"]}


def label_of(details_path, policy):
    """`policy` or `policy ratio` (the ratio from the --json output beside the details, if any)."""
    stem = details_path[:-len("_details.csv")] if details_path.endswith("_details.csv") else None
    if stem and os.path.exists(stem + ".json"):
        with open(stem + ".json", encoding="utf-8") as f:
            try:
                ratio = json.load(f).get("ratio")
            except json.JSONDecodeError:
                ratio = None
        if isinstance(ratio, (int, float)) and ratio > 0:
            return f"{policy} {ratio:g}"
    return policy


def table(title, groups, axis, keys):
    """One markdown table: rows (split, policy), columns the values of `axis`, then all."""
    cols = sorted({k for g in groups.values() for k in g[axis]}, key=keys)
    out = [f"**{title}** (correct / trials)", "",
           "| split | policy | " + " | ".join(str(c) for c in cols) + " | all |",
           "|---|---|" + "---:|" * (len(cols) + 1)]
    for (split, policy), g in sorted(groups.items()):
        cells = []
        for c in cols:
            ok, n = g[axis].get(c, (0, 0))
            cells.append(f"{ok}/{n}" if n else "")
        ok, n = g["all"]
        pct = f" ({100.0 * ok / n:.0f} %)" if n else ""
        out.append(f"| {split} | {policy} | " + " | ".join(cells) + f" | {ok}/{n}{pct} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--templates", default="resources/needles/templates.json")
    ap.add_argument("details", nargs="+")
    args = ap.parse_args()
    try:
        kinds = value_kinds(args.templates)
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"{args.templates}: not a template set ({e})")
    groups = collections.defaultdict(lambda: {"depth": {}, "length": {}, "kind": {},
                                              "all": (0, 0)})

    def add(d, key, ok):
        a, n = d.get(key, (0, 0))
        d[key] = (a + ok, n + 1)

    for path in args.details:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            sys.exit(f"{path}: {e.strerror}")
        for r in rows:
            try:
                ok = int(r["correct"])
                g = groups[(r["split"], label_of(path, r["policy"]))]
                add(g["depth"], float(r["depth"]), ok)
                add(g["length"], int(r["length"]), ok)
                add(g["kind"], kinds.get(r["template"], "?"), ok)
            except (KeyError, ValueError) as e:
                sys.exit(f"{path}: not a kvscope eval --details file ({e!r})")
            a, n = g["all"]
            g["all"] = (a + ok, n + 1)
    print(table("By depth", groups, "depth", float))
    print(table("By context length (tokens)", groups, "length", int))
    print(table("By value kind of the asked template", groups, "kind", str))


if __name__ == "__main__":
    main()
