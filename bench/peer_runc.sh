#!/usr/bin/env bash
# Decode time per token: kvscope vs llama2.c's run.c on the same weights, in one invocation
# (issue 15: "decode <= 1.0x run.c -Ofast time per token").
#
#   bash bench/peer_runc.sh LLAMA2C_DIR [PROMPT_TOKENS [GEN_TOKENS]]
#   LLAMA2C_DIR=... bash bench/peer_runc.sh
#
# LLAMA2C_DIR: a checkout (or snapshot) of github.com/karpathy/llama2.c holding run.c. Nothing of
# it enters this repository: it is built in a temporary directory. Env: KVSCOPE (the CLI, default
# build/app/cli/kvscope), MODEL (default resources/models/kvscope-demo), REPS (default 3), KEEP=1
# (keep the temporary directory), RUNOMP_WAIT (OMP_WAIT_POLICY of runomp, default passive).
#
# What runs, per repetition, back to back so that both see the same machine load:
#   runfast  gcc -Ofast run.c -lm                          (Makefile target runfast), 1 thread
#   runomp   gcc -Ofast -fopenmp -march=native run.c -lm   (Makefile target runomp), OMP 2 threads,
#            OMP_WAIT_POLICY=passive unless RUNOMP_WAIT says otherwise: on the shared 2-core VM
#            (load 3-7) libgomp's default spin-waiting made it 145 ms/token against 6.7 on one
#            thread; passive is its best case there
#   kvscope  `kvscope bench --policy full --recording off` with --threads 1 and --threads 2
# Same weights: the model is converted with `kvscope convert --to-llama2c`. llama2.c's format has
# no rope_theta (run.c uses 10000), so both sides run a copy of the model directory whose
# config.json says 10000 (the weights are symlinked): the same function, the same FLOPs.
# run.c has no batched prefill: it forwards the prompt one token at a time, exactly as it decodes.
# Its decode time per token at positions [P, P+G) is timed inside one run: the temporary copy of
# run.c gets three added lines (a clock read when position P is reached, one more at the end, a
# "from-P ms/token" line on stderr; its computation is untouched), forced through a prompt of more
# than P+G tokens (no sampling, so no early stop at token 1). The difference of two runs,
# (T(-n P+G) - T(-n P)) / G, used until 2026-12-05, carried the noise of two whole runs and came
# out negative on the loaded VM (2k context, load 4-5). kvscope's figure is its decode ms/token
# after a batched prefill of P tokens, over G steps: positions [P, P+G) too.
# run.c needs a tokenizer.bin of the model's vocabulary size; the text does not matter to the
# timing, so a synthetic one is written: one token per byte (ids 3..258), the rest filler.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

usage() {
    echo "usage: bash bench/peer_runc.sh LLAMA2C_DIR [PROMPT_TOKENS [GEN_TOKENS]]" >&2
    echo "  LLAMA2C_DIR (or env LLAMA2C_DIR): a llama2.c checkout holding run.c" >&2
    exit 2
}
L2C=${1:-${LLAMA2C_DIR:-}}
[ -n "$L2C" ] || usage
if [ ! -f "$L2C/run.c" ]; then
    echo "peer_runc.sh: $L2C/run.c: not found (pass a llama2.c checkout)" >&2
    exit 2
