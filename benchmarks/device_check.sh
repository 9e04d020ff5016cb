#!/usr/bin/env bash
# One GPU run that proves the CUDA path (about 6-7 minutes on an H100; every step has its own
# time limit and the limits add up to 530 s, under the 9 minutes a device command may take).
# Each step prints its output as it runs and its result line ("== step: PASS/FAIL, N s") the
# moment it ends, so a run that is cut off still says what passed. The CPU suite stays in CI.
#   bash benchmarks/device_check.sh            # the check
#   bash benchmarks/device_check.sh --full     # plus the long runs (the whole suite on the GPU,
#                                              # the full GPU benchmark); not for one device call
# Results (logs, JSON) go to $OUT (default bench-results/). No network needed: the package is
# built from this tree (FASTRAND_CUDA_ARCHS=90 by default, the H100/H200 arch).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-results}
mkdir -p "$OUT"
export FASTRAND_CUDA=1 FASTRAND_CUDA_ARCHS=${FASTRAND_CUDA_ARCHS:-90} PYTHONUNBUFFERED=1
# a cubin cache of its own, empty at the start
FASTRAND_CACHE_DIR=${FASTRAND_CACHE_DIR:-$(mktemp -d)/fastrand-cache}
export FASTRAND_CACHE_DIR
PY=${PYTHON:-python3}
FULL=0
[ "${1:-}" = --full ] && FULL=1
SUMMARY=()
T_START=$SECONDS

step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s, at $((SECONDS - T_START))s)"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | tail -n 40
  local rc=${PIPESTATUS[0]} verdict=PASS
  [ "$rc" = 0 ] || verdict="FAIL (rc=$rc)"
  [ "$rc" = 124 ] && verdict="TIMEOUT"
  local line
  line=$(printf '== %-16s %-14s %4ss' "$name:" "$verdict" "$((SECONDS - t0))")
  echo "$line"
  SUMMARY+=("$line")
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
step build 120 $PY -m pip install -q --no-build-isolation --no-deps .
cd /tmp || exit 1  # import the installed package, not the source tree
step versions 20 $PY "$OLDPWD/benchmarks/device_steps.py" versions
step probe_aot 30 $PY "$OLDPWD/benchmarks/device_steps.py" probe aot
step probe_nvrtc 45 $PY "$OLDPWD/benchmarks/device_steps.py" probe nvrtc
cd "$OLDPWD" || exit 1
GPU_TESTS="tests/test_cuda.py tests/test_cuda_backend.py tests/test_cuda_box.py tests/test_cuda_safety.py
  tests/test_torch_generator_state.py tests/test_default_device.py"
# the GPU tests (test_cuda_backend.py: its GPU half, test_backend_*, on both backends)
# shellcheck disable=SC2086
step tests_aot 80 env FASTRAND_CUDA_BACKEND=aot $PY -m pytest -q -p no:cacheprovider \
  -k "test_backend_ or not test_cuda_backend" $GPU_TESTS
step tests_nvrtc 50 env FASTRAND_CUDA_BACKEND=nvrtc $PY -m pytest -q -p no:cacheprovider \
  -k "test_backend_ or not test_cuda_backend" tests/test_cuda.py tests/test_cuda_box.py \
  tests/test_cuda_safety.py tests/test_cuda_backend.py
step exhaustive_aot 35 env FASTRAND_CUDA_BACKEND=aot $PY benchmarks/device_exhaustive.py \
  --values 20000000 --out "$OUT"
step exhaustive_nvrtc 35 env FASTRAND_CUDA_BACKEND=nvrtc $PY benchmarks/device_exhaustive.py \
  --values 20000000 --out "$OUT"
step box64 30 $PY benchmarks/device_steps.py box64
step foreign 15 $PY benchmarks/device_steps.py foreign
step capture_aot 15 env FASTRAND_CUDA_BACKEND=aot $PY benchmarks/device_steps.py capture
step fallback 15 $PY benchmarks/device_steps.py fallback
step bench 40 $PY benchmarks/bench_gpu.py --quick --out "$OUT"
if [ "$FULL" = 1 ]; then
  step full_tests 900 $PY -m pytest -q -p no:cacheprovider tests
  step full_bench 600 $PY benchmarks/bench_gpu.py --out "$OUT"
  step bench_slice 120 $PY benchmarks/bench_slice.py --quick --out "$OUT"
  step bench_sde 120 $PY benchmarks/bench_sde.py --quick --out "$OUT"
fi

echo
echo "================ device check summary ($((SECONDS - T_START)) s) ================"
printf '%s\n' "${SUMMARY[@]}"
grep -hE "^(FAILED|ERROR)" "$OUT"/tests_*.log 2>/dev/null | head -20
grep -hE "EXHAUSTIVE" "$OUT"/exhaustive_*.log 2>/dev/null
sed -n '/^GPU summary/,$p' "$OUT/bench.log" 2>/dev/null | head -30
