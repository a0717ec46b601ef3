#!/usr/bin/env python3
"""Parity of the two prompt builders: tools/train_demo/scenarios.py (what the demo model trains
and is evaluated on with HF transformers) and core/scenarios (what `kvscope eval` runs). Both use
the C++ tokenizer through tests/scripts/scenario_ids, so a difference is a difference in the
builders' draws, filling or placement. Cases: passkey, single- and multi-needle NIAH, and the
needles kind on train and held-out templates with several needles and distractors, with a small
byte-level BPE (long pieces) and the bundled demo model's tokenizer.

    python3 scenario_parity_test.py --bridge build/tests/scripts/scenario_ids --root .
"""
import argparse
import json
import os
import subprocess
import sys


class BridgeTok:
    """encode(text, add_special) through `scenario_ids encode`."""

    def __init__(self, bridge, tokenizer):
        self.p = subprocess.Popen([bridge, "encode", tokenizer], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.calls = 0

    def encode(self, text, add_special):
        self.calls += 1
        self.p.stdin.write(f"{int(bool(add_special))} {text.encode('utf-8').hex()}\n")
        self.p.stdin.flush()
        return [int(x) for x in self.p.stdout.readline().split()]

    def close(self):
        self.p.stdin.write("\n")
        self.p.stdin.close()
        self.p.wait()


def bridge_args():
    """--bridge (scenario_ids) and --root; puts tools/train_demo on the import path."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bridge", required=True)
    ap.add_argument("--root", required=True)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.root, "tools", "train_demo"))
    return args


class Failures:
    """fail(msg) for the training-row tests: prints it and counts; .count at the end."""

    def __init__(self):
        self.count = 0

    def __call__(self, msg):
        print("FAIL", msg)
        self.count += 1


def bundled(args, S):
    """-> (templates, tokenizer): resources/needles/templates.json and the bundled demo model's
    tokenizer through the bridge, so row sizes are the real ones. args from bridge_args()."""
    templates = S.load_templates(os.path.join(args.root, "resources", "needles",
                                              "templates.json"))
    tok = BridgeTok(args.bridge, os.path.join(args.root, "resources", "models", "kvscope-demo",
                                              "tokenizer.json"))
    return templates, tok


def main():
    args = bridge_args()
    import scenarios as S

    # The Python loader refuses a bad set like the C++ one, naming the file and the field:
    # a needle without {value}, and malformed alternations (needle_templates_test.cpp's cases).
    import tempfile
    bad_sets = [({"needle": "{key} is here."}, "templates[0].needle: must hold {value}"),
                ({"needle": "((The|A) {key} is {value}."}, "templates[0].needle: '((' at byte 0 "
                                                           "is never closed"),
                ({"needle": "The {key} is {value})) ok."}, "templates[0].needle: '))' at byte"),
                ({"questions": ["((Q||Ask)) {key}?"]}, "templates[0].questions[0]: empty "
                                                       "alternative"),
                ({"intro": "((a|((b|c))))"}, "templates[0].intro: '((' inside the group"),
                ({"needle": "The {key} ((is {value}|was unknown))."}, "{value} exactly once"),
                ({"needle": ["{value} is {key}'s.", "The {key} is."]}, "templates[0].needle[1]"),
                ({"questions": ["((for {key}|in general))?"]}, "has no {key}")]
    for change, want in bad_sets:
        t = {"id": "t", "split": "train", "format": "sentence", "keys": "k",
             "value": {"kind": "number", "digits": [3, 4]}, "intro": "I.",
             "needle": "{key} is {value}.", "questions": ["{key}?"]}
        t.update(change)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"pools": {"k": ["a"]}, "haystacks": {"train": "a", "heldout": "b"},
                       "templates": [t]}, f)
        try:
            S.load_templates(f.name)
            sys.exit(f"FAIL: {change} was accepted")
        except ValueError as e:
            if f.name not in str(e) or want not in str(e):
                sys.exit(f"FAIL: unclear loader error for {change}: {e}")
        finally:
            os.unlink(f.name)
    print(f"ok   loader refuses {len(bad_sets)} bad sets, naming file and field")

    res = os.path.join(args.root, "resources")
    templates_file = os.path.join(res, "needles", "templates.json")
    templates = S.load_templates(templates_file)
    hay = {s: S.load_haystack_dir(templates["haystacks"][s]) for s in ("train", "heldout")}
    tokenizers = [os.path.join(args.root, "tests", "golden", "tokenizers", "bytelevel",
                               "tokenizer.json")]
    demo = os.path.join(res, "models", "kvscope-demo", "tokenizer.json")
    if os.path.exists(demo):
        tokenizers.append(demo)
    # (kind, split, length, depth, seed, needles, distractors)
    cases = [("passkey", None, 700, 0.3, 11, 1, 0), ("niah", None, 900, 0.5, 5, 1, 0),
             ("niah", None, 1500, 0.6, 9, 4, 0)]
    for seed in range(12):  # template alternations and needle forms drawn alike in both
        split = "train" if seed % 2 == 0 else "heldout"
        cases.append(("needles", split, 1024, (0.0, 0.5, 1.0)[seed % 3],
                      S.trial_seed(seed, "needles", 1024, 0.5, seed), 1, 0))
    cases += [("needles", "train", 1500, 0.25, 77, 3, 0), ("needles", "heldout", 1500, 0.75, 78, 1, 3),
              ("needles", "heldout", 2048, 0.4, 79, 2, 2), ("needles", "train", 600, 1.0, 80, 1, 2)]
    failures, seen_templates = 0, set()
    for tok_path in tokenizers:
        tok = BridgeTok(args.bridge, tok_path)
        count = S.TokenCounter(tok)
        for kind, split, length, depth, seed, nn, nd in cases:
            hsplit = split or "train"
            sentences, keys = hay[hsplit]
            cmd = [args.bridge, "build", tok_path, kind, templates["haystacks"][hsplit],
                   str(length), repr(depth), str(seed), str(nn), str(nd)]
            if kind == "passkey":
                py = S.build_passkey(tok, length, depth, seed, count)
            elif kind == "niah":
                py = S.build_niah(tok, length, depth, seed, sentences, keys, nn, count)
            else:
                cmd += [templates_file, split]
                py = S.build_needles(tok, length, depth, seed, sentences, templates, split, nn,
                                     nd, count)
                seen_templates.add(py["template"])
                if S.answer_occurrences(py["text"], py["answer"]) != 1:
                    print(f"FAIL {kind} seed {seed}: answer not exactly once")
                    failures += 1
            cpp = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                            text=True).stdout)
            same = cpp["ids"] == py["ids"] and cpp["answer"] == py["answer"]
            if kind == "needles":
                same = same and cpp["template"] == py["template"]
            name = (f"{os.path.basename(os.path.dirname(tok_path))} {kind} {split or ''} "
                    f"L={length} d={depth} seed={seed} needles={nn} distractors={nd}")
            if not same:
                failures += 1
                print(f"FAIL {name}: {len(cpp['ids'])} vs {len(py['ids'])} ids, answer "
                      f"{cpp['answer']!r} vs {py['answer']!r}")
                for i, (a, b) in enumerate(zip(cpp["text"], py["text"])):
                    if a != b:
                        print("  texts differ at char", i, repr(cpp["text"][i - 40:i + 40]),
                              repr(py["text"][i - 40:i + 40]))
                        break
            else:
                print(f"ok   {name}: {len(py['ids'])} ids, answer {py['answer']!r} "
                      f"{py.get('template', '')}")
        tok.close()
    print("templates drawn:", sorted(seen_templates))
    if len(seen_templates) < 8:
        print("FAIL: the needles cases drew fewer than 8 templates")
        failures += 1
    if failures:
        sys.exit(f"{failures} case(s) differ")
    print("all cases identical")


if __name__ == "__main__":
    main()
