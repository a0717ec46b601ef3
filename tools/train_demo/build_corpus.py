#!/usr/bin/env python3
"""Builds the demo model's text corpus from redistributable texts shipped as Debian packages, and
the haystack texts in resources/haystacks/.

Run on any Debian 12 machine (standard library only), from the repository root:

    apt-get install bible-kjv jargon-text fortunes debian-faq
    python3 tools/train_demo/build_corpus.py --out .devcarry/demo/corpus \
        --haystacks resources/haystacks

Sources and licences (each checked in /usr/share/doc/<package>/copyright):
  bible-kjv-text  King James Version (1611): public domain. Printed with the package's `bible`
                  program (the data file is in its own compressed format).
  jargon-text     The Jargon File 4.4.7 (E. S. Raymond et al.): public domain.
  fortunes        fortune-mod data files: BSD licence (University of California) and per-file
                  notes; in Debian main (DFSG-free). The offensive set (fortunes-off) is not used.
  debian-faq      The Debian GNU/Linux FAQ, (c) Software in the Public Interest: verbatim and
                  modified copies permitted under the same notice.
GPL-licensed texts (debian-reference, dict-gcide) are deliberately not used, so the weights carry
no copyleft question.

Held out (never trained on; used for perplexity and as NIAH haystacks):
  KJV book of Acts, Jargon File entries whose headword starts with P or Q, fortune files
  `wisdom` and `science`.

Writes:
  OUT/train.jsonl, OUT/heldout.jsonl   one {"source", "text"} document per line
  OUT/SOURCES.json                     per source: package, version, licence, bytes kept
  HAYSTACKS/kjv_acts.txt, HAYSTACKS/jargon_pq.txt   (only with --haystacks)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="corpus folder (git-ignored)")
    ap.add_argument("--haystacks", help="also write the held-out haystack texts here")
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

    for name, docs in (("train.jsonl", train), ("heldout.jsonl", held)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    sources = {}
    for key, (pkg, licence) in LICENCES.items():
        sources[key] = {
            "package": pkg, "version": package_version(pkg), "licence": licence,
            "train_bytes": sum(len(d["text"].encode()) for d in train if d["source"] == key),
            "heldout_bytes": sum(len(d["text"].encode()) for d in held if d["source"] == key),
        }
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


if __name__ == "__main__":
    main()
