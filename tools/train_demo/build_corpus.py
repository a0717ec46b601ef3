#!/usr/bin/env python3
"""Builds the demo model's text corpus from redistributable texts shipped as Debian packages, and
the haystack texts in resources/haystacks/.

Run on any Debian 12 machine (standard library only), from the repository root:

    apt-get install bible-kjv jargon-text fortunes debian-faq python3.11-doc wordnet-base
    python3 tools/train_demo/build_corpus.py --out .devcarry/demo/corpus \
        --haystacks resources/haystacks --heldout-haystacks resources/haystacks_heldout

Sources and licences (each checked in /usr/share/doc/<package>/copyright):
  bible-kjv-text  King James Version (1611): public domain. Printed with the package's `bible`
                  program (the data file is in its own compressed format).
  jargon-text     The Jargon File 4.4.7 (E. S. Raymond et al.): public domain.
  fortunes        fortune-mod data files: BSD licence (University of California) and per-file
                  notes; in Debian main (DFSG-free). The offensive set (fortunes-off) is not used.
  debian-faq      The Debian GNU/Linux FAQ, (c) Software in the Public Interest: verbatim and
                  modified copies permitted under the same notice.
  python3.11-doc  The Python 3.11 documentation (tutorial and FAQ prose, code examples dropped):
                  PSF License Version 2 (Debian main). Held-out haystack source only: never in
                  the corpus, so neither the tokenizer nor the model sees it.
  wordnet-base    WordNet 3.0 (only with --wordnet): the WordNet 3.0 licence (permission to use,
                  copy, modify and distribute for any purpose, keeping Princeton's notice, which
                  the model card then carries). Each synset becomes a plain sentence of its words,
                  definition and examples ("A messenger (or courier) is a person who carries a
                  message."): word meanings and synonyms, which the other sources, about 2 M
                  tokens, are too small to teach. Held-out needle wording stays unseen: no
                  template text is in it, only the words of the language.
GPL-licensed texts (debian-reference, dict-gcide) are deliberately not used, so the weights carry
no copyleft question.

Held out (never trained on; used for perplexity and as NIAH haystacks):
  KJV book of Acts, Jargon File entries whose headword starts with P or Q, fortune files
  `wisdom` and `science`. These are unseen texts of sources the corpus trains on (the
  train-distribution haystacks of the needle evaluation, resources/haystacks).
Held-out haystack sources (issue 12: a source the training never sees, not even in the tokenizer):
  the Python tutorial and FAQ (resources/haystacks_heldout).

Writes:
  OUT/train.jsonl, OUT/heldout.jsonl   one {"source", "text"} document per line
  OUT/SOURCES.json                     per source: package, version, licence, bytes kept
  OUT/haystacks_train/<source>.txt     the training split's prose per source, for the recipe's
                                       needle rows (train.py --train-haystacks)
  HAYSTACKS/kjv_acts.txt, HAYSTACKS/jargon_pq.txt   (only with --haystacks)
  HELDOUT_HAYSTACKS/python_tutorial.txt, python_faq.txt   (only with --heldout-haystacks)
"""
import argparse
import gzip
import json
import os
import re
import subprocess

BOX_CHARS = re.compile("[\u2500-\u257f\u2550-\u256c]")
HELD_OUT_FORTUNES = {"wisdom", "science"}
SKIPPED_FORTUNES = {"ascii-art", "translate-me"}  # pictures; non-English text

LICENCES = {
    "kjv": ("bible-kjv-text", "public domain (King James Version, 1611)"),
    "jargon": ("jargon-text", "public domain (The Jargon File 4.4.7)"),
    "fortunes": ("fortunes", "BSD (fortune-mod, University of California) and per-file notes; "
                             "Debian main"),
    "python_docs": ("python3.11-doc", "PSF License Version 2 (Python documentation); held-out "
                                      "haystack source only"),
    "wordnet": ("wordnet-base", "WordNet 3.0 licence (c) 2006 Princeton University; notice kept "
                                "in the model card"),
    "debian_faq": ("debian-faq", "verbatim and modified copying permitted, (c) Software in the "
                                 "Public Interest"),
}


