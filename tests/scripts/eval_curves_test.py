#!/usr/bin/env python3
"""tools/train_demo/eval_curves.py on real `kvscope eval needles` grids: the bundled demo model,
full cache and StreamingLLM at 50 %, both splits, 256- and 512-token prompts, depths 0 and 1, 2
trials a cell (32 prompts, a few seconds). For every split and axis the chart must hold one series
per policy, each point's data-correct / data-trials must be its pooled cells, and each series'
points must add up to what `kvscope eval --json` reports for that split. The output must be
byte-identical on a second run, and a file that is not a grid CSV must be refused with its name.

Usage: eval_curves_test.py --kvscope build/app/cli/kvscope --root SOURCE_DIR --workdir DIR
"""
import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
POLICIES = (("full", [], "full cache"), ("streaming_llm", ["--ratio", "0.5"], "StreamingLLM 50 %"))


def run_eval(a, policy, extra):
    stem = os.path.join(a.workdir, policy)
    r = subprocess.run([a.kvscope, "eval", "needles", "--model",
                        os.path.join(a.root, "resources/models/kvscope-demo"), "--split",
                        "train,heldout", "--lengths", "256,512", "--depths", "0,1", "--trials",
                        "2", "--policy", policy, *extra, "--quiet", "--json", "--csv",
                        stem + ".csv"], capture_output=True, text=True, check=True)
    with open(stem + ".json", "w", encoding="utf-8") as f:
        f.write(r.stdout)
    return stem + ".csv", json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvscope", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    grids, reports = [], {}
    for policy, extra, label in POLICIES:
        path, report = run_eval(a, policy, extra)
        grids.append(path)
        reports[label] = report
    tool = os.path.join(a.root, "tools/train_demo/eval_curves.py")
    out = [os.path.join(a.workdir, d) for d in ("svg1", "svg2")]
    for d in out:
        subprocess.run([sys.executable, tool, "--out", d, "--title", "test", *grids],
                       check=True, capture_output=True, text=True)
    for split in ("train", "heldout"):
        for axis, xs in (("depth", {"0", "1"}), ("length", {"256", "512"})):
            name = f"{split}_by_{axis}.svg"
            first, second = os.path.join(out[0], name), os.path.join(out[1], name)
            assert filecmp.cmp(first, second, shallow=False), f"{name} differs between runs"
            root = ET.parse(first).getroot()
            series = {g.get("data-label"): g for g in root.iter(SVG + "g")
                      if g.get("class") == "series"}
            assert set(series) == set(reports), (name, sorted(series))
            for label, g in series.items():
                points = list(g.iter(SVG + "circle"))
                assert {p.get("data-x") for p in points} == xs, (name, label)
                correct = sum(int(p.get("data-correct")) for p in points)
                trials = sum(int(p.get("data-trials")) for p in points)
                want = reports[label]["splits"][split]
                assert (correct, trials) == (want["correct"], want["total"]), (name, label, want)
                # Each point is its cells pooled over the other axis (the --json cells).
                key = "depth" if axis == "depth" else "length"
                for p in points:
                    cells = [c for c in reports[label]["cells"] if c["split"] == split
                             and f"{c[key]:g}" == p.get("data-x")]
                    assert int(p.get("data-correct")) == sum(c["correct"] for c in cells), p.attrib
                    assert int(p.get("data-trials")) == sum(c["trials"] for c in cells), p.attrib
    # A file that is not a grid CSV: exit 1, its name in the message.
    bad_path = os.path.join(a.workdir, "full.json")
    bad = subprocess.run([sys.executable, tool, "--out", out[0], bad_path],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad_path in bad.stderr, (bad.returncode, bad.stderr)
    print("eval_curves: ok")


if __name__ == "__main__":
    main()
