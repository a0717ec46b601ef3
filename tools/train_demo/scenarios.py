"""Passkey and needle-in-a-haystack prompts, built exactly as KVScope's C++ builders build them
(core/scenarios/): same texts, same random draws (SplitMix64), same haystack sentence splitting,
same filling and needle placement. Given the same tokenizer, seed, length and depth, both produce
the same token ids, so the grid measured here with HF transformers on the GPU and the grid
`kvscope eval` measures on the CPU are the same experiment.

The tokenizer is passed as an object with `encode(text, add_special) -> list[int]`.

Prompt layout (one string, encoded once):
    INTRO "\\n\\n" haystack-with-needle(s) "\\n\\n" QUESTION
and the expected continuation is " " + digits. Haystack pieces (whole sentences, then whole words
of one more sentence to come close to the target length) are joined by single spaces; the needle
is inserted between pieces where the haystack token count before it is closest to depth * total.
"""
import math
import re

MASK64 = (1 << 64) - 1

PASSKEY_INTRO = ("There is a pass key hidden inside a lot of irrelevant text. "
                 "Find it and remember it.")
PASSKEY_NEEDLE = "The pass key is {v}. Remember it. {v} is the pass key."
PASSKEY_QUESTION = "What is the pass key? The pass key is"
# Repetitive filler of the passkey test (our own sentences).
PASSKEY_FILLER = [
    "The river runs to the sea.",
    "The hills are green and quiet.",
    "The birds sing in the trees.",
    "The wind moves over the fields.",
    "Here we go again.",
    "Back and forth we go.",
]
NIAH_INTRO = "A special magic number is hidden in the text below. Remember it."
NIAH_INTRO_MULTI = "Special magic numbers are hidden in the text below. Remember them."
NIAH_NEEDLE = "The special magic number for {k} is {v}."
NIAH_QUESTION = ("What is the special magic number for {k}? "
                 "The special magic number for {k} is")

KIND_IDS = {"passkey": 1, "niah": 2, "needles": 3}