fi
P=${2:-512}
G=${3:-256}
case "$P$G" in *[!0-9]*) usage ;; esac
[ "$P" -ge 2 ] && [ "$G" -ge 1 ] || { echo "peer_runc.sh: need PROMPT_TOKENS >= 2, GEN_TOKENS >= 1" >&2; exit 2; }
KV=${KVSCOPE:-$ROOT/build/app/cli/kvscope}
MODEL=${MODEL:-$ROOT/resources/models/kvscope-demo}
REPS=${REPS:-3}
[ -x "$KV" ] || { echo "peer_runc.sh: $KV: not built (cmake --build build --target kvscope)" >&2; exit 1; }
[ -f "$MODEL/config.json" ] || { echo "peer_runc.sh: $MODEL/config.json: not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "peer_runc.sh: python3 is needed (tokenizer, JSON)" >&2; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/kvscope_peer_runc.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$W"' EXIT
cp "$L2C/run.c" "$W/run.c"
# The in-run timer (see above), anchored on run.c's generate loop; a run.c without these lines
# stops the benchmark instead of timing something else.
python3 - "$W/run.c" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
start = "    long start = 0;"
first = "        if (start == 0) { start = time_in_ms(); }\n"
end = '    printf("\\n");\n\n    // report achieved tok/s'
for anchor in (start, first, end):
    if s.count(anchor) != 1:
        sys.exit("peer_runc.sh: run.c: generate loop not recognised (no unique %r)" % anchor.strip())
s = s.replace(start, '    int kvs_from = getenv("KVS_FROM") ? atoi(getenv("KVS_FROM")) : -1; '
              'long kvs_t0 = 0;\n' + start)
s = s.replace(first, first + "        if (pos == kvs_from) { kvs_t0 = time_in_ms(); }\n")
s = s.replace(end, '    if (kvs_t0) fprintf(stderr, "from-P ms/token: %f\\n", '
              '(time_in_ms() - kvs_t0) / (double)(pos - kvs_from));\n' + end)
open(p, "w").write(s)
EOF
(cd "$W" && gcc -Ofast -o runfast run.c -lm && gcc -Ofast -fopenmp -march=native run.c -lm -o runomp)

# The model with rope_theta 10000, weights and tokenizer symlinked.
M="$W/model"
mkdir -p "$M"
for f in "$MODEL"/*; do
    [ "$(basename "$f")" = config.json ] || ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$M/"
done
python3 - "$MODEL/config.json" "$M/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
rp = c.get("rope_parameters")
if isinstance(rp, dict) and "rope_theta" in rp:
    rp["rope_theta"] = 10000.0
c["rope_theta"] = 10000.0
json.dump(c, open(sys.argv[2], "w"), indent=2)
EOF
"$KV" convert --model "$M" --to-llama2c "$W/model.bin" >/dev/null
VOCAB=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab_size'])" "$M/config.json")

# llama2.c tokenizer.bin: int max_token_length, then per token float score, int len, bytes.
python3 - "$W/tokenizer.bin" "$VOCAB" <<'EOF'
import struct, sys
v = int(sys.argv[2])
toks = [b"<unk>", b"<s>", b"</s>"] + [bytes([b]) if b else b"<0x00>" for b in range(256)]
toks += [b"<f%d>" % i for i in range(v - len(toks))]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<i", max(len(t) for t in toks)))
    for t in toks:
        f.write(struct.pack("<fi", 0.0, len(t)) + t)
EOF
# BOS + the dummy-prefix space + one token per character: P + G + 1 tokens, more than run.c forwards.
PROMPT=$(python3 -c "import sys; n=int(sys.argv[1]); print(('abcdefghij' * (n // 10 + 1))[:n])" $((P + G - 1)))

runc_decode() {  # binary [env...] -> ms per token at positions [P, P+G), timed inside the run
    local bin=$1
    shift
    local ms
    ms=$(env "$@" KVS_FROM="$P" "$W/$bin" "$W/model.bin" -z "$W/tokenizer.bin" -t 0 -n $((P + G)) \
        -i "$PROMPT" 2>&1 >/dev/null | sed -n 's/^from-P ms\/token: //p')
    [ -n "$ms" ] || { echo "peer_runc.sh: $bin -n $((P + G)) printed no from-P ms/token" >&2; exit 1; }
    python3 -c "import sys; print('%.3f' % float(sys.argv[1]))" "$ms"
}
kv_decode() {  # threads -> ms per token
    "$KV" bench --model "$M" --device cpu --policy full --recording off --lengths "$P" \
        --decode-steps "$G" --threads "$1" --floor-mib 1 --json - 2>/dev/null |
        python3 -c "import json,sys; print('%.3f' % json.load(sys.stdin)['rows'][0]['decode_ms_per_token'])"
}

echo "peer_runc: $(basename "$MODEL") (rope_theta 10000 copy), prompt $P tokens, $G decoded, $REPS repetitions"
echo "machine: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
echo "run.c: $(git -C "$L2C" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout") ; kvscope: $(git -C "$ROOT" rev-parse --short HEAD)"
printf "%-4s %12s %12s %12s %12s\n" rep "runfast 1t" "kvscope 1t" "runomp 2t" "kvscope 2t"
RF=() K1=() RO=() K2=()
for r in $(seq 1 "$REPS"); do
    rf=$(runc_decode runfast OMP_NUM_THREADS=1)
    k1=$(kv_decode 1)
    ro=$(runc_decode runomp OMP_NUM_THREADS=2 OMP_WAIT_POLICY="${RUNOMP_WAIT:-passive}")
    k2=$(kv_decode 2)
    RF+=("$rf") K1+=("$k1") RO+=("$ro") K2+=("$k2")
    printf "%-4s %12s %12s %12s %12s   ms/token\n" "$r" "$rf" "$k1" "$ro" "$k2"
done
python3 - "${RF[*]}" "${K1[*]}" "${RO[*]}" "${K2[*]}" <<'EOF'
import statistics as st, sys
rf, k1, ro, k2 = ([float(x) for x in a.split()] for a in sys.argv[1:5])
m = st.median
print("median ms/token: runfast %.3f, kvscope 1 thread %.3f -> %.2fx run.c time" % (m(rf), m(k1), m(k1) / m(rf)))
print("median ms/token: runomp 2 threads %.3f, kvscope 2 threads %.3f -> %.2fx run.c time" % (m(ro), m(k2), m(k2) / m(ro)))
print("per repetition (kvscope / run.c): 1 thread " + ", ".join("%.2f" % (a / b) for a, b in zip(k1, rf))
      + "; 2 threads " + ", ".join("%.2f" % (a / b) for a, b in zip(k2, ro)))
print("uptime after: " + open("/proc/loadavg").read().split()[0:3].__str__())
EOF
