#!/usr/bin/env bash
# The installed package works from another project: install BUILD_DIR into a temporary prefix, configure and build
# tests/package/consumer against it with find_package(ssmstream), run it and check its output.
# usage: test_package.sh SRC_DIR BUILD_DIR     (registered in CTest as package_find_package)
set -euo pipefail
if [ $# -ne 2 ]; then echo "usage: $0 SRC_DIR BUILD_DIR" >&2; exit 2; fi
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ssmstream-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
# Build the consumer with the compiler the library was built with; a sanitized library needs the sanitizer runtimes.
args=(-DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$(cache CMAKE_CXX_COMPILER)")
if [ "$(cache SSM_SANITIZE)" = "ON" ] || [ "$(cache SSM_FUZZ)" = "ON" ]; then
    args+=(-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
fi

echo "== install $build -> $tmp/prefix"
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; exit 1; }
libdir=$(cache CMAKE_INSTALL_LIBDIR)
libdir=${libdir:-lib}
for f in "$libdir"/cmake/ssmstream/ssmstreamConfig.cmake "$libdir"/cmake/ssmstream/ssmstreamConfigVersion.cmake \
         "$libdir"/cmake/ssmstream/ssmstreamTargets.cmake include/ssmstream/ssmstream.hpp include/ssmstream/c_api.h; do
    [ -f "$tmp/prefix/$f" ] || { echo "FAIL: $f not installed" >&2; exit 1; }
done
if grep -rqs "$src/lib" "$tmp/prefix/$libdir/cmake/ssmstream/"; then
    echo "FAIL: installed CMake files point into the source tree" >&2; exit 1
fi

echo "== configure and build the consumer"
cmake -S "$src/tests/package/consumer" -B "$tmp/consumer" "${args[@]}" >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/consumer" -j2 >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }

echo "== run"
out=$("$tmp/consumer/app")
echo "$out"
expected="ssmstream 0.1.0 model consumer in 1 out 2
out 0 1 0.5 0 2.5 0 4.5 0
c_api last_error ''"
if [ "$out" != "$expected" ]; then
    printf 'FAIL: unexpected output; expected:\n%s\n' "$expected" >&2
    exit 1
fi

# A model file too, when the build has the test model writer.
if [ -x "$build/tests/make_test_model" ]; then
    "$build/tests/make_test_model" "$tmp/model.safetensors" 2 3 8 2 8 0 0
    out=$("$tmp/consumer/app" "$tmp/model.safetensors")
    echo "$out"
    head -1 <<<"$out" | grep -qx "ssmstream 0.1.0 model random-s4d in 2 out 3" || { echo "FAIL: model file header line" >&2; exit 1; }
    [ "$(sed -n 2p <<<"$out" | wc -w)" = 13 ] || { echo "FAIL: expected 12 output values" >&2; exit 1; }
fi
# A missing model is a clean error (exit 1 with a message naming the path).
if err=$("$tmp/consumer/app" "$tmp/missing.safetensors" 2>&1); then echo "FAIL: missing model loaded" >&2; exit 1; fi
grep -q "$tmp/missing.safetensors: cannot open" <<<"$err" || { echo "FAIL: error message: $err" >&2; exit 1; }
echo "package_find_package: OK"
