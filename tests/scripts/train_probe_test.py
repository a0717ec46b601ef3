#!/usr/bin/env python3
"""The training run's probe (tools/train_demo/probe.py, used by train.py --probe-every) without a
GPU: its prompts cover passkey, niah, needles-train, needles-heldout and needles-cue with
--probe-trials prompts per depth; needles-heldout prompts come from held-out families in the
held-out haystack source and needles-train ones from train families in the training haystacks;
needles-cue ones are train needles in the training haystacks asked with a held-out family's
question about their key; the answer is in the prompt;
the accounting keeps the tasks apart (a generator that answers only training-template prompts
scores needles-train full and needles-heldout zero). Also the extra questions train.py appends to
needles rows: their alternations resolve with random.Random.randrange to markup-free text.

    python3 train_probe_test.py --bridge build/tests/scripts/scenario_ids --root .
"""
import os
import random
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenario_parity_test import BridgeTok, bridge_args  # noqa: E402


def main():
    args = bridge_args()
    import probe as P
    import scenarios as S

    res = os.path.join(args.root, "resources")
    templates = S.load_templates(os.path.join(res, "needles", "templates.json"))
    split_of = {t["id"]: t["split"] for t in templates["templates"]}
    hay = {sp: S.load_haystack_dir(templates["haystacks"][sp])[0] for sp in ("train", "heldout")}
    hay_sentences, hay_keys = S.load_haystack_dir(os.path.join(res, "haystacks"))
    tok = BridgeTok(args.bridge, os.path.join(args.root, "tests", "golden", "tokenizers",
                                              "bytelevel", "tokenizer.json"))
    trials, length, failures = 3, 700, 0

    def fail(msg):
        nonlocal failures
        print("FAIL", msg)
        failures += 1

    prompts = P.probe_prompts(tok, length, trials, hay_sentences, hay_keys, templates, hay)
    per_task = {}
    for task, b in prompts:
        per_task[task] = per_task.get(task, 0) + 1
        if len(b["ids"]) > length:
            fail(f"{task}: {len(b['ids'])} ids > {length}")
        once = 2 if task == "passkey" else 1  # the passkey needle says its value twice
        if S.answer_occurrences(b["text"], b["answer"]) != once:
            fail(f"{task}: answer {b['answer']!r} not {once} time(s)")
        if task == "needles-cue":
            if split_of[b["template"]] != "train" or split_of[b["cue_template"]] != "heldout":
                fail(f"{task}: needle of {b['template']}, question of {b['cue_template']}")
            if not b["text"].endswith(b["question"]) or b["key"] not in b["question"] \
                    or "((" in b["question"] or any(s in b["text"] for s in hay["heldout"]
                                                    if len(s) > 30):
                fail(f"{task}: question {b['question']!r} in the prompt's end, about "
                     f"{b['key']!r}, training haystack only")
        elif task.startswith("needles-"):
            split = task.split("-")[1]
            if split_of[b["template"]] != split:
                fail(f"{task}: drew template {b['template']} of split {split_of[b['template']]}")
            other = "train" if split == "heldout" else "heldout"
            own = sum(s in b["text"] for s in hay[split] if len(s) > 30)
            foreign = sum(s in b["text"] for s in hay[other] if len(s) > 30)
            if own == 0 or foreign:
                fail(f"{task}: {own} sentences of its haystack, {foreign} of the {other} one")
    want = {t: trials * len(P.PROBE_DEPTHS) for t in P.PROBE_TASKS}
    if per_task != want:
        fail(f"prompts per task {per_task}, expected {want}")
    drawn = {b["template"] for t, b in prompts if t.startswith("needles-")} | \
        {b["cue_template"] for t, b in prompts if t == "needles-cue"}
    print(f"probe prompts: {per_task}; needles templates drawn: {sorted(drawn)}")

    # Tasks are counted apart: answer right only on train-template prompts (and passkey/niah).
    answers = {id(b["ids"]): (t, b["answer"]) for t, b in prompts}

    def generate(ids):
        task, answer = answers[id(ids)]
        return f" {answer}." if task not in ("needles-heldout", "needles-cue") else " 1234."
    result = P.run_probe(prompts, generate)
    line = P.probe_line(result)
    print("probe line:", line)
    n = trials * len(P.PROBE_DEPTHS)
    if line != (f"passkey {n}/{n} niah {n}/{n} needles-train {n}/{n} needles-heldout 0/{n} "
                f"needles-cue 0/{n}"):
        fail(f"probe line {line!r}")
    # Exact-answer check: a longer number holding the answer does not count.
    longer = P.run_probe(prompts[:1], lambda ids: f" {prompts[0][1]['answer']}7")
    if longer["passkey"]["correct"] != 0:
        fail("a longer number counted as the answer")

    # train.py's extra questions of a needles row: one form, alternations resolved, key filled.
    rng = random.Random(5)
    for t in templates["templates"]:
        if t["split"] != "train":
            continue
        q = S.fill_template(S.resolve_alternations(rng.choice(t["questions"]), rng.randrange),
                            "KEY", "")
        if "((" in q or "))" in q or "|" in q or "KEY" not in q:
            fail(f"extra question of {t['id']}: {q!r}")
    tok.close()
    if failures:
        sys.exit(f"{failures} failure(s)")
    print("probe prompts and accounting ok")


if __name__ == "__main__":
    main()
