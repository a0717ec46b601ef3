#!/usr/bin/env python3
"""tools/train_demo/eval_tables.py on real `kvscope eval needles --details` output: the bundled
demo model, 256-token prompts, both splits, depths 0 and 1, 2 trials a cell (8 prompts, ~2 s).
Every table's "all" column must equal the correct / total that `kvscope eval --json` reports per
split, each depth / length / value-kind row must sum to it, and a file that is not a details CSV
is refused with its name.

Usage: eval_tables_test.py --kvscope build/app/cli/kvscope --root SOURCE_DIR --workdir DIR
"""
import argparse
import json
import os
import re
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvscope", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    stem = os.path.join(a.workdir, "full")
    details = stem + "_details.csv"
    for p in (details, stem + ".csv"):
        if os.path.exists(p):
            os.remove(p)
    r = subprocess.run([a.kvscope, "eval", "needles", "--model",
                        os.path.join(a.root, "resources/models/kvscope-demo"), "--split",
                        "train,heldout", "--lengths", "256", "--depths", "0,1", "--trials", "2",
                        "--quiet", "--json", "--csv", stem + ".csv", "--details", details],
                       capture_output=True, text=True, check=True)
    with open(stem + ".json", "w", encoding="utf-8") as f:
        f.write(r.stdout)
    splits = json.loads(r.stdout)["splits"]
    tool = os.path.join(a.root, "tools/train_demo/eval_tables.py")
    out = subprocess.run([sys.executable, tool, "--templates",
                          os.path.join(a.root, "resources/needles/templates.json"), details],
                         capture_output=True, text=True, check=True).stdout
    print(out)
    tables = out.split("**")[1::2]
    assert tables == ["By depth", "By context length (tokens)",
                      "By value kind of the asked template"], tables
    rows = [line for line in out.splitlines() if line.startswith("| train |")
            or line.startswith("| heldout |")]
    assert len(rows) == 6, rows  # 3 tables x 2 splits, one policy
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        split, policy, parts, total = cells[0], cells[1], cells[2:-1], cells[-1]
        assert policy == "full", line
        ok, n = map(int, re.match(r"(\d+)/(\d+)", total).groups())
        want = splits[split]
        assert (ok, n) == (want["correct"], want["total"]), (line, want)
        got = [tuple(map(int, p.split("/"))) for p in parts if p]
        assert (sum(g[0] for g in got), sum(g[1] for g in got)) == (ok, n), line
    # A file that is not a details CSV: exit status non-zero, its name in the message.
    bad = subprocess.run([sys.executable, tool, "--templates",
                          os.path.join(a.root, "resources/needles/templates.json"),
                          stem + ".json"], capture_output=True, text=True)
    assert bad.returncode != 0 and (stem + ".json") in bad.stderr, (bad.returncode, bad.stderr)
    print("eval_tables: ok")


if __name__ == "__main__":
    main()
