"""Texts of train.py's needle rows (kinds "needles" and "needles_dense"), kept free of torch so
tests/scripts/needle_rows_test.py can check them without a GPU.

A row text is a scenarios.build_needles prompt (train-split templates only) followed by its answer
and by questions for other needles of the prompt, each answered:
    PROMPT " " ANSWER "." ("\\n\\n" QUESTION " " VALUE ".")*
with character spans [(begin, end, weight)]: every needle's text weight 0 (its value cannot be
predicted), every answer `weight` (train.py's ANSWER_WEIGHT).

"needles_dense" (issue 12, v2 curriculum): a short context made mostly of needles (4-10 needles,
2-6 distractors, a haystack of at most a quarter of their tokens) and 2-5 questions. With little
text around the needles, the loss is mostly "find the needle whose key the question names and copy
its value": the key-matching skill, learned on short rows before it has to work in long
haystacks.
"""
import scenarios as S

DENSE_NEEDLES = (4, 10)  # needles of a dense row (each can be asked)
DENSE_DISTRACTORS = (2, 6)  # the asked needle's template with other keys and values, never asked
DENSE_ASKED = (2, 5)  # questions of a dense row, the built one first
# Token costs with some margin (the bundled 8192-token BPE: ~18 a needle, ~18 a question and its
# answer) that size a dense row's counts: a 256-token row holds 6-8 needles and distractors. A row
# that still comes out too long is redrawn by train.py.
NEEDLE_TOKENS = 20
QUESTION_TOKENS = 20
OVERHEAD_TOKENS = 40  # intro and separators


CUE_WORDS = (0, 4)  # framing words before the key of a dropped-cue question
CUE_TAIL = (0, 3)  # and after it
CUE_ENDS = ("", "?", ":", " -", "?:", "...")


def corpus_words(sentences):
    """The distinct lower-case words of `sentences` (punctuation stripped), sorted: the pool
    dropped_cue() draws framing words from."""
    return sorted({w.strip(".,;:!?\"'()").lower() for s in sentences for w in s.split()} - {""})


def with_question(b, question):
    """The prompt text of build_needles dict b with its final question replaced by `question`."""
    assert b["text"].endswith(b["question"])
    return b["text"][:len(b["text"]) - len(b["question"])] + question


def dropped_cue(rng, key, words):
    """A question whose framing is random corpus words around the key (cue dropout, issue 12): the
    only sign that an answer is due is a known key asked again, as in a held-out question whose
    wording the model has never seen end a question."""
    pre = [rng.choice(words) for _ in range(rng.randint(*CUE_WORDS))]
    post = [rng.choice(words) for _ in range(rng.randint(*CUE_TAIL))]
    return " ".join(pre + [key] + post) + rng.choice(CUE_ENDS)


def answered_text(b, templates, rng, num_needles, asked, weight, cue_dropout=0.0, words=()):
    """b: a build_needles dict of num_needles needles (distractors follow them in b's lists) ->
    (text, spans): the prompt, its answer, then questions for asked - 1 other needles drawn at
    random (never a distractor), each answered. rng: random.Random (question forms, order).
    cue_dropout: the share of questions (the built one included) replaced by dropped_cue() over
    `words`; 0 draws nothing from rng for it, so rows are as before."""
    text = b["text"]
    if cue_dropout > 0 and rng.random() < cue_dropout:
        text = with_question(b, dropped_cue(rng, b["key"], words))
    spans = [(a, z, 0.0) for a, z in b["needle_spans"]]  # needle values: unpredictable
    text += " "
    spans.append((len(text), len(text) + len(b["answer"]), weight))
    text += b["answer"] + "."
    others = [j for j in range(num_needles) if j != b["query"]]
    rng.shuffle(others)
    for j in others[:asked - 1]:
        t = next(t for t in templates["templates"] if t["id"] == b["templates"][j])
        q = S.resolve_alternations(rng.choice(t["questions"]), rng.randrange)
        q = S.fill_template(q, b["keys"][j], "")
        if cue_dropout > 0 and rng.random() < cue_dropout:
            q = dropped_cue(rng, b["keys"][j], words)
        text += "\n\n" + q + " "
        spans.append((len(text), len(text) + len(b["values"][j]), weight))
        text += b["values"][j] + "."
    return text, spans


def dense_needles(tok, rng, templates, sentences, count, length, depth):
    """A needles_dense prompt of at most ~`length` tokens including its answers -> (b, num_needles,
    asked). sentences/count: a training haystack pool and its TokenCounter; the asked needle is
    at `depth` of the (short) haystack. Built twice from one seed: first without haystack (its
    token count is the needles' and the question's), then with a haystack of at most a quarter of
    that; fewer questions (not below 2) when the row is short."""
    asked = rng.randint(*DENSE_ASKED)
    room = (length - OVERHEAD_TOKENS - QUESTION_TOKENS * asked) // NEEDLE_TOKENS
    nn = rng.randint(DENSE_NEEDLES[0],
                     max(DENSE_NEEDLES[0], min(DENSE_NEEDLES[1], room - DENSE_DISTRACTORS[0])))
    nd = rng.randint(DENSE_DISTRACTORS[0],
                     max(DENSE_DISTRACTORS[0], min(DENSE_DISTRACTORS[1], room - nn)))
    seed = rng.getrandbits(64)

    def build(n):
        return S.build_needles(tok, n, depth, seed, sentences, templates, "train", nn, nd, count)
    bare = build(0)
    # Each further question costs about what the built one does (question, answer, separators).
    per_q = len(tok.encode(f"\n\n{bare['question']} {bare['answer']}.", False))
    asked = max(DENSE_ASKED[0], min(asked, nn, 1 + (length - len(bare["ids"])) // per_q))
    free = length - len(bare["ids"]) - per_q * (asked - 1)
    hay = rng.randint(0, max(0, min(len(bare["ids"]) // 4, free)))
    return build(len(bare["ids"]) + hay), nn, asked