def _splitmix_step(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state, out = _splitmix_step(self.state)
        return out

    def below(self, n):
        return self.next() % n


def mix_seed(*parts):
    """Folds integers into one 64-bit seed (order matters)."""
    s = 0x6B7673636F706521  # "kvscope!"
    for p in parts:
        _, s = _splitmix_step(s ^ (int(p) & MASK64))
    return s


def trial_seed(base_seed, kind, length, depth, trial):
    """Seed of one cell trial of an accuracy grid (kvscope eval uses the same)."""
    return mix_seed(base_seed, KIND_IDS[kind], length, math.floor(depth * 1000 + 0.5), trial)


_WS = re.compile(r"[ \t\n\r\f\v]+")


def _word_char(c):
    # Letters, digits and any non-ASCII character continue a word (UTF-8 bytes >= 0x80 in C++).
    return ord(c) >= 0x80 or c.isascii() and c.isalnum()


def answer_found(generated, answer):
    """Whole-word match, as kvscope::answer_found: "6140999" does not count as finding "61409"."""
    return answer_occurrences(generated, answer) > 0


def answer_occurrences(generated, answer):
    """Whole-word occurrences of answer in generated (kvscope::answer_occurrences)."""
    if not answer:
        return 0
    n = 0
    check_left, check_right = _word_char(answer[0]), _word_char(answer[-1])
    at = generated.find(answer)
    while at != -1:
        end = at + len(answer)
        left_ok = not check_left or at == 0 or not _word_char(generated[at - 1])
        right_ok = not check_right or end == len(generated) or not _word_char(generated[end])
        n += left_ok and right_ok
        at = generated.find(answer, at + 1)
    return n


def normalize_ws(text):
    return _WS.sub(" ", text).strip(" ")


def split_sentences(text):
    """Whitespace-normalised text -> sentences. A sentence ends at '.', '!' or '?' followed by a
    space (the space is dropped)."""
    text = normalize_ws(text)
    out, start = [], 0
    for i in range(len(text) - 1):
        if text[i] in ".!?" and text[i + 1] == " ":
            if i + 1 > start:
                out.append(text[start:i + 1])
            start = i + 2
    if start < len(text):
        out.append(text[start:])
    return out


class TokenCounter:
    """Caches token counts of " " + piece."""

    def __init__(self, tok):
        self.tok = tok
        self.cache = {}

    def __call__(self, piece):
        n = self.cache.get(piece)
        if n is None:
            n = len(self.tok.encode(" " + piece, False))
            self.cache[piece] = n
        return n


def _fill(sentences, start, budget, count):
    pieces, costs, used = [], [], 0
    i = start
    while True:
        s = sentences[i % len(sentences)]
        c = count(s)
        if used + c > budget:
            break
        pieces.append(s)
        costs.append(c)
        used += c
        i += 1
    for w in sentences[i % len(sentences)].split(" "):
        c = count(w)
        if used + c > budget:
            break
        pieces.append(w)
        costs.append(c)
        used += c
    return pieces, costs


def _insert_index(costs, depth):
    total = sum(costs)
    target = depth * total
    best, best_err, acc = 0, abs(target), 0
    for k, c in enumerate(costs):
        acc += c
        err = abs(acc - target)
        if err < best_err:
            best, best_err = k + 1, err
    return best


def assemble(tok, intro, question, needles, depths, sentences, start, length, count):
    """Builds the prompt text and ids. needles[j] goes at depths[j]. Returns (text, ids,
    needle_char_spans)."""
    overhead = len(tok.encode(intro + "\n\n", True)) + len(tok.encode("\n\n" + question, False))
    needle_cost = sum(len(tok.encode(" " + n, False)) for n in needles)
    budget = max(0, length - overhead - needle_cost)
    pieces, costs = _fill(sentences, start, budget, count)
    while True:
        where = [_insert_index(costs, d) for d in depths]
        # Needles at the same index keep their order.
        order = sorted(range(len(needles)), key=lambda j: (where[j], j))
        parts = []  # (text, needle index or -1)
        k = 0
        for j in order:
            while k < where[j]:
                parts.append((pieces[k], -1))
                k += 1
            parts.append((needles[j], j))
        parts.extend((p, -1) for p in pieces[k:])
        text = intro + "\n\n"
        spans = [None] * len(needles)
        for i, (p, j) in enumerate(parts):
            if i > 0:
                text += " "
            if j >= 0:
                spans[j] = (len(text), len(text) + len(p))
            text += p
        text += "\n\n" + question
        ids = tok.encode(text, True)
        if len(ids) <= length or not pieces:
            return text, ids, spans
        pieces.pop()
        costs.pop()


def build_passkey(tok, length, depth, seed, count=None):
    """-> dict(text, ids, answer, needle_spans (chars))."""
    count = count or TokenCounter(tok)
    rng = SplitMix64(seed)
    value = str(10000 + rng.below(90000))
    start = rng.below(len(PASSKEY_FILLER))
    needle = PASSKEY_NEEDLE.format(v=value)
    text, ids, spans = assemble(tok, PASSKEY_INTRO, PASSKEY_QUESTION, [needle], [depth],
                                PASSKEY_FILLER, start, length, count)
    return {"text": text, "ids": ids, "answer": value, "needle_spans": spans}


def build_niah(tok, length, depth, seed, sentences, keys, num_needles=1, count=None):
    """Single or multi-needle NIAH. The queried needle is at `depth`; the others at random depths.
    -> dict(text, ids, answer, key, needle_spans (chars), query index)."""
    count = count or TokenCounter(tok)
    rng = SplitMix64(seed)
    chosen, values = [], []
    for _ in range(num_needles):
        k = keys[rng.below(len(keys))]
        while k in chosen:
            k = keys[rng.below(len(keys))]
        chosen.append(k)
        values.append(str(1000000 + rng.below(9000000)))
    query = rng.below(num_needles)
    depths = []
    for j in range(num_needles):
        depths.append(depth if j == query else rng.below(1001) / 1000.0)
    start = rng.below(len(sentences))
    needles = [NIAH_NEEDLE.format(k=k, v=v) for k, v in zip(chosen, values)]
    intro = NIAH_INTRO if num_needles == 1 else NIAH_INTRO_MULTI
    question = NIAH_QUESTION.format(k=chosen[query])
    text, ids, spans = assemble(tok, intro, question, needles, depths, sentences, start, length,
                                count)
    return {"text": text, "ids": ids, "answer": values[query], "key": chosen[query],
            "needle_spans": spans, "query": query, "keys": chosen, "values": values}


def load_haystack_dir(path):
    """All *.txt of a haystack folder in name order -> one list of sentences; and the needle keys
    (needle_keys.list, one per line)."""
    import os
    sentences = []
    for name in sorted(os.listdir(path)):
        if name.endswith(".txt"):
            with open(os.path.join(path, name), encoding="utf-8") as f:
                sentences += split_sentences(f.read())
    with open(os.path.join(path, "needle_keys.list"), encoding="utf-8") as f:
        keys = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    return sentences, keys


# ---------------------------------------------------------------------------------------------
# "needles": templates of resources/needles/templates.json (core/scenarios/needle_templates.h)

FORMATS = ("sentence", "kv", "list", "dialogue")
NEEDLE_ATTEMPTS = 16  # redraws while the answer also occurs in the haystack


def fill_template(text, key, value):
    """Replaces {key} and {value} left to right, as kvscope::fill_template."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("{key}", i):
            out.append(key)
            i += 5
        elif text.startswith("{value}", i):
            out.append(value)
            i += 7
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_alternations(text, where="template text"):
    """Template text -> [(is_group, [alternatives])] (core/scenarios/text_alternation.h): "((A|B))"
    is one of A, B; groups do not nest; no alternative is empty. Raises ValueError(where: ...)."""
    out, literal, i = [], "", 0
    while i < len(text):
        if text.startswith("))", i):
            raise ValueError(f"{where}: '))' at byte {len(text[:i].encode())} closes no '(('")
        if not text.startswith("((", i):
            literal += text[i]
            i += 1
            continue
        at = len(text[:i].encode())
        close = text.find("))", i + 2)
        if close < 0:
            raise ValueError(f"{where}: '((' at byte {at} is never closed by '))'")
        body = text[i + 2:close]
        if "((" in body:
            raise ValueError(f"{where}: '((' inside the group at byte {at} (groups do not nest)")
        alts = body.split("|")
        if not all(alts):
            raise ValueError(f"{where}: empty alternative in the group at byte {at}")
        if literal:
            out.append((False, [literal]))
        literal = ""
        out.append((True, alts))
        i = close + 2
    if literal:
        out.append((False, [literal]))
    return out


def resolve_alternations(text, below):
    """One draw below(len(alternatives)) per group, left to right (kvscope::resolve_alternations);
    `below` is SplitMix64.below for prompts, or e.g. random.Random.randrange."""
    return "".join(alts[below(len(alts))] if group else alts[0]
                   for group, alts in parse_alternations(text))


def count_range(pieces, what):
    """(fewest, most) occurrences of `what` over every resolution of parsed `pieces`."""
    lo = sum(min(a.count(what) for a in alts) for _, alts in pieces)
    hi = sum(max(a.count(what) for a in alts) for _, alts in pieces)
    return lo, hi


def all_resolutions(text, limit=100000):
    """Every resolution of `text`, first group slowest, at most `limit`."""
    out = [""]
    for _, alts in parse_alternations(text):
        out = [h + a for h in out for a in alts][:limit]
    return out


def load_templates(path):
    """Reads and checks a template set; raises ValueError naming the file and field (the C++
    loader's rules). -> dict(file, pools, templates (file order), haystacks {split: folder})."""
    import json
    import os

    def bad(where, problem):
        raise ValueError(f"{path}: {where}: {problem}")

    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: {e}") from e
    pools = doc.get("pools")
    if not isinstance(pools, dict):
        bad("pools", "missing (an object: pool name -> list of texts)")
    for name, lst in pools.items():
        if not isinstance(lst, list) or not lst or not all(isinstance(v, str) and v for v in lst):
            bad("pools." + name, "expected a non-empty list of non-empty texts")

    def text(obj, key, where):
        v = obj.get(key)
        if not isinstance(v, str) or not v:
            bad(f"{where}.{key}", "missing or empty text")
        return v

    def parsed(t, where):
        try:
            return parse_alternations(t, where)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def placeholders(t, value_once, where):
        pieces = parsed(t, where)
        if count_range(pieces, "{key}")[0] == 0:
            bad(where, "has no {key} (in some choice of its alternatives)")
        if value_once and count_range(pieces, "{value}") != (1, 1):
            bad(where, "must hold {value} exactly once (in every choice of its alternatives)")
        if not value_once and count_range(pieces, "{value}")[1] != 0:
            bad(where, "a question must not hold {value}")
        rest = fill_template(t, "", "")
        if "{" in rest or "}" in rest:
            bad(where, "braces other than {key} and {value}")

    templates = []
    if not isinstance(doc.get("templates"), list):
        bad("templates", "missing (a list of needle templates)")
    for i, t in enumerate(doc["templates"]):
        w = f"templates[{i}]"
        if not isinstance(t, dict):
            bad(w, "expected an object")
        tid = text(t, "id", w)
        split = text(t, "split", w)
        if split not in ("train", "heldout"):
            bad(w + ".split", f"'{split}' (expected train or heldout)")
        fmt = text(t, "format", w)
        if fmt not in FORMATS:
            bad(w + ".format", f"'{fmt}' (expected sentence, kv, list or dialogue)")
        keys = text(t, "keys", w)
        if keys not in pools:
            bad(w + ".keys", f"no pool named '{keys}' in \"pools\"")
        v = t.get("value")
        if not isinstance(v, dict):
            bad(w + ".value", "missing (an object with \"kind\")")
        kind = text(v, "kind", w + ".value")
        if kind == "number":
            d = v.get("digits")
            if not (isinstance(d, list) and len(d) == 2 and all(isinstance(x, int) for x in d)):
                bad(w + ".value.digits", "expected [LO, HI]")
            if not 1 <= d[0] <= d[1] <= 18:
                bad(w + ".value.digits", "expected 1 <= LO <= HI <= 18")
        elif kind in ("word", "name"):
            if text(v, "pool", w + ".value") not in pools:
                bad(w + ".value.pool", f"no pool named '{v['pool']}' in \"pools\"")
        elif kind == "code":
            if not set("@#") & set(text(v, "pattern", w + ".value")):
                bad(w + ".value.pattern", "needs '@' (letter) or '#' (digit) places")
        else:
            bad(w + ".value.kind", f"'{kind}' (expected number, word, name or code)")
        # "needle": one text or a list of forms (e.g. key first, value first).
        needle = t.get("needle")
        if isinstance(needle, list):
            if not needle:
                bad(w + ".needle", "expected a non-empty list of texts")
            for j, n in enumerate(needle):
                if not isinstance(n, str) or not n:
                    bad(f"{w}.needle[{j}]", "expected a non-empty text")
                placeholders(n, True, f"{w}.needle[{j}]")
        else:
            needle = [text(t, "needle", w)]
            placeholders(needle[0], True, w + ".needle")
        qs = t.get("questions")
        if not isinstance(qs, list) or not qs:
            bad(w + ".questions", "expected a non-empty list of texts")
        for j, q in enumerate(qs):
            if not isinstance(q, str) or not q:
                bad(f"{w}.questions[{j}]", "expected a non-empty text")
            placeholders(q, False, f"{w}.questions[{j}]")
        intro = text(t, "intro", w)
        intro_multi = t.get("intro_multi") or intro
        parsed(intro, w + ".intro")
        parsed(intro_multi, w + ".intro_multi")
        if any(o["id"] == tid for o in templates):
            bad(w + ".id", f"'{tid}' is used twice")
        templates.append({"id": tid, "split": split, "format": fmt, "keys": keys, "value": v,
                          "intro": intro, "intro_multi": intro_multi,
                          "needles": needle, "questions": qs})
    for split in ("train", "heldout"):
        if not any(t["split"] == split for t in templates):
            bad("templates", f"no template of split '{split}'")
    hs = doc.get("haystacks")
    if not isinstance(hs, dict):
        bad("haystacks", 'missing ({"train": DIR, "heldout": DIR})')
    base = os.path.dirname(path)
    haystacks = {s: os.path.join(base, text(hs, s, "haystacks")) for s in ("train", "heldout")}
    return {"file": path, "pools": pools, "templates": templates, "haystacks": haystacks}


def _draw_value(spec, pools, rng):
    kind = spec["kind"]
    if kind == "number":
        lo, hi = spec["digits"]
        n = lo + rng.below(hi - lo + 1)
        base = 10 ** (n - 1)
        return str(base + rng.below(9 * base))
    if kind in ("word", "name"):
        pool = pools[spec["pool"]]
        return pool[rng.below(len(pool))]
    out = []
    for c in spec["pattern"]:
        if c == "@":
            out.append(chr(ord("A") + rng.below(26)))
        elif c == "#":
            out.append(chr(ord("0") + rng.below(10)))
        else:
            out.append(c)
    return "".join(out)


def draw_needle_facts(templates, split, num_needles, distractors, depth, rng):
    """The draws of kvscope::draw_needle_facts, in its order (needle_templates.h): per needle
    template, key, value, needle form and its alternations; query; per distractor key, value,
    needle form and its alternations; depths; question form and its alternations; intro
    alternations. -> (facts, query, intro, question); a fact is dict(template, key, value, text,
    depth)."""
    pools = templates["pools"]
    pool = [i for i, t in enumerate(templates["templates"]) if t["split"] == split]
    total = num_needles + distractors
    facts = []

    def add(ti):
        t = templates["templates"][ti]
        keys = pools[t["keys"]]
        taken_k = {f["key"] for f in facts}
        taken_v = {f["value"] for f in facts}
        cap = (len(set(pools[t["value"]["pool"]])) if t["value"]["kind"] in ("word", "name")
               else 1000)
        if all(k in taken_k for k in keys) or len(facts) >= cap:
            raise ValueError(f"{templates['file']}: template '{t['id']}': its pools are too small "
                             f"for {total} needles with distinct keys and values")
        k = keys[rng.below(len(keys))]
        while k in taken_k:
            k = keys[rng.below(len(keys))]
        v = _draw_value(t["value"], pools, rng)
        while v in taken_v:
            v = _draw_value(t["value"], pools, rng)
        form = t["needles"][rng.below(len(t["needles"]))]
        needle = resolve_alternations(form, rng.below)
        facts.append({"template": ti, "key": k, "value": v,
                      "text": fill_template(needle, k, v)})

    for _ in range(num_needles):
        add(pool[rng.below(len(pool))])
    query = rng.below(num_needles)
    qt = facts[query]["template"]
    for _ in range(distractors):
        add(qt)
    for j, f in enumerate(facts):
        f["depth"] = depth if j == query else rng.below(1001) / 1000.0
    t = templates["templates"][qt]
    question = t["questions"][rng.below(len(t["questions"]))]
    question = fill_template(resolve_alternations(question, rng.below), facts[query]["key"], "")
    intro = resolve_alternations(t["intro"] if total == 1 else t["intro_multi"], rng.below)
    return facts, query, intro, question


def build_needles(tok, length, depth, seed, sentences, templates, split="train", num_needles=1,
                  distractors=0, count=None):
    """A prompt from the template set (kvscope ScenarioBuilder, kind needles). The asked needle is
    at `depth`; the other needles and the distractors at random depths. A draw whose answer also
    occurs in the haystack is redrawn from mix_seed(seed, attempt).
    -> dict(text, ids, answer, key, template (the asked one's id), templates (every fact's),
    needle_spans (chars), query, keys, values, question)."""
    count = count or TokenCounter(tok)
    for attempt in range(NEEDLE_ATTEMPTS):
        rng = SplitMix64(seed if attempt == 0 else mix_seed(seed, attempt))
        facts, query, intro, question = draw_needle_facts(templates, split, num_needles,
                                                          distractors, depth, rng)
        start = rng.below(len(sentences))
        text, ids, spans = assemble(tok, intro, question, [f["text"] for f in facts],
                                    [f["depth"] for f in facts], sentences, start, length, count)
        answer = facts[query]["value"]
        if answer_occurrences(text, answer) == 1:
            return {"text": text, "ids": ids, "answer": answer, "key": facts[query]["key"],
                    "template": templates["templates"][facts[query]["template"]]["id"],
                    "templates": [templates["templates"][f["template"]]["id"] for f in facts],
                    "needle_spans": spans, "query": query,
                    "keys": [f["key"] for f in facts], "values": [f["value"] for f in facts],
                    "question": question}
    raise ValueError(f"needles: the answer kept occurring in the haystack text too "
                     f"({NEEDLE_ATTEMPTS} draws from seed {seed})")