def package_version(pkg):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def unwrap(paragraph_lines):
    """Joins the lines of one paragraph into one line, collapsing whitespace."""
    return " ".join(" ".join(paragraph_lines).split())


def paragraphs(lines):
    block = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def kjv_chapters():
    """Yields (book, chapter, text) with verse numbers dropped and verses joined into one
    paragraph per chapter."""
    out = subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    book = chap = None
    verses = []
    for line in out.split("\n"):
        m = re.match(r"^([1-3]?\s?[A-Z][A-Za-z ]*?) (\d+)$", line.strip())
        if m and not line.startswith(" "):
            if verses:
                yield book, chap, " ".join(verses)
            book, chap, verses = m.group(1), int(m.group(2)), []
            continue
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:
            verses.append(" ".join(m.group(1).split()))
    if verses:
        yield book, chap, " ".join(verses)


def jargon_docs():
    """Yields (headword or None, text). Entries keep their paragraphs; {cross refs} lose braces;
    tables (box-drawing characters) and one-word table-of-contents lines are dropped."""
    path = "/usr/share/doc/jargon-text/jargon.txt.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f]
    lines = [l for l in lines if not BOX_CHARS.search(l)]
    current_head, current = None, []
    prose = []

    def flush():
        if current_head is not None and current:
            return [(current_head, "\n\n".join(current))]
        return []

    docs = []
    for para in paragraphs(lines):
        text = unwrap(para).replace("{", "").replace("}", "")
        m = re.match(r"^:(.+?):\s*(.*)$", text)
        if m and para[0].startswith("   :"):
            docs += flush()
            current_head, current = m.group(1), [text]
            continue
        if current_head is None or text.startswith("Part III"):
            # front matter or appendices: keep real prose only
            if current_head is not None:
                docs += flush()
                current_head, current = None, []
            if len(text.split()) >= 5:
                prose.append(text)
            continue
        current.append(text)
    docs += flush()
    for i in range(0, len(prose), 12):
        docs.append((None, "\n\n".join(prose[i:i + 12])))
    return docs


def fortune_docs():
    """Yields (file name, fortune text). Backspace overstriking is undone."""
    root = "/usr/share/games/fortunes"
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if "." in name or os.path.islink(path) or not os.path.isfile(path):
            continue
        if name in SKIPPED_FORTUNES:
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read()
        raw = re.sub(".\b", "", raw)
        for item in re.split(r"\n%\n", raw):
            lines = [l.rstrip() for l in item.strip("\n").split("\n")]
            text = "\n".join(lines).strip()
            if len(text) >= 20:
                yield name, text


def debian_faq_docs():
    path = "/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f]
    paras = []
    for para in paragraphs(lines):
        if set("".join(para).strip()) <= set("-= "):
            continue
        text = unwrap(para)
        if len(text.split()) >= 5:
            paras.append(text)
    for i in range(0, len(paras), 10):
        yield "\n\n".join(paras[i:i + 10])


WORDNET_ROOT = "/usr/share/wordnet"
WORDNET_PARTS = ("noun", "verb", "adj", "adv")
WORDNET_DOC_SYNSETS = 40  # synsets per document, in file order (one lexicographer file's run)
WORDNET_HELD_EVERY = 20   # every 20th document is held out (perplexity), never trained on
ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # adjective position markers: "galore(ip)"


