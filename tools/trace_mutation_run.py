#!/usr/bin/env python3
"""Opens mutants of a trace the way users do and counts what happened (issue 11).

Each mutant is the trace with 1-8 random bytes changed (--region all) or with bytes changed inside
HDF5 metadata blocks only (--region metadata: the blocks that start with an HDF5 signature such as
OHDR, OCHK, BTHD, BTLF, EAHD, EADB, FRHP, FHDB, GCOL, and the superblock). Every mutant is opened
with `kvscope inspect --quick` (the production path: trace_probe.h decides between in-process and
the isolating child) and the outcome is counted: opened, rejected with an error (exit 1),
killed by a signal (a crash: must be 0), or past the time limit (a hang: must be 0).

    python3 tools/trace_mutation_run.py --kvscope build/app/cli/kvscope \
        --trace tests/fuzz/seeds/trace_reader/d2o-v2.kvtrace.h5 --count 1000 --seed 1

Standard library only. Mutants that crash or hang are kept in --keep DIR (default: none kept).
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

SIGNATURES = [b"OHDR", b"OCHK", b"BTHD", b"BTLF", b"BTIN", b"EAHD", b"EADB", b"EAIB", b"EASB",
              b"FAHD", b"FADB", b"FRHP", b"FHDB", b"FHIB", b"FSHD", b"FSSE", b"GCOL", b"SMTB"]


def metadata_ranges(data):
    """(begin, end) byte ranges of HDF5 metadata blocks: from a signature to the next one."""
    starts = sorted({m.start() for sig in SIGNATURES for m in re.finditer(re.escape(sig), data)})
    ranges = [(0, min(starts[0] if starts else len(data), 512))]  # the superblock
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        ranges.append((s, min(end, s + 4096)))
    return ranges


def mutate(data, rng, ranges):
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if ranges:
            b, e = rng.choice(ranges)
            pos = rng.randrange(b, max(b + 1, e))
        else:
            pos = rng.randrange(len(out))
        out[pos] = rng.randrange(256)
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kvscope", required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--region", choices=["all", "metadata"], default="all")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a mutant is a hang")
    ap.add_argument("--keep", default="", help="directory for mutants that crash or hang")
    a = ap.parse_args()
    try:
        with open(a.trace, "rb") as f:
            data = f.read()
    except OSError as e:
        print(f"trace_mutation_run: {a.trace}: {e.strerror}", file=sys.stderr)
        return 2
    if not os.access(a.kvscope, os.X_OK):
        print(f"trace_mutation_run: {a.kvscope}: not an executable", file=sys.stderr)
        return 2
    rng = random.Random(a.seed)
    ranges = metadata_ranges(data) if a.region == "metadata" else []
    counts = {"opened": 0, "rejected": 0, "crashed": 0, "hung": 0}
    work = tempfile.mkdtemp(prefix="kvscope_mutants_")
    t0 = time.time()
    try:
        for i in range(a.count):
            path = os.path.join(work, f"m{i}.kvtrace.h5")
            with open(path, "wb") as f:
                f.write(mutate(data, rng, ranges))
            try:
                r = subprocess.run([a.kvscope, "inspect", "--quick", path], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=a.timeout)
                kind = ("opened" if r.returncode == 0 else
                        "crashed" if r.returncode < 0 or r.returncode >= 128 else "rejected")
            except subprocess.TimeoutExpired:
                kind = "hung"
            counts[kind] += 1
            if kind in ("crashed", "hung") and a.keep:
                os.makedirs(a.keep, exist_ok=True)
                shutil.copy(path, os.path.join(a.keep, f"{kind}-{a.seed}-{i}.kvtrace.h5"))
            os.remove(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    secs = time.time() - t0
    print(f"{a.trace} region={a.region} mutants={a.count} seed={a.seed}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" ({secs:.0f} s)")
    return 1 if counts["crashed"] or counts["hung"] else 0


if __name__ == "__main__":
    sys.exit(main())
