#!/usr/bin/env bash
# Builds the libFuzzer target in build-fuzz/ (clang, ASan+UBSan) and fuzzes the model-file loader.
#
# usage: tests/fuzz/run_fuzz.sh [seconds=60] [extra libFuzzer flags...]
# env:   CC / CXX (default clang-14 / clang++-14), SSM_FUZZ_BUILD (default <repo>/build-fuzz), JOBS (build, default 2),
#        SSM_FUZZ_TARGET (default fuzz_model_file; fuzz_monitor_frame fuzzes ssm-monitor's frame parser, seeds in
#        tests/fuzz/seeds_monitor, corpus in $SSM_FUZZ_BUILD/fuzz-corpus-monitor)
#
# Seeds: tests/fuzz/seeds (valid models) and tests/corpus (malformed files) are read, never written; new inputs
# go to $SSM_FUZZ_BUILD/fuzz-corpus (kept between runs), crashes to $SSM_FUZZ_BUILD/findings/.
# Exit status: 0 if the run found nothing, 1 on a finding (crash, sanitizer report, non-ssm exception, timeout,
# out-of-memory), 2 on a build failure. Add a crashing input to tests/corpus/ once the bug is fixed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
seconds=${1:-60}
shift || true
build=${SSM_FUZZ_BUILD:-$src/build-fuzz}
target=${SSM_FUZZ_TARGET:-fuzz_model_file}
case "$target" in
  fuzz_model_file)    dict="$here/model_file.dict";    corpus="$build/fuzz-corpus"; seeds=("$here/seeds" "$src/tests/corpus") ;;
  fuzz_monitor_frame) dict="$here/monitor_frame.dict"; corpus="$build/fuzz-corpus-monitor"; seeds=("$here/seeds_monitor") ;;
  *) echo "run_fuzz: unknown SSM_FUZZ_TARGET $target" >&2; exit 2 ;;
esac
export CC=${CC:-clang-14} CXX=${CXX:-clang++-14}
mkdir -p "$build"

if ! cmake -S "$src" -B "$build" -DSSM_FUZZ=ON -DSSM_APPS=OFF -DSSM_CUDA=OFF -DSSM_BENCH=OFF \
       -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
       >"$build/run_fuzz.configure.log" 2>&1 ||
   ! cmake --build "$build" -j"${JOBS:-2}" --target "$target" >"$build/run_fuzz.build.log" 2>&1; then
    echo "run_fuzz: build failed; see $build/run_fuzz.configure.log and $build/run_fuzz.build.log" >&2
    tail -30 "$build/run_fuzz.build.log" "$build/run_fuzz.configure.log" 2>/dev/null >&2 || true
    exit 2
fi

mkdir -p "$corpus" "$build/findings"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "run_fuzz: fuzzing $target for ${seconds}s (corpus $corpus, findings $build/findings)"
set +e
"$build/tests/fuzz/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    -dict="$dict" -artifact_prefix="$build/findings/" "$@" \
    "$corpus" "${seeds[@]}"
rc=$?
set -e
if [ $rc -ne 0 ]; then
    echo "run_fuzz: FINDING (libFuzzer exit $rc); reproduce with: $build/tests/fuzz/$target $build/findings/<file>" >&2
    ls -l "$build/findings" >&2
    exit 1
fi
echo "run_fuzz: no findings in ${seconds}s"
