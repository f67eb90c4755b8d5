#!/usr/bin/env bash
# End-to-end tests of `ssm hippo`: coefficients and reconstruction files are written with the right shape, a
# constant input is reconstructed as that constant once the window has filled, a ramp is reconstructed at a
# look-back, and bad input/parameters give one clear stderr line, a non-zero exit and no output file.
# (Parity of the coefficients with the authors' code is tests/test_lti_b.cpp's job.)
set -u
SSM="$1"
T="$(mktemp -d)"; trap 'rm -rf "$T"' EXIT
cd "$T"
fails=0; passes=0
ok()   { passes=$((passes+1)); echo "ok   $1"; }
bad()  { fails=$((fails+1)); echo "FAIL $1"; }

expect_error() {
  local name="$1" pattern="$2" out="$3"; shift 4
  "$@" > stdout.txt 2> stderr.txt; local rc=$?
  local lines; lines=$(grep -c . stderr.txt)
  if [ $rc -ne 0 ] && [ "$lines" = 1 ] && grep -qiE "$pattern" stderr.txt && [ ! -e "$out" ]; then ok "$name"
  else bad "$name (rc=$rc, stderr: $(head -3 stderr.txt))"; fi
}

# 2000 frames, 2 channels: a constant 1 and a slow ramp t/2000.
{ echo "a,b"; for i in $(seq 0 1999); do echo "1,$(awk -v i=$i 'BEGIN{printf "%.6f", i/2000}')"; done; } > in.csv

if "$SSM" hippo --measure legt --order 16 --dt 0.01 in.csv coeffs.csv --reconstruct rec.csv --delay 50 --quiet 2> err.txt; then
  ok "legt runs"
else
  bad "legt runs ($(cat err.txt))"
fi
# coefficients: header + 2000 rows of 2*16 columns
if [ "$(wc -l < coeffs.csv)" = 2001 ] && [ "$(tail -1 coeffs.csv | awk -F, '{print NF}')" = 32 ]; then ok "coefficient shape 2000 x 32"
else bad "coefficient shape ($(wc -l < coeffs.csv) lines, $(tail -1 coeffs.csv | awk -F, '{print NF}') columns)"; fi
# the window is 2/dt = 200 samples: at the end, the constant channel reconstructs as 1 and the ramp as (t-50)/2000
if tail -1 rec.csv | awk -F, '{ d0=$1-1; if (d0<0) d0=-d0; d1=$2-(1999-50)/2000; if (d1<0) d1=-d1;
      printf "  last row %s (errors %.2g, %.2g)\n", $0, d0, d1; exit !(d0 < 1e-3 && d1 < 2e-3) }'; then ok "reconstruction at a look-back"
else bad "reconstruction at a look-back"; fi

"$SSM" hippo --measure legs --order 8 in.csv c.npy --quiet && [ -s c.npy ] && head -c 128 c.npy | grep -q "(2000, 16)" \
  && ok "legs to .npy, shape (2000, 16)" || bad "legs to .npy"

printf 'x\n0.1\nnan\n0.3\n' > nan.csv
expect_error "non-finite input" "non-finite" out1.npy -- "$SSM" hippo nan.csv out1.npy
expect_error "odd fout order" "even order" out2.npy -- "$SSM" hippo --measure fout --order 7 in.csv out2.npy
expect_error "missing input" "no such file|cannot|not" out3.npy -- "$SSM" hippo missing.wav out3.npy
expect_error "bad dt" "dt" out4.npy -- "$SSM" hippo --dt -1 in.csv out4.npy
printf 'x\n' > empty.csv
expect_error "zero-length input" "zero-length|no samples|empty" out5.npy -- "$SSM" hippo empty.csv out5.npy

echo "$passes passed, $fails failed"
[ "$fails" = 0 ]
