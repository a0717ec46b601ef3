#!/usr/bin/env bash
# One GPU session for issue 9, in stages (each `run` call of the device tool is limited to 10
# minutes and a session to 30 minutes of device time: run a few stages per call, see
# bench/GPU_RUNBOOK.md). Results go under $OUT: <stage>.log and <stage>*.json, flat (the device
# tool brings back at most 8 files per call).
#
#   bash bench/gpu_session.sh pack                 # HERE, on the CPU machine, before the session
#   OUT=... bash bench/gpu_session.sh check ops golden       # on the GPU machine (carry .devcarry/gpu)
#   OUT=... bash bench/gpu_session.sh models bench8b
#   OUT=... bash bench/gpu_session.sh peer8b
#   OUT=... bash bench/gpu_session.sh bench1b peer1b bench8b-32k
#
# Stages:
#   pack        (CPU machine) build kvscope + test_kernels with the CUDA backend (sm_90) and copy
#               them with the shared libraries the GPU image lacks (HDF5, PCRE2, sentencepiece,
#               ...; not cuBLAS, which the image has) into .devcarry/gpu/ (ignored by git)
#   build       (GPU machine, fallback) configure and build there instead, if its image has the
#               -dev packages (it normally does not: nothing can be installed there)
#   check       nvidia-smi, nvcc, torch/transformers versions, libcublas, the carried binaries' ldd
#   ops         op tests CUDA vs CPU (tests/kernels), weights native and KVSCOPE_CUDA_MATH=fp32,
#               the defaults (KV mirrors, tensor-core prefill attention) and the first
#               version's paths they replaced (KVSCOPE_CUDA_KV_MIRROR=0, KVSCOPE_CUDA_ATTENTION=fp32);
#               KVSCOPE_OPS_PERF=1 prints per-case times; then every CUDA case again with the
#               host paths that are the defaults since 2026-12-06 turned off
#               (KVSCOPE_CUDA_NEW_ROWS=0 KVSCOPE_CUDA_DEFER=0)
# Any stage runs without them when the call sets them to 0 (the before/after of a benchmark), e.g.
#   KVSCOPE_CUDA_NEW_ROWS=0 KVSCOPE_CUDA_DEFER=0 bash bench/gpu_call.sh 585 profile8b bench8b
#   ops-quick   the CUDA op cases once, defaults only (after a kernel change, before timing it)
#   golden      golden logits vs HF on CUDA (native 2e-2, fp32 mode 1e-4) and on the CPU
#   models      random-weight bf16 checkpoints with Llama-3.2-1B / 3.1-8B shapes in build-models/
#   bench1b     kvscope bench, 1B shape, lengths 1k,8k,32k
#   bench8b     kvscope bench, 8B shape, lengths 1k,8k
#   bench8b-32k kvscope bench, 8B shape, 32k
#   bench1b-128k kvscope bench, 1B shape, 128k, full with recording on
#   profile1b   KVSCOPE_PROFILE=1 kvscope bench (full, recording off), 1B shape, 1k/8k/32k
#   profile8b   the same, 8B shape, 1k/8k, and 8k with recording on
#   profile8b-32k  the same, 8B shape, 32k with recording on (the prefill target's case)
#   profile8b-snapkv  the same, 8B shape, 32k, SnapKV (ratio 0.25), recording off
#   profile8b-host KVSCOPE_PROFILE=host (host cost per op, no added waits), 8B, 1k, off and on
#   profile1b-host the same, 1B, 1k, off
#   ncu8b-decode ncu: device time per kernel of an 8B decode step at 1k (bench/ncu_steps.py)
#   gemv-shapes decode of the 8B shape at 1k, recorded, with each KVSCOPE_CUDA_GEMV_SHAPE
#   decode-ab   the same, the default against the switches in $DECODE_AB (e.g.
#               DECODE_AB="KVSCOPE_CUDA_X=1 KVSCOPE_CUDA_Y=1"), in turn, three times each
#   decode-multi the same for several candidates, DECODE_MULTI="A=1;B=8x3 C=1" (';' between
#               candidates), each round the default then every candidate, twice; both at
#               DECODE_LEN tokens of context if set (default 1024)
#   attn        bench_cuda_attention (the prefill attention kernels alone: forward, column sums +
#               window rows, rows only; checked against the fp32 kernels first) and its peer
#               bench/peer_attention.py (torch SDPA, bf16), 8B attention shape at 8k and 32k
#   prefill32k-ab kvscope bench, 8B shape, 32k prefill (full, recording on/off), default vs $ATTN_AB
#   attn-ab     bench_cuda_attention, the default against the switches in $ATTN_AB (';' between
#               candidates), in turn, twice each, 8k and 32k
#   ncu-attn    ncu --set full, one launch each of the prefill attention kernels (mma.sync and the
#               opt-in wgmma ones), 8B shape at 8k: stall reasons and SASS hot spots (ncu_stalls.py)
#   hostcache   bench_host_cache on the machine's CPUs: the host cache's share of a prefill, 8k/32k
#   peer1b      bench/hf_peer.py on the 1B shape
#   peer8b      bench/hf_peer.py on the 8B shape
#   parity-large CUDA with and without KVSCOPE_CUDA_DEFER, 1B shape at 8k, 4 policies: identical
#   parity      bench/backend_parity.py: all 12 policies on the demo model, CPU vs CUDA traces
#               (kept sets, bits, events, tokens): fp32 mode must be identical (exit 1 if not),
#               native mode is reported (parity_fp32.json, parity_native.json)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CARRY=${KVSCOPE_CARRY:-$ROOT/.devcarry/gpu}  # KVSCOPE_CARRY: another pack (a baseline)
MODELS=${KVSCOPE_MODELS:-$ROOT/build-models}  # ignored by git; kept between calls on a warm machine
M1B=$MODELS/llama-3.2-1b-shape
M8B=$MODELS/llama-3.1-8b-shape
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

