"""The training run's quick retrieval probe (train.py --probe-every), kept free of torch so its
prompts and its bookkeeping can be checked without a GPU (tests/scripts/train_probe_test.py).

A probe runs, at the current row length, PROBE_TRIALS prompts per depth of PROBE_DEPTHS for each
task: passkey, niah, needles-train (train template families in the training haystacks),
needles-heldout (held-out families in the held-out haystack source) and needles-cue (a
needles-train prompt whose question is a held-out family's wording about the same key: it tells
"does not answer an unseen cue" from "does not find an unseen needle"), seeded as
trial_seed(PROBE_SEED, kind, length, depth, trial). A prompt counts when the generation holds the
answer as a whole word (scenarios.answer_found, as the final grid and `kvscope eval`). Tasks are
counted apart, so a model that keys retrieval on the training wordings shows high needles-train
and low needles-heldout.
"""
import random

import needle_rows as R
import scenarios as S

PROBE_SEED = 99
PROBE_DEPTHS = (0.0, 0.5, 1.0)
PROBE_TASKS = ("passkey", "niah", "needles-train", "needles-heldout", "needles-cue")
CUE_ROOM = 32  # tokens a needles-cue prompt leaves for its (longer) held-out question


def probe_prompts(tok, length, trials, hay_sentences, hay_keys, templates, needle_sentences,
                  count=None):
    """-> [(task, prompt dict of scenarios.build_*)], PROBE_TASKS order, depth-major.
    needle_sentences: {split: haystack sentences of that split}; length: the prompt's tokens."""
    count = count or S.TokenCounter(tok)
    out = []
    for task in PROBE_TASKS:
        kind = task.split("-")[0]
        for d in PROBE_DEPTHS:
            for t in range(trials):
                s = S.trial_seed(PROBE_SEED, kind, length, d, t)
                if kind == "passkey":
                    b = S.build_passkey(tok, length, d, s, count)
                elif kind == "niah":
                    b = S.build_niah(tok, length, d, s, hay_sentences, hay_keys, 1, count)
                elif task == "needles-cue":
                    b = heldout_cue(tok, S.build_needles(tok, length - CUE_ROOM, d, s,
                                                         needle_sentences["train"], templates,
                                                         "train", 1, 0, count), templates, s)
                else:
                    split = task.split("-")[1]
                    b = S.build_needles(tok, length, d, s, needle_sentences[split], templates,
                                        split, 1, 0, count)
                out.append((task, b))
    return out


def heldout_cue(tok, b, templates, seed):
    """b (a train-split build_needles prompt) with its question replaced by a question form of a
    held-out family, drawn with random.Random(seed), about b's key. -> a new dict (text, ids,
    question changed)."""
    rng = random.Random(seed)
    held = [t for t in templates["templates"] if t["split"] == "heldout"]
    t = held[rng.randrange(len(held))]
    q = S.fill_template(S.resolve_alternations(rng.choice(t["questions"]), rng.randrange),
                        b["key"], "")
    text = R.with_question(b, q)
    return dict(b, text=text, ids=tok.encode(text, True), question=q, cue_template=t["id"])


def run_probe(prompts, generate):
    """generate(ids) -> generated text. -> {task: {"correct", "total"}} in PROBE_TASKS order."""
    out = {}
    for task, b in prompts:
        r = out.setdefault(task, {"correct": 0, "total": 0})
        r["correct"] += int(S.answer_found(generate(b["ids"]), b["answer"]))
        r["total"] += 1
    return out


def probe_line(result):
    """{task: {correct, total}} -> "passkey 6/6 niah 6/6 needles-train 5/6 needles-heldout 0/6"."""
    return " ".join(f"{task} {r['correct']}/{r['total']}" for task, r in result.items())
