"""train.py's row kinds, their default shares, and the --mix / --early-mix flags that override
them (kept free of torch: tests/scripts/needle_rows_test.py checks the parser).

A mixture is [(kind, share)]; shares are relative weights of random.choices (they need not sum
to 1). The early mixture applies while rows are at most EARLY_MAX_SEQ tokens.
"""
import argparse
import math

KINDS = ("natural", "repeat", "passkey", "niah", "niah_multi", "kv", "needles", "needles_dense",
         "needles_free")
EARLY_MAX_SEQ = 512

# Row kinds and their shares. "repeat" (a random token sequence shown twice) gives dense copy
# targets, the signal that grows induction heads; the needle tasks alone give ~10 answer tokens
# per step, too few (a first run without it memorised the text and never learned to retrieve).
# v2 (issue 12): "needles" rows take the largest share: generalising retrieval needs many
# phrasings, formats and entity kinds, not one template. "needles_dense" is off by default
# (--mix turns it on).
ROW_KINDS = [("natural", 0.15), ("repeat", 0.15), ("passkey", 0.05), ("niah", 0.10),
             ("niah_multi", 0.05), ("kv", 0.10), ("needles", 0.40)]
# While rows are at most 512 tokens (the curriculum's start): little natural text, so copying is
# learned before the model starts memorising the (small) corpus.
EARLY_ROW_KINDS = [("natural", 0.05), ("repeat", 0.35), ("passkey", 0.05), ("niah", 0.10),
                   ("niah_multi", 0.05), ("kv", 0.10), ("needles", 0.30)]


def parse_mix(text):
    """"needles_dense:0.5,kv:0.5" -> [("needles_dense", 0.5), ("kv", 0.5)]. Raises ValueError
    naming the bad entry: unknown kind, kind given twice, share not a positive finite number."""
    out = []
    for item in text.split(","):
        kind, sep, share = item.strip().partition(":")
        if not sep:
            raise ValueError(f"'{item}': expected KIND:SHARE")
        if kind not in KINDS:
            raise ValueError(f"'{item}': unknown row kind '{kind}' (kinds: {', '.join(KINDS)})")
        if any(k == kind for k, _ in out):
            raise ValueError(f"'{item}': row kind '{kind}' given twice")
        try:
            p = float(share)
        except ValueError:
            raise ValueError(f"'{item}': share '{share}' is not a number") from None
        if not (math.isfinite(p) and p > 0):
            raise ValueError(f"'{item}': share must be a positive number")
        out.append((kind, p))
    return out


def _mix_arg(text):
    try:
        return parse_mix(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_mix_args(ap):
    """Adds --mix and --early-mix to an ArgumentParser (a bad value: usage error, exit 2)."""
    ap.add_argument("--mix", type=_mix_arg, metavar="KIND:SHARE,...",
                    help="row-kind mixture for the whole run, replacing both defaults; kinds: "
                         + ", ".join(KINDS))
    ap.add_argument("--early-mix", type=_mix_arg, metavar="KIND:SHARE,...",
                    help=f"row-kind mixture while rows are <= {EARLY_MAX_SEQ} tokens "
                         "(default: --mix if given, else the built-in early mixture)")


def mixes(args):
    """-> (early mixture, later mixture) from parsed --mix / --early-mix."""
    return (args.early_mix or args.mix or EARLY_ROW_KINDS), (args.mix or ROW_KINDS)