def wordnet_sentence(part, words, gloss):
    """One synset as a sentence. words: its lemmas (spaces for underscores); gloss: the database's
    'definition; "example"; ...' text. Nouns: 'A w1 (or w2, w3) is DEF.'; verbs: 'To w1 ... is to
    DEF.'; adjectives and adverbs: 'W1 ... means DEF.'; then each example as 'For example: "EX".'"""
    pieces = [g.strip() for g in gloss.split(";") if g.strip()]
    defs = [g for g in pieces if not g.startswith('"')]
    examples = [g.strip('"').strip() for g in pieces if g.startswith('"')]
    if not defs:
        return None
    definition = "; ".join(defs).rstrip(".")
    alt = f" (or {', '.join(words[1:4])})" if len(words) > 1 else ""
    if part == "noun":
        head = words[0]
        art = "An" if head[:1].lower() in "aeiou" else "A"
        art = "" if head[:1].isupper() else art + " "
        text = f"{art}{head}{alt} is {definition}."
    elif part == "verb":
        text = f"To {words[0]}{alt} is to {definition}."
    else:
        text = f"{words[0][:1].upper()}{words[0][1:]}{alt} means {definition}."
    examples = [f'"{ex}"' for ex in examples[:2] if ex]
    if examples:
        text += " For example: " + "; ".join(examples) + "."
    return text


