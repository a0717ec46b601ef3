#!/usr/bin/env python3
"""train.py's "needles_dense" rows (tools/train_demo/needle_rows.py) and its --mix / --early-mix
flags (row_mix.py), without torch or a GPU. Dense rows are built exactly as TaskRows builds them
(dense_needles then answered_text) in the training haystack, tokenized through scenario_ids with
the bundled model's tokenizer, at row lengths 256, 512 and 1024. Checked per row: 4-10 needles
and 2-6 distractors, all of train-split templates; needles fill most of the prompt; 2-5 questions,
the built one first, each about a distinct needle (never a distractor), answered by that needle's
value as a whole word right after the question; answer spans cover exactly the answer characters;
needle spans weight 0 and hold the needle's value; no held-out haystack sentence. And the flags:
no flag keeps the built-in mixtures; bad entries are usage errors (exit 2) naming the flag and
the entry.

    python3 needle_rows_test.py --bridge build/tests/scripts/scenario_ids --root .
"""
import argparse
import contextlib
import io
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenario_parity_test import Failures, bridge_args, bundled  # noqa: E402

WEIGHT = 5.0
ROWS_PER_LENGTH = 40
# Needle characters / prompt characters (intro, haystack and question included): lowest allowed
# in any row and over all rows (seen: 0.44 and ~0.63; the haystack is at most a quarter of the
# tokens, short needles with a long intro give the lowest).
MIN_NEEDLE_SHARE = 0.4
MIN_MEAN_NEEDLE_SHARE = 0.55
MIN_FIT = 0.9  # share of rows whose prompt + answers fit the row (train.py redraws the others)


def check_rows(tok, S, R, templates, fail):
    split_of = {t["id"]: t["split"] for t in templates["templates"]}
    train_hay = S.load_haystack_dir(templates["haystacks"]["train"])[0]
    held_hay = [s for s in S.load_haystack_dir(templates["haystacks"]["heldout"])[0]
                if len(s) > 30]
    count = S.TokenCounter(tok)
    rng = random.Random(7)
    stats = {"rows": 0, "fit": 0, "needles": 0, "asked": 0, "min_share": 1.0, "share": 0.0}
    for length in (256, 512, 1024):
        for _ in range(ROWS_PER_LENGTH):
            b, nn, asked = R.dense_needles(tok, rng, templates, train_hay, count, length,
                                           rng.random())
            text, spans = R.answered_text(b, templates, rng, nn, asked, WEIGHT)
            where = f"row {stats['rows']} (length {length})"
            stats["rows"] += 1
            stats["needles"] += nn
            stats["asked"] += asked
            nd = len(b["keys"]) - nn
            if not (4 <= nn <= 10 and 2 <= nd <= 6 and len(b["needle_spans"]) == nn + nd):
                fail(f"{where}: {nn} needles, {nd} distractors, {len(b['needle_spans'])} spans")
            bad = [t for t in b["templates"] if split_of[t] != "train"]
            if bad:
                fail(f"{where}: templates of the held-out split {bad}")
            if any(s in b["text"] for s in held_hay):
                fail(f"{where}: a held-out haystack sentence in the prompt")
            share = sum(z - a for a, z in b["needle_spans"]) / len(b["text"])
            stats["min_share"] = min(stats["min_share"], share)
            stats["share"] += share / (3 * ROWS_PER_LENGTH)
            stats["fit"] += len(tok.encode(text, True)) < length  # train.py adds EOS: seq + 1 ids
            zero = [s for s in spans if s[2] == 0.0]
            for j, (a, z, _) in enumerate(zero):
                if S.answer_occurrences(text[a:z], b["values"][j]) != 1:
                    fail(f"{where}: needle span {j} {text[a:z]!r} lacks {b['values'][j]!r}")
            answers = [s for s in spans if s[2] == WEIGHT]
            if len(answers) != asked or not 2 <= asked <= min(5, nn) or len(spans) != nn + nd \
                    + asked:
                fail(f"{where}: {len(answers)} answers, {asked} asked, {len(spans)} spans")
            seen = set()
            for k, (a, z, _) in enumerate(answers):
                got = text[a:z]
                j = b["query"] if k == 0 else b["values"].index(got) if got in b["values"] else -1
                if j < 0 or j >= nn or j in seen or b["values"][j] != got:
                    fail(f"{where}: answer {k} {got!r} is not a new needle's value")
                    continue
                seen.add(j)
                line = text[text.rfind("\n\n", 0, a) + 2:a]
                question = b["question"] if k == 0 else line[:-1]
                if not line.endswith(question + " ") or b["keys"][j] not in question \
                        or "((" in question or "|" in question:
                    fail(f"{where}: answer {k} follows {line!r}, not a question about "
                         f"{b['keys'][j]!r}")
                if S.answer_occurrences(text[a - 1:z + 1], got) != 1 or text[z] != ".":
                    fail(f"{where}: answer {k} {got!r} is not a whole word: {text[a - 1:z + 1]!r}")
                if S.answer_occurrences(b["text"], got) < 1:
                    fail(f"{where}: answer {k} {got!r} is not in the prompt")
    return stats


