#!/usr/bin/env bash
# One-shot check on a fresh GPU machine with no network (about 6-7 minutes on an H100/H200):
# build the package with the CUDA kernel (AOT), compile the same kernels with NVRTC into an
# empty cubin cache (`python -m fastrand warmup`), run the whole test suite (CUDA tests
# included; tests/test_cuda_backend.py runs its GPU tests on both backends), run the CUDA tests
# (test_cuda.py) again on the NVRTC backend, compare CPU and GPU exhaustively / at volume, run the GPU benchmark
# over every launch shape plus the backends section (cold/warm NVRTC load, first-draw latency,
# NVRTC vs AOT throughput), the shard-draw and SDE benchmarks (quick), and print a short table
# last. Results (JSON, PNG, logs) go to $OUT
# (default bench-results/). NVRTC comes with torch's CUDA wheels (nvidia/cu13 or cuda_nvrtc).
#   FASTRAND_CUDA_ARCHS=90 bash benchmarks/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results}
mkdir -p "$OUT" "${LOGS:-$OUT}"
export FASTRAND_CUDA=1 FASTRAND_CUDA_ARCHS=${FASTRAND_CUDA_ARCHS:-90} PYTHONUNBUFFERED=1
export FASTRAND_REQUIRE_CUDA_KERNEL=1 FASTRAND_REQUIRE_NVRTC=1
# a cubin cache of its own, empty at the start (the NVRTC tests compile into it)
FASTRAND_CACHE_DIR=${FASTRAND_CACHE_DIR:-$(mktemp -d)/fastrand-cache}
export FASTRAND_CACHE_DIR
PY=${PYTHON:-python3}
declare -A RESULT

LOGS=${LOGS:-$OUT}  # where bulky logs go (the build log and the SASS dump)
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name"
  local t0=$SECONDS
  local dir=$OUT
  [ "$name" = build ] && dir=$LOGS
  timeout "$limit" "$@" 2>&1 | tee "$dir/$name.log"
  local rc=${PIPESTATUS[0]}
  RESULT[$name]="rc=$rc $((SECONDS - t0))s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
step build 240 $PY -m pip install --no-build-isolation --no-deps -v .
(cd /tmp && $PY -m fastrand info) | tee "$OUT/info.json"
step warmup 120 env FASTRAND_CUDA_BACKEND=nvrtc $PY -m fastrand warmup
step tests 300 $PY -m pytest -q -p no:cacheprovider tests
step tests_nvrtc 150 env FASTRAND_CUDA_BACKEND=nvrtc $PY -m pytest -q -p no:cacheprovider \
  tests/test_cuda.py
step exhaustive 200 $PY benchmarks/device_exhaustive.py --out "$OUT"
step bench 260 $PY benchmarks/bench_gpu.py --out "$OUT"
step bench_slice 60 $PY benchmarks/bench_slice.py --quick --out "$OUT"
step bench_sde 60 $PY benchmarks/bench_sde.py --quick --out "$OUT"
so=$($PY -c "import fastrand._C as c; print(c.__file__)" 2>/dev/null)
if [ -n "$so" ] && command -v cuobjdump >/dev/null; then
  cuobjdump -sass "$so" > "$LOGS/sass.txt" 2>/dev/null
  $PY benchmarks/sass_count.py "$LOGS/sass.txt" > "$OUT/sass_counts.txt"
fi

echo
echo "================ device check summary ================"
for k in build warmup tests tests_nvrtc exhaustive bench bench_slice bench_sde; do
  printf '%-12s %s\n' "$k" "${RESULT[$k]:-not run}"
done
grep -E "^sm_|^cuda:" "$OUT/warmup.log" | head -4
for t in tests tests_nvrtc; do
  grep -E "^(FAILED|ERROR)" "$OUT/$t.log" | head -20
  printf '%-12s %s\n' "$t:" "$(grep -E "passed|failed" "$OUT/$t.log" | tail -1)"
done
grep -E "^EXHAUSTIVE" "$OUT/exhaustive.log" | tail -1
sed -n '/^GPU summary/,$p' "$OUT/bench.log"
grep -iE "cuda" "$OUT/bench_slice.log" | tail -3
grep -iE "cuda|speedup|x " "$OUT/bench_sde.log" | tail -3
[ -f "$OUT/sass_counts.txt" ] && head -4 "$OUT/sass_counts.txt"
