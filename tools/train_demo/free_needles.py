"""Texts of train.py's "needles_free" rows (issue 12, v2 run 6), kept free of torch so
tests/scripts/free_needles_test.py can check them without a GPU.

Runs 1-5 drew every training needle from the train template families (1,018 needle wordings, key
pools of >= 60 entries): the held-out families stayed at 0-13 % while the train split reached
90 %. The model keyed retrieval on what the families share: their wordings, their key pools and
their question cues. Here every part of a needle is drawn anew for each row, so nothing but the
task repeats across rows:

- the key: 1-2 training-corpus words after "the", a capitalised corpus word and another word, or
  an invented name (random syllables);
- the attribute: 1-2 corpus words (what the value is *of*, as "PIN" or "strongroom combination");
- the value: a number of 2-9 digits, a code (letters, digits, a dash), a corpus word or an
  invented name;
- the layout: a sentence with the key first or the value first, a "KEY sign VALUE" line, a list
  item under a header, or a two-line dialogue; links and signs drawn from corpus words and a set
  of signs; 0-4 random framing words around it;
- the question: random framing words, the key, some or all of the attribute words, and a random
  ending (nothing, a sign, or a corpus word and a colon).

Distractors share the asked needle's attribute with another key, or its key with another
attribute (then every question names the attribute). Keys and values never come from the
held-out pools of resources/needles/templates.json (`*_heldout`), and the haystack is the training
split's, so the held-out evaluation stays unseen. Row text as needle_rows.answered_text:
    PROMPT " " ANSWER "." ("\\n\\n" QUESTION " " VALUE ".")*
with spans [(begin, end, weight)]: needles weight 0, answers `weight`.
"""
import re

import scenarios as S

ASKED = (1, 4)  # needles of a row, each asked once (the built one first)
DISTRACTORS = (0, 3)
FRAME_WORDS = (0, 4)  # random words before a needle's key or value
TAIL_WORDS = (0, 3)  # and after it
SIGNS = (":", "=", "=>", "->", "-", "|", "~", "/", ">>", "::")
QUESTION_ENDS = ("", "?", ":", " -", "?:", "...", " =", " ->")
SYLLABLES = ("ka", "lo", "min", "tor", "ve", "sa", "dru", "fen", "ith", "gal", "mor", "ne", "pra",
             "qui", "rel", "sto", "ul", "wen", "yar", "zo", "bel", "cas", "dor", "el")
CODE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
QUESTION_TOKENS = 24  # token cost of a further question and its answer, with some margin
ANSWER_TOKENS = 8  # of the first answer (a 9-digit number is 3-5 tokens, " ." and EOS)