def check_cue_dropout(tok, S, R, templates, fail):
    """Cue dropout (train.py --cue-dropout): at share 0 the rows are exactly those built without
    it; at share 1 every question is random training words around the asked key, each
    still answered by its needle's value."""
    hay = S.load_haystack_dir(templates["haystacks"]["train"])[0]
    words = R.corpus_words(hay)
    count = S.TokenCounter(tok)
    dropped = 0
    for i in range(12):
        rows = []
        for share in (None, 0.0, 1.0):
            rng = random.Random(100 + i)
            b, nn, asked = R.dense_needles(tok, rng, templates, hay, count, 512, rng.random())
            args = () if share is None else (share, words)
            rows.append((b, R.answered_text(b, templates, rng, nn, asked, WEIGHT, *args)))
        if rows[0][1] != rows[1][1]:
            fail(f"cue row {i}: share 0 changed the row")
        b, (text, spans) = rows[2]
        for a, z, w in spans:
            if w != WEIGHT:
                continue
            line = text[text.rfind("\n\n", 0, a) + 2:a]
            value = text[a:z]
            j = b["values"].index(value) if value in b["values"] else -1
            if j < 0 or b["keys"][j] not in line:
                fail(f"cue row {i}: answer {value!r} after {line!r}")
                continue
            rest = line.replace(b["keys"][j], " ")
            for end in sorted(R.CUE_ENDS, key=len, reverse=True):
                if end and rest.rstrip().endswith(end.strip()):
                    rest = rest.rstrip()[:len(rest.rstrip()) - len(end.strip())]
                    break
            stray = [x for x in rest.split() if x not in words]
            if stray:
                fail(f"cue row {i}: question {line!r} has words outside the corpus {stray}")
            dropped += 1
    print(f"cue dropout checked: {dropped} dropped-cue questions answered, share 0 unchanged")


def check_mix(M, fail):
    def parse(argv):
        ap = argparse.ArgumentParser(prog="train.py")
        M.add_mix_args(ap)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                return M.mixes(ap.parse_args(argv)), 0, ""
            except SystemExit as e:
                return None, e.code, err.getvalue()

    got, rc, _ = parse([])
    if got != (M.EARLY_ROW_KINDS, M.ROW_KINDS) or any(k == "needles_dense" for m in got
                                                      for k, _ in m):
        fail(f"no flag: mixtures {got}")
    text = "needles_dense:0.45,needles:0.25,kv:0.1,repeat:0.1,natural:0.1"
    want = [("needles_dense", 0.45), ("needles", 0.25), ("kv", 0.1), ("repeat", 0.1),
            ("natural", 0.1)]
    got, rc, _ = parse(["--mix", text])
    if got != (want, want):
        fail(f"--mix: {got}")
    got, rc, _ = parse(["--mix", text, "--early-mix", "repeat:1,needles_dense:2"])
    if got != ([("repeat", 1.0), ("needles_dense", 2.0)], want):
        fail(f"--mix with --early-mix: {got}")
    got, rc, _ = parse(["--early-mix", "kv:1"])
    if got != ([("kv", 1.0)], M.ROW_KINDS):
        fail(f"--early-mix alone: {got}")
    for flag, value, entry in [("--mix", "needles:0.5,fancy:0.5", "fancy:0.5"),
                               ("--mix", "kv:0", "kv:0"), ("--mix", "kv:-0.1", "kv:-0.1"),
                               ("--mix", "kv:x", "kv:x"), ("--mix", "kv", "kv"),
                               ("--mix", "kv:nan", "kv:nan"), ("--mix", "kv:1,kv:2", "kv:2"),
                               ("--early-mix", "repeat:1,needle:1", "needle:1")]:
        got, rc, err = parse([flag, value])
        if rc != 2 or flag not in err or f"'{entry}'" not in err:
            fail(f"{flag} {value!r}: exit {rc}, message {err.strip()!r}")
    print("mix flags checked: no flag, 3 good forms, 8 bad entries (exit 2 expected)")


def main():
    args = bridge_args()
    import needle_rows as R
    import row_mix as M
    import scenarios as S

    fail = Failures()
    templates, tok = bundled(args, S)
    st = check_rows(tok, S, R, templates, fail)
    check_cue_dropout(tok, S, R, templates, fail)
    tok.close()
    print(f"dense rows: {st['rows']}, {st['needles'] / st['rows']:.1f} needles and "
          f"{st['asked'] / st['rows']:.1f} questions a row, needle share >= "
          f"{st['min_share']:.2f} (mean {st['share']:.2f}), {st['fit']} fit their row")
    if st["min_share"] < MIN_NEEDLE_SHARE:
        fail(f"needles fill {st['min_share']:.2f} of a prompt, < {MIN_NEEDLE_SHARE}")
    if st["share"] < MIN_MEAN_NEEDLE_SHARE:
        fail(f"needles fill {st['share']:.2f} of the prompts, < {MIN_MEAN_NEEDLE_SHARE}")
    if st["fit"] < MIN_FIT * st["rows"]:
        fail(f"{st['fit']}/{st['rows']} rows fit, < {MIN_FIT:.0%}")
    check_mix(M, fail)
    if fail.count:
        sys.exit(f"{fail.count} failure(s)")
    print("needles_dense rows and --mix ok")


if __name__ == "__main__":
    main()
