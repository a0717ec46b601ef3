#!/usr/bin/env python3
"""train.py's "needles_free" rows (tools/train_demo/free_needles.py), without torch or a GPU.
Rows are built as TaskRows builds them, in the training haystack, tokenized through scenario_ids
with the bundled model's tokenizer, at row lengths 256, 512, 1024 and 2048. Checked per row:
1-4 asked needles and 0-3 distractors; every needle span (weight 0) holds its key, all its
attribute words and its value; each asked value occurs exactly once (as a whole word) in the
prompt, and no distractor shares it; answers (weight 5) follow a question naming their key
(and, when a distractor shares the asked key, the attribute), in order, each value exactly the
answer span; no key or value uses a word of the held-out pools, no held-out haystack sentence is
in the row; the same seed gives the same row. Over all rows: most fit their length (train.py
redraws the others) and the layouts, value kinds and distractor kinds all occur.

    python3 free_needles_test.py --bridge build/tests/scripts/scenario_ids --root .
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenario_parity_test import Failures, bridge_args, bundled  # noqa: E402

WEIGHT = 5.0
ROWS_PER_LENGTH = 30
MIN_FIT = 0.9  # share of rows whose text fits the row (train.py redraws the others)


def value_kind(v):
    if v.isdigit():
        return "number"
    if any(c.isdigit() for c in v):
        return "code"
    return "name" if v[0].isupper() else "word"


def check_row(S, fn, text, spans, facts, asked, banned, held_hay, where, fail):
    zero = [s for s in spans if s[2] == 0.0]
    answers = [s for s in spans if s[2] == WEIGHT]
    if not (1 <= asked <= 4 and 0 <= len(facts) - asked <= 3):
        fail(f"{where}: {asked} asked, {len(facts) - asked} distractors")
    if len(zero) != len(facts) or len(answers) != asked:
        fail(f"{where}: {len(zero)} needle spans, {len(answers)} answers")
        return
    prompt = text[:answers[0][0]]
    for (a, z, _), (key, attr, value) in zip(zero, facts):
        needle = text[a:z]
        low = needle.lower()  # layouts capitalise or upper-case the attribute
        if key.lower() not in low or any(w.lower() not in low for w in attr) \
                or S.answer_occurrences(needle, value) != 1:
            fail(f"{where}: needle {needle!r} lacks {key!r} / {attr} / {value!r}")
        words = key.lower().split() + [value.lower()]
        if any(w in banned for w in words):
            fail(f"{where}: held-out pool word in {key!r} / {value!r}")
    values = [f[2] for f in facts]
    same_key = any(f[0] == facts[0][0] for f in facts[asked:])
    for j, (a, z, _) in enumerate(answers):
        key, attr, value = facts[j]
        if text[a:z] != value or text[z] != ".":
            fail(f"{where}: answer {j} {text[a:z]!r}, want {value!r}")
        if S.answer_occurrences(prompt, value) != 1 or values.count(value) != 1:
            fail(f"{where}: value {value!r} is not once in the prompt and among the needles")
        question = text[text.rfind("\n\n", 0, a) + 2:a]
        if key.lower() not in question.lower():
            fail(f"{where}: question {question!r} does not name {key!r}")
        if same_key and not any(w.lower() in question.lower() for w in attr):
            fail(f"{where}: question {question!r} does not name the attribute {attr}")
    if any(s in text for s in held_hay):
        fail(f"{where}: a held-out haystack sentence in the row")


def check_natural(S, F, R, tok, count, hay, held_hay, templates, banned, fail):
    """--free-natural: the same row checks; links are NATURAL_LINKS without a word of the
    held-out wording (some are dropped for it), real names come from the training texts and
    some rows use them; without the flag the rows are exactly the default ones."""
    names = F.proper_nouns(hay)
    fn = F.FreeNeedles(R.corpus_words(hay), templates, True, names)
    wording = F.heldout_wording(templates)
    if not wording or any(set(p.split()) & wording for p in fn.links) \
            or len(fn.links) == len(F.NATURAL_LINKS) or len(fn.links) < 20:
        fail(f"natural links {fn.links} against the held-out wording ({len(wording)} words)")
    plain = F.FreeNeedles(R.corpus_words(hay), templates)
    off = F.FreeNeedles(R.corpus_words(hay), templates, False, names)
    used = 0
    for i in range(40):
        seed = 7000 + i
        if off.row_text(tok, random.Random(seed), hay, count, 512, WEIGHT) != \
                plain.row_text(tok, random.Random(seed), hay, count, 512, WEIGHT):
            fail(f"natural row {i}: names without the flag changed the row")
        row = fn.row_text(tok, random.Random(seed), hay, count, 512 + 512 * (i % 2), WEIGHT)
        check_row(S, fn, *row, banned, held_hay, f"natural row {i}", fail)
        used += sum(f[2] in fn.names for f in row[2])
    if used == 0:
        fail("natural rows: no value drawn from the training texts' names")
    print(f"natural rows: 40 checked, {len(fn.links)} of {len(F.NATURAL_LINKS)} links kept, "
          f"{len(fn.names)} names, {used} name values from them")


def main():
    args = bridge_args()
    import free_needles as F
    import needle_rows as R
    import scenarios as S

    fail = Failures()
    templates, tok = bundled(args, S)
    hay = S.load_haystack_dir(templates["haystacks"]["train"])[0]
    held_hay = [s for s in S.load_haystack_dir(templates["haystacks"]["heldout"])[0]
                if len(s) > 30]
    count = S.TokenCounter(tok)
    fn = F.FreeNeedles(R.corpus_words(hay), templates)
    banned = F.heldout_words(templates)
    if not banned or any(w in banned for w in fn.words):
        fail(f"held-out pool words: {len(banned)}, in the draw pool: "
             f"{[w for w in fn.words if w in banned][:5]}")
    rows = fit = 0
    seen = {"layout": set(), "value": set(), "distractor": set()}
    for length in (256, 512, 1024, 2048):
        for i in range(ROWS_PER_LENGTH):
            seed = 1000 * length + i
            text, spans, facts, asked = fn.row_text(tok, random.Random(seed), hay, count, length,
                                                    WEIGHT)
            again = fn.row_text(tok, random.Random(seed), hay, count, length, WEIGHT)
            where = f"row {i} (length {length})"
            if again != (text, spans, facts, asked):
                fail(f"{where}: seed {seed} gave two different rows")
            check_row(S, fn, text, spans, facts, asked, banned, held_hay, where, fail)
            rows += 1
            fit += len(tok.encode(text, True)) < length  # train.py adds EOS: seq + 1 ids
            for a, z, w in spans:
                if w == 0.0:
                    n = text[a:z]
                    seen["layout"].add("line" if n.startswith("\n") and n.count("\n") == 2
                                       else "list" if "):\n" in n else "dialogue"
                                       if n.startswith("\n") else "sentence")
            seen["value"].update(value_kind(f[2]) for f in facts)
            seen["distractor"].update("same key" if f[0] == facts[0][0] else "same attribute"
                                      for f in facts[asked:])
    check_natural(S, F, R, tok, count, hay, held_hay, templates, banned, fail)
    tok.close()
    print(f"free rows: {rows}, {fit} fit their row; layouts {sorted(seen['layout'])}, values "
          f"{sorted(seen['value'])}, distractors {sorted(seen['distractor'])}")
    if fit < MIN_FIT * rows:
        fail(f"{fit}/{rows} rows fit, < {MIN_FIT:.0%}")
    if len(seen["layout"]) != 4 or len(seen["value"]) != 4 or len(seen["distractor"]) != 2:
        fail(f"not every layout / value kind / distractor kind occurred: {seen}")
    if fail.count:
        sys.exit(f"{fail.count} failure(s)")
    print("needles_free rows ok")


if __name__ == "__main__":
    main()
