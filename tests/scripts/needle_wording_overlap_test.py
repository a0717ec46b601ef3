#!/usr/bin/env python3
"""Held-out needle families must be wording the training never sees (issue 12). Every resolution
of every train needle form and question (alternations expanded, tools/train_demo/scenarios.py) is
cut into word 3-grams; so is every held-out one. Words are lower-case runs of letters, digits and
apostrophes; {key} and {value} break a text into pieces and no 3-gram spans them. The test prints
the share of distinct held-out 3-grams that also occur in train expansions, the shared 3-grams,
and fails above MAX_SHARED. It also fails on the checks that keep the figure meaningful: train
families have many wordings, and held-out key pools are not train pools.

    python3 needle_wording_overlap_test.py --root .
"""
import argparse
import os
import re
import sys

# Shared 3-grams allowed, as a share of distinct held-out 3-grams. Generic English ("what is the")
# may recur; a held-out framing ("the strongroom of", "question what is") must not.
MAX_SHARED = 0.05
MIN_TRAIN_WORDINGS = 20  # per train family: resolutions of needle forms (the point of issue 12)

WORD = re.compile(r"[a-z0-9']+")


def trigrams(text):
    out = set()
    for piece in re.split(r"\{key\}|\{value\}", text.lower()):
        w = WORD.findall(piece)
        out.update(tuple(w[i:i + 3]) for i in range(len(w) - 2))
    return out


def family_trigrams(S, t):
    grams, wordings = set(), 0
    for text in t["needles"] + t["questions"]:
        for r in S.all_resolutions(text):
            grams |= trigrams(r)
    for form in t["needles"]:
        wordings += len(S.all_resolutions(form))
    return grams, wordings


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--templates", help="default: resources/needles/templates.json")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.root, "tools", "train_demo"))
    import scenarios as S

    path = args.templates or os.path.join(args.root, "resources", "needles", "templates.json")
    ts = S.load_templates(path)["templates"]
    failures = 0
    train, held = {}, {}
    train_pools = {t["keys"] for t in ts if t["split"] == "train"}
    for t in ts:
        grams, wordings = family_trigrams(S, t)
        if t["split"] == "train":
            train[t["id"]] = grams
            if wordings < MIN_TRAIN_WORDINGS:
                print(f"FAIL train family {t['id']}: {wordings} needle wordings "
                      f"(< {MIN_TRAIN_WORDINGS})")
                failures += 1
        else:
            held[t["id"]] = grams
            if t["keys"] in train_pools:
                print(f"FAIL held-out family {t['id']}: key pool {t['keys']} is a train pool")
                failures += 1
    train_all = set().union(*train.values())
    held_all = set().union(*held.values())
    shared = held_all & train_all
    share = len(shared) / max(1, len(held_all))
    print(f"{len(train)} train families ({len(train_all)} distinct 3-grams), {len(held)} held-out "
          f"families ({len(held_all)} distinct 3-grams)")
    for hid, grams in held.items():
        s = sorted(" ".join(g) for g in grams & train_all)
        print(f"  {hid:20s} {len(grams & train_all):3d}/{len(grams):3d} shared"
              + (f": {', '.join(s)}" if s else ""))
    print(f"held-out 3-grams also in train expansions: {len(shared)}/{len(held_all)} = "
          f"{share * 100:.1f}% (limit {MAX_SHARED * 100:.0f}%)")
    if not held_all or share > MAX_SHARED:
        print("FAIL: held-out wording overlaps train wording")
        failures += 1
    if failures:
        sys.exit(f"{failures} failure(s)")
    print("held-out wording is disjoint enough")


if __name__ == "__main__":
    main()