def wordnet_docs():
    """Yields WordNet documents: WORDNET_DOC_SYNSETS synset sentences each, per part of speech in
    the database's order (which keeps a lexicographer file's synsets together: people, plants,
    motion verbs ...)."""
    for part in WORDNET_PARTS:
        sentences = []
        with open(os.path.join(WORDNET_ROOT, "data." + part), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue  # the licence header; a synset without a gloss
                fields, gloss = line.rstrip().split(" | ", 1)
                tok = fields.split(" ")
                count = int(tok[3], 16)
                words = [ADJ_MARKER.sub("", w).replace("_", " ") for w in tok[4:4 + 2 * count:2]]
                sentence = wordnet_sentence(part, words, gloss)
                if sentence:
                    sentences.append(sentence)
        for i in range(0, len(sentences), WORDNET_DOC_SYNSETS):
            yield "\n".join(sentences[i:i + WORDNET_DOC_SYNSETS])


RST_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`!?~?([^`<]*?)\s*(?:<[^>]*>)?`")
RST_LINK = re.compile(r"`([^`<]+?)\s*(?:<[^>]*>)?`_+")
PYDOC_ROOT = "/usr/share/doc/python3.11/html/_sources"
PYDOC_PARTS = (("python_tutorial.txt", "tutorial"), ("python_faq.txt", "faq"))
PYDOC_MAX_BYTES = 110_000  # per file: the held-out haystacks stay small in the repository


def rst_prose(text):
    """reStructuredText -> prose paragraphs: unindented paragraphs only (code, directives and
    their bodies are indented or start with '..'), headings and tables dropped, inline markup
    reduced to its text."""
    out = []
    for para in paragraphs(text.split("\n")):
        if para[0].startswith((" ", "\t", "..", ">>>", "+", "|")):
            continue
        if any(set(l.strip()) <= set("=-~*^#+") for l in para):
            continue  # a heading (text with an adornment line) or a table rule
        t = unwrap(para)
        t = RST_ROLE.sub(lambda m: m.group(1), t)
        t = RST_LINK.sub(lambda m: m.group(1), t)
        t = t.replace("``", "").replace("**", "").replace("\\", "")
        t = re.sub(r"(?<!\w)\*([^*\s][^*]*)\*", r"\1", t)
        if t.endswith("::"):
            t = t[:-1]
        if len(t.split()) >= 8 and not t.startswith(("-", "*", "#")):
            out.append(t)
    return out


def python_doc_texts():
    """Yields (file name, text) of the held-out haystack source: Python tutorial and FAQ prose in
    file-name order, each capped at PYDOC_MAX_BYTES on a paragraph boundary."""
    for name, part in PYDOC_PARTS:
        folder = os.path.join(PYDOC_ROOT, part)
        kept, size = [], 0
        for f in sorted(os.listdir(folder)):
            if not f.endswith(".rst.txt"):
                continue
            with open(os.path.join(folder, f), encoding="utf-8") as fh:
                for p in rst_prose(fh.read()):
                    if size + len(p.encode()) + 2 > PYDOC_MAX_BYTES:
                        break
                    kept.append(p)
                    size += len(p.encode()) + 2
        yield name, "\n\n".join(kept) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="corpus folder (git-ignored)")
    ap.add_argument("--haystacks", help="also write the held-out haystack texts here")
    ap.add_argument("--wordnet", action="store_true",
                    help="also train on WordNet's synsets as sentences (wordnet-base; see above)")
    ap.add_argument("--heldout-haystacks",
                    help="also write the held-out haystack sources (never trained on) here")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    train, held = [], []
    acts = []
    for book, chap, text in kjv_chapters():
        doc = {"source": "kjv", "text": f"{book} {chap}\n\n{text}"}
        if book == "Acts":
            held.append(doc)
            acts.append(doc["text"])
        else:
            train.append(doc)
    jargon_pq = []
    for head, text in jargon_docs():
        doc = {"source": "jargon", "text": text}
        if head is not None and head[:1].upper() in ("P", "Q"):
            held.append(doc)
            jargon_pq.append(text)
        else:
            train.append(doc)
    for name, text in fortune_docs():
        doc = {"source": "fortunes", "text": text}
        (held if name in HELD_OUT_FORTUNES else train).append(doc)
    for text in debian_faq_docs():
        train.append({"source": "debian_faq", "text": text})
    if args.wordnet:
        for i, text in enumerate(wordnet_docs()):
            doc = {"source": "wordnet", "text": text}
            (held if i % WORDNET_HELD_EVERY == WORDNET_HELD_EVERY - 1 else train).append(doc)

    # Training haystacks: the training split's prose, one file per source (never a held-out text).
    train_hay = os.path.join(args.out, "haystacks_train")
    os.makedirs(train_hay, exist_ok=True)
    for key in LICENCES:
        texts = [d["text"] for d in train if d["source"] == key and key != "wordnet"]
        if texts:
            with open(os.path.join(train_hay, key + ".txt"), "w", encoding="utf-8") as f:
                f.write("\n\n".join(texts) + "\n")
    pydoc = list(python_doc_texts()) if args.heldout_haystacks else []
    for name, docs in (("train.jsonl", train), ("heldout.jsonl", held)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    sources = {}
    for key, (pkg, licence) in LICENCES.items():
        if key == "wordnet" and not args.wordnet:
            continue
        sources[key] = {
            "package": pkg, "version": package_version(pkg), "licence": licence,
            "train_bytes": sum(len(d["text"].encode()) for d in train if d["source"] == key),
            "heldout_bytes": sum(len(d["text"].encode()) for d in held if d["source"] == key),
        }
    sources["python_docs"]["heldout_haystack_bytes"] = sum(len(t.encode()) for _, t in pydoc)
    with open(os.path.join(args.out, "SOURCES.json"), "w") as f:
        json.dump(sources, f, indent=1)
    print(json.dumps(sources, indent=1))
    print(f"train docs {len(train)}, held-out docs {len(held)}")

    if args.haystacks:
        os.makedirs(args.haystacks, exist_ok=True)
        for name, texts in (("kjv_acts.txt", acts), ("jargon_pq.txt", jargon_pq)):
            with open(os.path.join(args.haystacks, name), "w", encoding="utf-8") as f:
                f.write("\n\n".join(texts) + "\n")
            print("wrote", os.path.join(args.haystacks, name))
    if args.heldout_haystacks:
        os.makedirs(args.heldout_haystacks, exist_ok=True)
        for name, text in pydoc:
            with open(os.path.join(args.heldout_haystacks, name), "w", encoding="utf-8") as f:
                f.write(text)
            print("wrote", os.path.join(args.heldout_haystacks, name))


if __name__ == "__main__":
    main()