def invented_name(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def heldout_words(templates):
    """Lower-case words of every held-out pool (keys and values a needle must not use)."""
    out = set()
    for name, pool in templates["pools"].items():
        if name.endswith("_heldout"):
            out.update(w.lower() for entry in pool for w in entry.split())
    return out


def heldout_wording(templates):
    """Lower-case words of 4 or more letters in the held-out families' needles, questions and
    intros (every alternative, through scenarios.parse_alternations): the wording a natural link
    must not use. Shorter words (is, of, the, by) are grammar, not wording."""
    out = set()
    for t in templates["templates"]:
        if t["split"] != "heldout":
            continue
        for text in [t["intro"], t["intro_multi"]] + t["questions"] + t["needles"]:
            parts = " ".join(" ".join(alts) for _, alts in S.parse_alternations(text))
            parts = parts.replace("{key}", " ").replace("{value}", " ").lower()
            out.update(w for w in re.findall(r"[a-z]+", parts) if len(w) >= 4)
    return out


def proper_nouns(sentences):
    """Capitalised words of the sentences that never occur in lower case, sorted: mostly the
    names and places of the training texts (some are words seen only at a sentence start)."""
    caps, lower = set(), set()
    for s in sentences:
        for w in s.split():
            w = w.strip(".,;:!?\"'()")
            if len(w) >= 3 and w.isalpha():
                (caps if w[0].isupper() and w[1:].islower() else lower).add(w)
    low = {w.lower() for w in lower}
    return sorted(w for w in caps if w.lower() not in low)


# Links of natural rows (--free-natural): grammar a value follows in ordinary prose, so that the
# value is marked by syntax, as in the held-out families ("It flashed {value}", "ask for
# {value}"). Phrases with a word of the held-out wording are dropped at load (heldout_wording).
NATURAL_LINKS = ("is", "was", "is now", "reads", "equals", "became", "goes to", "belongs to",
                 "is held by", "is kept as", "is set to", "was given as", "comes out as",
                 "is listed as", "is marked", "is known as", "is called", "means",
                 "turned out to be", "is written as", "stands at", "went to", "was left with",
                 "is named", "said", "wrote", "chose", "picked", "got", "keeps", "uses",
                 "points to", "leads to", "is shared with", "was sent to", "landed on")


class FreeNeedles:
    """Draws needles_free rows. words: corpus words (needle_rows.corpus_words of the training
    sentences) without the held-out pools' words; rng: random.Random per call. natural
    (train.py --free-natural): links from NATURAL_LINKS instead of random words, and half of the
    name values real names of the training texts (`names`, proper_nouns()) instead of invented
    ones. Without it the rows are drawn exactly as in runs 6-8."""

    def __init__(self, words, templates, natural=False, names=()):
        banned = heldout_words(templates)
        self.words = [w for w in words if w.isalpha() and len(w) >= 3 and w not in banned]
        self.banned = banned
        self.natural = natural
        wording = heldout_wording(templates)
        self.links = [p for p in NATURAL_LINKS if not set(p.split()) & wording]
        self.names = [n for n in names if n.lower() not in banned and n.lower() not in wording]

    def _w(self, rng, lo, hi):
        return [rng.choice(self.words) for _ in range(rng.randint(lo, hi))]

    def key(self, rng):
        u = rng.random()
        if u < 0.4:
            return "the " + " ".join(self._w(rng, 1, 2))
        if u < 0.7:
            return " ".join([rng.choice(self.words).capitalize()] + self._w(rng, 0, 1))
        return self._invented(rng)

    def _invented(self, rng):
        """An invented name that is no word of the held-out pools."""
        while True:
            name = invented_name(rng)
            if name.lower() not in self.banned:
                return name

    def value(self, rng):
        u = rng.random()
        if u < 0.4:
            digits = rng.randint(2, 9)
            return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9))
                                                    for _ in range(digits - 1))
        if u < 0.6:
            a = "".join(rng.choice(CODE_LETTERS) for _ in range(rng.randint(1, 3)))
            b = "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(2, 4)))
            return a + rng.choice(("-", "", "-")) + b
        if u < 0.8:
            return rng.choice(self.words)
        if self.natural and self.names and rng.random() < 0.5:
            return rng.choice(self.names)
        return self._invented(rng)

    def needle(self, rng, key, attr, value):
        """One needle text holding key, the attribute words and value once each."""
        a = " ".join(attr)
        # Framing words are set off by commas, so that the value stays the word after the link
        # (or before it, value first): the position a held-out needle's value has too.
        pre = " ".join(self._w(rng, *FRAME_WORDS))
        pre = pre + "," if pre else ""
        post = " ".join(self._w(rng, *TAIL_WORDS))
        post = ", " + post if post else ""
        if rng.random() < 0.3:
            link = rng.choice(SIGNS)
        elif self.natural:
            link = rng.choice(self.links)
        else:
            link = " ".join(self._w(rng, 1, 2))
        form = rng.randrange(5)
        if form == 0:  # sentence, key first
            if rng.random() < 0.5:
                return _sentence(f"{pre} the {a} of {key} {link} {value}", post)
            return _sentence(f"{pre} {key} {a} {link} {value}", post)
        if form == 1:  # sentence, value first
            # Without framing words the value opens the sentence: kept as written (a word value
            # capitalised would no longer be the answer).
            return _sentence(f"{pre} {value} {link} the {a} of {key}", post, capital=bool(pre))
        sign = rng.choice(SIGNS)
        if form == 2:  # a line of a register
            tag = rng.choice((a.upper(), f"[{a}]", f"{a.capitalize()}:", f"<{a}>"))
            return f"\n{tag} {key} {sign} {value}\n"
        if form == 3:  # a list item under a header
            header = " ".join(self._w(rng, 1, 3)).capitalize()
            bullet = rng.choice(("-", "*", "1.", "~", ">"))
            return f"\n{header} ({a}):\n{bullet} {key} {sign} {value}\n"
        speaker, other = invented_name(rng), invented_name(rng)
        ask = " ".join(f"{pre} the {a} of {key}?".split())  # pre: words and a comma, or ""
        return f"\n{speaker}: {ask}\n{other}: {_sentence(f'{link} {value}', post)}\n"

    def question(self, rng, key, attr, need_attr):
        """Random framing around the key and (some of) the attribute words, random ending."""
        if need_attr or rng.random() < 0.8:
            k = max(1, len(attr) - rng.randint(0, 1))
            a = " ".join(attr[:k] if rng.random() < 0.5 else attr[len(attr) - k:])
            core = rng.choice((f"the {a} of {key}", f"{key} {a}", f"{a} {key}"))
        else:
            core = key
        pre = self._w(rng, 0, 3)
        post = self._w(rng, 0, 2)
        if rng.random() < 0.8:
            end = rng.choice(QUESTION_ENDS)
        else:  # a word and a colon, as "Answer:" or "Reply:" would be
            end = " " + rng.choice(self.words).capitalize() + ":"
        text = " ".join(pre + [core] + post) + end
        return text[0].upper() + text[1:]

    def row_text(self, tok, rng, sentences, count, length, weight):
        """-> (text, spans, facts, asked): about `length` tokens with 1-4 needles (each asked, the
        built one first) and 0-3 distractors in a training haystack, then the questions and
        answers. facts: [(key, attribute words, value)], the asked ones first. A draw whose asked
        value is not exactly once in the prompt (a word value also in the haystack) is redrawn."""
        while True:
            text, spans, facts, asked = self._draw_row(tok, rng, sentences, count, length, weight)
            prompt = text[:spans[len(facts)][0]]  # spans: one per needle, then the answers
            if all(S.answer_occurrences(prompt, f[2]) == 1 for f in facts[:asked]):
                return text, spans, facts, asked

    def _draw_row(self, tok, rng, sentences, count, length, weight):
        asked = rng.randint(*ASKED)
        nd = rng.randint(*DISTRACTORS)
        facts, keys, values = [], set(), set()

        def new_value():
            v = self.value(rng)
            while v in values:
                v = self.value(rng)
            values.add(v)
            return v
        while len(facts) < asked:
            k = self.key(rng)
            if k not in keys:
                keys.add(k)
                facts.append((k, self._w(rng, 1, 2), new_value()))
        need_attr = False
        for _ in range(nd):
            k, attr = facts[0][0], facts[0][1]
            if rng.random() < 0.5:  # the asked attribute with another key
                while k in keys:
                    k = self.key(rng)
                keys.add(k)
            else:  # the asked key with another attribute: questions must name the attribute
                while attr == facts[0][1]:
                    attr = self._w(rng, 1, 2)
                need_attr = True
            facts.append((k, attr, new_value()))
        needles = [self.needle(rng, k, a, v) for k, a, v in facts]
        depths = [rng.random() for _ in facts]
        questions = [self.question(rng, k, a, need_attr) for k, a, _ in facts[:asked]]
        intro = " ".join(self._w(rng, 3, 8)).capitalize() + "."
        room = length - ANSWER_TOKENS - QUESTION_TOKENS * (asked - 1)
        text, _ids, nspans = S.assemble(tok, intro, questions[0], needles, depths, sentences,
                                        rng.randrange(len(sentences)), room, count)
        spans = [(a, z, 0.0) for a, z in nspans]
        for j in range(asked):
            if j > 0:
                text += "\n\n" + questions[j]
            text += " "
            spans.append((len(text), len(text) + len(facts[j][2]), weight))
            text += facts[j][2] + "."
        return text, spans, facts, asked


def _sentence(body, post, capital=True):
    """body + post (", words" or "") as one sentence: single spaces, capital first (unless not
    `capital`), full stop."""
    text = " ".join(body.split()) + post + "."
    return text[0].upper() + text[1:] if capital else text