# The kvscope binaries: carried ones (pack) first, else a build made there (build). pack leaves
# them xz-compressed (the tracked tree is ~51 MB of the call's 64 MiB), unpacked here once.
if [ $# -gt 0 ] && [ "$1" != pack ] && [ -f "$CARRY/pack.tar.xz" ] && [ ! -x "$CARRY/bin/kvscope" ]; then
  tar xJf "$CARRY/pack.tar.xz" -C "$CARRY"
fi
if [ -x "$CARRY/bin/kvscope" ]; then
  KVSCOPE=$CARRY/bin/kvscope; TEST_KERNELS=$CARRY/bin/test_kernels
  BENCH_HOST_CACHE=$CARRY/bin/bench_host_cache; BENCH_SUMMARY=$CARRY/bin/bench_prefill_summary
  BENCH_ATTN=$CARRY/bin/bench_cuda_attention
  CUBLAS_DIRS=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
dirs = set()
for base in site.getsitepackages() + ["/usr/local/cuda/lib64", "/usr/local/cuda/lib", "/usr/lib/x86_64-linux-gnu"]:
    for f in glob.glob(os.path.join(base, "**", "libcublas.so.13*"), recursive=True):
        dirs.add(os.path.dirname(f))
print(":".join(sorted(dirs)))
PY
)
  # Only the carried libraries the image lacks: a carried libstdc++/libz/... older than the
  # image's own would break torch in the python stages, which inherit LD_LIBRARY_PATH.
  KVLIB=$(mktemp -d); for f in "$CARRY"/lib/*; do
    ldconfig -p | grep -q "$(basename "$f") " || ln -s "$f" "$KVLIB/"; done
  export LD_LIBRARY_PATH="$KVLIB:${CUBLAS_DIRS}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
else
  KVSCOPE=$ROOT/build-gpu/app/cli/kvscope; TEST_KERNELS=$ROOT/build-gpu/tests/test_kernels
  BENCH_HOST_CACHE=$ROOT/build-gpu/bench/bench_host_cache
  BENCH_SUMMARY=$ROOT/build-gpu/bench/bench_prefill_summary
  BENCH_ATTN=$ROOT/build-gpu/bench/bench_cuda_attention
fi

status() { mkdir -p "${OUT:-out}"; echo "$1 rc=$2" | tee -a "${OUT:-out}/status.txt"; }
need_out() { if [ -z "${OUT:-}" ]; then echo "set OUT to the results folder" >&2; exit 2; fi; mkdir -p "$OUT"; }

stage_pack() {
  cmake -S . -B build -G Ninja -DKVSCOPE_BUILD_CUDA=ON || return 1
  grep -q "KVSCOPE_HAVE_CUDA" build/CMakeCache.txt 2>/dev/null || true
  cmake --build build --target kvscope kvscope-trace-probe test_kernels bench_host_cache \
    bench_prefill_summary bench_cuda_attention -j"$(nproc)" || return 1
  rm -rf "$CARRY"; mkdir -p "$CARRY/bin" "$CARRY/lib"
  # kvscope opens traces through kvscope-trace-probe, found next to it (traces/trace_probe.h).
  cp build/app/cli/kvscope build/traces/probe/kvscope-trace-probe build/tests/test_kernels \
     build/bench/bench_host_cache build/bench/bench_prefill_summary build/bench/bench_cuda_attention \
     "$CARRY/bin/"
  strip --strip-unneeded "$CARRY/bin/"* 2>/dev/null || true  # 1.5 MB under the 64 MiB limit
  # Only the project's own dependencies (HDF5 and its filters, sentencepiece, PCRE2): the image
  # has them too (used when present, see KVLIB below), and the rest of the closure (libstdc++,
  # curl, TLS, ...) is in any Ubuntu 24.04 base; carrying it all would pass the 64 MiB limit.
  for b in "$CARRY/bin/"*; do ldd "$b"; done | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libhdf5*|libsz.so*|libaec.so*|libsentencepiece*|libpcre2*) cp -L "$lib" "$CARRY/lib/" ;;
    esac
  done
  strip --strip-unneeded "$CARRY/lib/"* 2>/dev/null || true
  tar cJf "$CARRY/pack.tar.xz" -C "$CARRY" bin lib && rm -rf "$CARRY/bin" "$CARRY/lib"
  du -sh "$CARRY"
  echo "carry .devcarry/gpu in the run call (64 MiB limit for the whole tree)"
}

stage_build() {
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVSCOPE_BUILD_STUDIO=OFF \
        -DKVSCOPE_BUILD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" &&
  cmake --build build-gpu --target kvscope test_kernels bench_host_cache bench_prefill_summary \
    bench_cuda_attention -j"$(nproc)"
}

stage_check() {
  nvidia-smi; nvcc --version | tail -2
  echo "host: $(nproc) cores; transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null), defrag: $(cat /sys/kernel/mm/transparent_hugepage/defrag 2>/dev/null)"
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0)); print("transformers", transformers.__version__)'
  echo "kvscope: $KVSCOPE; carried libraries used: $(ls "${KVLIB:-/nonexistent}" 2>/dev/null | tr '\n' ' ')"; ldd "$KVSCOPE" | grep -E "not found|cublas" ; ldd "$TEST_KERNELS" | grep "not found"
  "$KVSCOPE" --version && "$KVSCOPE" generate --model resources/models/kvscope-demo --prompt "Once upon a time" --max-new 8 --device cuda
}

stage_ops-quick() {
  "$TEST_KERNELS" --gtest_filter='*Cuda*' --gtest_output=json:"$OUT/ops_quick.json"; local r1=$?
  # The other paths still selectable: norm rows in loops, plain launches, staged row moves, the
  # opt-in one-launch decode attention (cuda_attention_decode.cu), the mma.sync prefill attention.
  KVSCOPE_CUDA_NORM_REGS=0 KVSCOPE_CUDA_DECODE_FUSED=1 KVSCOPE_CUDA_PDL=0 KVSCOPE_CUDA_INLINE_JOBS=0 \
    KVSCOPE_CUDA_FWD_WGMMA=0 KVSCOPE_CUDA_PROBS_WGMMA=0 "$TEST_KERNELS" --gtest_filter='*Cuda*' --gtest_output=json:"$OUT/ops_quick_earlier.json"; local r2=$?
  # Opt-in switches not yet run on a GPU, if any: $OPS_OPTIN (e.g. "KVSCOPE_CUDA_X=1").
  local r3=0
  if [ -n "${OPS_OPTIN:-}" ]; then
    # shellcheck disable=SC2086  # word splitting wanted: one NAME=VALUE per word
    env $OPS_OPTIN "$TEST_KERNELS" --gtest_filter='*Cuda*' --gtest_output=json:"$OUT/ops_quick_optin.json"; r3=$?
  fi
  return $((r1 || r2 || r3))
}

stage_ops() {
  KVSCOPE_OPS_PERF=1 "$TEST_KERNELS" --gtest_output=json:"$OUT/ops_native.json"; local r1=$?
  KVSCOPE_CUDA_MATH=fp32 "$TEST_KERNELS" --gtest_filter='*Cuda*' --gtest_output=json:"$OUT/ops_fp32.json"; local r2=$?
  # The first version's paths, still selectable: per-call K/V copies and fp32 prefill attention.
  KVSCOPE_CUDA_KV_MIRROR=0 "$TEST_KERNELS" --gtest_filter='*Cuda*'; local r3=$?
  KVSCOPE_CUDA_KV_MIRROR=0 KVSCOPE_CUDA_ATTENTION=fp32 "$TEST_KERNELS" --gtest_filter='*Cuda*'; local r4=$?
  # Without the host paths made defaults on 2026-12-06 (new K/V rows within the device,
  # deferred host copies), still selectable.
  KVSCOPE_CUDA_NEW_ROWS=0 KVSCOPE_CUDA_DEFER=0 "$TEST_KERNELS" --gtest_filter='*Cuda*' --gtest_output=json:"$OUT/ops_optout.json"; local r5=$?
  return $((r1 || r2 || r3 || r4 || r5))
}

stage_golden() {
  python3 bench/golden_cuda.py --kvscope "$KVSCOPE" --device cuda --mode native --json "$OUT/golden_cuda_native.json"; local r1=$?
  python3 bench/golden_cuda.py --kvscope "$KVSCOPE" --device cuda --mode fp32 --json "$OUT/golden_cuda_fp32.json"; local r2=$?
  python3 bench/golden_cuda.py --kvscope "$KVSCOPE" --device cpu --json "$OUT/golden_cpu.json"; local r3=$?
  return $((r1 || r2 || r3))
}

stage_models() { python3 bench/make_random_models.py --out "$MODELS" --shapes 1b,8b; }

bench() {  # model name lengths
  "$KVSCOPE" bench --model "$1" --device cuda --lengths "$3" \
    --decode-steps 32 --policy snapkv --ratio 0.25 --json "$OUT/$2.json"
}
stage_bench1b() { bench "$M1B" bench1b 1024,8192,32768; }
stage_bench8b() { bench "$M8B" bench8b 1024,8192; }
stage_bench8b-32k() { bench "$M8B" bench8b_32k 32768; }
# The 8B shape's 32k prefill (full; recording on, then off), the default against the switches in
# $ATTN_AB (e.g. a prefill attention kernel), alternating, median of 3 prefills each.
stage_prefill32k-ab() {
  local rec sw
  for rec in on off; do
    for sw in "" "${ATTN_AB:?set ATTN_AB}"; do
      # shellcheck disable=SC2086  # word splitting wanted: one NAME=VALUE per word
      env $sw "$KVSCOPE" bench --model "$M8B" --device cuda --lengths 32768 --decode-steps 2 \
        --prefill-reps 3 --policy full --recording "$rec" --json "$OUT/p32k_${rec}${sw:+_ab}.json" |
        grep -E "^full" | sed "s/^/${sw:-default} /"
    done
  done
}
stage_bench1b-128k() {  # the issue's "128k for the 1B shape": full, recording on only
  "$KVSCOPE" bench --model "$M1B" --device cuda --lengths 131072 --decode-steps 8 --policy full \
    --recording on --json "$OUT/bench1b_128k.json"
}
# Where a decode / prefill step's time goes (KVSCOPE_PROFILE=1, kernels/op_profile.h): per-op
# device time (the stream waited for around each op) and the engine's host work, per step.
profile() {  # model tag lengths [recording] [profile mode] [policy]
  for L in ${3//,/ }; do
    KVSCOPE_PROFILE=${5:-1} "$KVSCOPE" bench --model "$1" --device cuda --lengths "$L" --decode-steps 16 \
      --policy "${6:-full}" --ratio 0.25 --recording "${4:-off}" --quiet --json "$OUT/profile_$2_$L.json" 2>&1 | grep -v "^$"
  done
}
# The host side of a prefill alone (no GPU): a prompt's K/V into the host cache, old storage vs
# append_layer inline / on the pool vs memcpy into touched memory (bench/bench_host_cache.cpp).
# And what recording adds after the prompt: the trace's per-layer summaries, serial vs pooled.
# bench_cuda_attention on the Llama-3 8B attention shape: attn8b N REPS [NAME=VALUE...], under
# the command in ATTN_WRAP if set (a profiler).
attn8b() {
  local n=$1 reps=$2; shift 2
  # shellcheck disable=SC2086  # word splitting wanted: ATTN_WRAP is a command line
  env "$@" ${ATTN_WRAP:-} "$BENCH_ATTN" --n "$n" --heads 32 --kv-heads 8 --dim 128 --tail 32 \
    --reps "$reps"
}
stage_attn() {
  local r=0
  for n in 8192 32768; do
    attn8b "$n" 5 || r=1
    python3 bench/peer_attention.py --n "$n" --heads 32 --kv-heads 8 --dim 128 --reps 5 || r=1
  done
  return $r
}

# A prefill attention switch against the default (ATTN_AB="NAME=VALUE ..."), alternating, twice
# each, on the 8B shape at 8k and 32k: kernel times only (bench_cuda_attention checks the
# tensor-core path against the fp32 kernels first, under the switch too).
stage_attn-ab() {
  local r=0 n i c
  local IFS_OLD=$IFS cands
  IFS=';' read -r -a cands <<< "${ATTN_AB:?set ATTN_AB}"; IFS=$IFS_OLD
  for n in 8192 32768; do
    for i in 1 2; do
      echo "# n=$n default ($i)"
      attn8b "$n" 5 || r=1
      for c in "${cands[@]}"; do
        echo "# n=$n $c ($i)"
        # shellcheck disable=SC2086  # word splitting wanted: one NAME=VALUE per word
        attn8b "$n" 5 $c || r=1
      done
    done
  done
  return $r
}

# Where the prefill attention kernels stall: ncu's full set on one launch of each (the second:
# the first is bench_cuda_attention's check at 2,048 queries), 8B attention shape at 8k.
stage_ncu-attn() {
  local NCU=/usr/local/cuda/bin/ncu k r=0
  for k in probs_pass_mma flash_fwd_mma probs_pass_wgmma flash_fwd_wgmma; do
    local sw=()  # the wgmma kernels are opt-in (cuda_attention_wgmma.cu)
    [[ $k == *wgmma ]] && sw=(KVSCOPE_CUDA_FWD_WGMMA=1 KVSCOPE_CUDA_PROBS_WGMMA=1)
    ATTN_WRAP="$NCU --set full --import-source yes -f -o $OUT/ncu_$k -k regex:$k --launch-skip 1 \
      --launch-count 1" attn8b 8192 1 "${sw[@]}" > "$OUT/ncu_$k.log" 2>&1 || r=1
    "$NCU" --import "$OUT/ncu_$k.ncu-rep" > "$OUT/ncu_$k.txt" 2>&1 || r=1
    grep -E "Duration|Registers Per|Occupancy|Throughput|Issue Slots|No Eligible|Bank Conflicts" \
      "$OUT/ncu_$k.txt" | head -24
    # Where the warps wait: every stall reason's share, then the SASS lines with most samples.
    "$NCU" --import "$OUT/ncu_$k.ncu-rep" --page raw --csv > "$OUT/ncu_${k}_raw.csv" 2>&1 || r=1
    "$NCU" --import "$OUT/ncu_$k.ncu-rep" --page source --print-source sass --csv \
      > "$OUT/ncu_${k}_sass.csv" 2>&1 || r=1
    python3 bench/ncu_stalls.py "$OUT/ncu_${k}_raw.csv" "$OUT/ncu_${k}_sass.csv" | tee "$OUT/stalls_$k.txt"
    xz -9 "$OUT/ncu_$k.txt" "$OUT/ncu_${k}_raw.csv" "$OUT/ncu_${k}_sass.csv"
  done
  return $r
}

stage_hostcache() {
  "$BENCH_HOST_CACHE" 8192 32 8 128; "$BENCH_HOST_CACHE" 32768 32 8 128
  "$BENCH_SUMMARY" 32768 32 32 8 32
}
# One full, recorded decode of the 8B shape at 1k with NAME=VALUE set; its row, prefixed with it.
decode1k() {  # json-name NAME=VALUE...   (DECODE_LEN: another context length than 1024)
  local name=$1; shift
  env "$@" "$KVSCOPE" bench --model "$M8B" --device cuda --lengths "${DECODE_LEN:-1024}" --decode-steps 32 \
    --prefill-reps 1 --policy full --recording on --json "$OUT/$name.json" | grep -E "^full" | sed "s/^/$* /"
}
stage_gemv-shapes() {  # the decode GEMVs' block shapes (kernels/cuda/cuda_gemv.cu), one run each
  local sh
  for sh in 8x4 4x8 4x4 8x8; do decode1k "gemv_$sh" "KVSCOPE_CUDA_GEMV_SHAPE=$sh"; done
}

# Decode switches against the default, alternating to see the drift between runs (the eleventh
# run's H100 drifted by up to 0.15 ms between runs of one binary); 8B, 1k, recorded.
# ROUNDS rounds of: the default, then each candidate (';' between candidates, NAME=VALUE words
# within one), named PREFIX_default_R and PREFIX_I_R.
compare_decode() {  # rounds prefix candidates
  local rounds=$1 prefix=$2 r c i cands
  IFS=';' read -ra cands <<< "$3"
  for r in $(seq "$rounds"); do
    decode1k "${prefix}_default_$r"
    i=0
    for c in "${cands[@]}"; do
      i=$((i + 1))
      # shellcheck disable=SC2086  # word splitting wanted: one NAME=VALUE per word
      decode1k "${prefix}_${i}_$r" $c
    done
  done
}
stage_decode-ab() { compare_decode 3 decode_ab "${DECODE_AB:?set DECODE_AB to the switches to time}"; }
stage_decode-multi() { compare_decode 2 multi "${DECODE_MULTI:?set DECODE_MULTI}"; }

# Device time per kernel of an 8B decode step at 1k (ncu, one metric pass per kernel, caches and
# clocks left as they run): which kernels a step launches and how near the floor each one is.
stage_ncu8b-decode() {
  local NCU=/usr/local/cuda/bin/ncu
  "$NCU" --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv --cache-control none \
    --clock-control none "$KVSCOPE" bench --model "$M8B" --device cuda --lengths 1024 \
    --decode-steps 3 --prefill-reps 1 --policy full --recording "${1:-off}" --quiet > "$OUT/ncu_decode.csv" 2> "$OUT/ncu_decode.err"
  tail -3 "$OUT/ncu_decode.err"
  python3 bench/ncu_steps.py "$OUT/ncu_decode.csv" --steps 2 | tee "$OUT/ncu_decode.txt"
  xz -9 "$OUT/ncu_decode.csv"
}
stage_profile1b() { profile "$M1B" 1b 1024,8192,32768; }
stage_profile8b() { profile "$M8B" 8b 1024,8192; profile "$M8B" 8b_rec 8192 on; which nsys ncu || true; }
stage_profile8b-32k() { profile "$M8B" 8b_rec 32768 on; }  # the prefill target's case
stage_profile8b-snapkv() { profile "$M8B" 8b_snapkv 32768 off 1 snapkv; }  # a compressing policy's prefill
# Host or device bound? KVSCOPE_PROFILE=host: each op's host cost, no added waits; the device's
# own waits in sync.wait (kernels/op_profile.h).
stage_profile8b-host() { profile "$M8B" 8b_host 1024 off host; profile "$M8B" 8b_host_rec 1024 on host; }
stage_profile1b-host() { profile "$M1B" 1b_host 1024 off host; }
stage_peer1b() { python3 bench/hf_peer.py --model "$M1B" --lengths 1024,8192,32768 --json "$OUT/peer1b.json"; }
stage_peer8b() { python3 bench/hf_peer.py --model "$M8B" --lengths 1024,8192,32768 --json "$OUT/peer8b.json"; }
stage_parity() {  # traces kept under out/ (ignored) for a look while the machine is warm
  python3 bench/backend_parity.py --kvscope "$KVSCOPE" --a cpu --b cuda \
    --env-b KVSCOPE_CUDA_MATH=fp32 --expect-identical --keep "$ROOT/out/parity-fp32" \
    --json "$OUT/parity_fp32.json"; local r1=$?
  python3 bench/backend_parity.py --kvscope "$KVSCOPE" --a cpu --b cuda \
    --keep "$ROOT/out/parity-native" --json "$OUT/parity_native.json"; local r2=$?
  return $((r1 || r2))
}

# Large host copies (pinned DMA + pooled unpacks of keys, values, window rows and column sums,
# >= 8 MB) against the pageable path of KVSCOPE_CUDA_DEFER=0, on the 1B shape at 8k: the same
# kernels, so every kept set, event and token must be identical.
stage_parity-large() {
  python3 bench/backend_parity.py --kvscope "$KVSCOPE" --model "$M1B" --a cuda --b cuda \
    --env-a KVSCOPE_CUDA_DEFER=0 --policies snapkv,h2o,tova,pyramidkv --length 8192 --max-new 8 \
    --expect-identical --json "$OUT/parity_large.json"
}

[ $# -gt 0 ] || { sed -n '2,50p' "$0"; exit 2; }
rc_all=0
for s in "$@"; do
  if ! declare -F "stage_$s" >/dev/null; then echo "unknown stage: $s" >&2; exit 2; fi
  if [ "$s" = pack ]; then stage_pack; status pack $?; continue; fi
  need_out
  echo "=== $s ($(date -u +%H:%M:%S))"
  "stage_$s" 2>&1 | tee "$OUT/$s.log"
  r=${PIPESTATUS[0]}
  status "$s" "$r"
  [ "$r" = 0 ] || rc_all=1
done
exit $rc_all
