#!/usr/bin/env bash
# End-to-end tests of `ssm design` and `ssm run --zero-phase`: designed filters load, describe themselves, stream as
# they batch, chain with a trained model; every bad parameter gives one clear line on stderr, a non-zero exit and
# no output file. (Parity of the numbers with scipy is tests/test_filters.cpp's job.)
set -u
SSM="$1"; SRC="$2"
T="$(mktemp -d)"; trap 'rm -rf "$T"' EXIT
cd "$T"
fails=0; passes=0
ok()   { passes=$((passes+1)); echo "ok   $1"; }
bad()  { fails=$((fails+1)); echo "FAIL $1"; }
check() { local name="$1"; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

# expect_error NAME PATTERN OUTFILE -- command...: non-zero exit, exactly one stderr line matching PATTERN, no OUTFILE
expect_error() {
  local name="$1" pattern="$2" out="$3"; shift 4
  "$@" > stdout.txt 2> stderr.txt; local rc=$?
  local lines; lines=$(grep -c . stderr.txt)
  if [ $rc -ne 0 ] && [ "$lines" = 1 ] && grep -qiE "$pattern" stderr.txt && [ ! -e "$out" ] && [ -z "$(ls "$out".part-* 2>/dev/null)" ]; then
    ok "$name"
  else
    bad "$name (rc=$rc, stderr: $(head -3 stderr.txt))"
  fi
}

# max |a-b| over two CSV files with a header line, relative to the RMS of a; passes if <= tol
csv_close() {
  awk -F, -v tol="$3" 'NR==FNR { if (FNR>1) { for (i=1;i<=NF;i++) a[FNR,i]=$i; n=NF }; next }
    FNR>1 { for (i=1;i<=NF;i++) { d=$i-a[FNR,i]; if (d<0) d=-d; if (d>m) m=d; s+=a[FNR,i]^2; c++ } }
    END { r=sqrt(s/(c?c:1)); if (r<1e-3) r=1e-3; printf "  max diff %.3g, rms %.3g\n", m, r; exit !(m <= tol*r && c>0) }' "$1" "$2"
}

ECG="$SRC/models/ecg-denoiser/ecg-denoiser.safetensors"
awk 'BEGIN { srand(3); print "x"; for (i=0;i<20000;i++) printf "%.6f\n", sin(i*0.01) + (rand()-0.5) }' > in.csv
awk 'BEGIN { srand(5); print "a,b"; for (i=0;i<3000;i++) printf "%.5f,%.5f\n", rand()-0.5, sin(i*0.3) }' > in2.csv

# Good designs: every family and type
check "butter band-pass (README example)" "$SSM" design butter --order 4 --band 0.5,40 --rate 250 -o bp.safetensors
check "cheby1 low-pass" "$SSM" design cheby1 --order 5 --cutoff 30 --ripple 1 --rate 250 -o c1.safetensors
check "cheby2 high-pass" "$SSM" design cheby2 --order 4 --cutoff 1 --attenuation 40 --type highpass --rate 250 -o c2.safetensors
check "ellip band-stop" "$SSM" design ellip --order 3 --band 45,55 --type bandstop --ripple 0.5 --attenuation 60 --rate 250 -o el.safetensors
check "bessel order 32 low-pass" "$SSM" design bessel --order 32 --cutoff 20 --rate 250 -o be.safetensors
check "notch with harmonics" "$SSM" design notch --freq 50 --q 30 --harmonics 2 --rate 250 -o notch.safetensors
check "comb (all harmonics below Nyquist)" "$SSM" design comb --freq 50 --q 30 --rate 1000 -o comb.safetensors
check "dc blocker" "$SSM" design dcblock --cutoff 0.5 --rate 250 -o dc.safetensors
check "two channels" "$SSM" design butter --order 2 --cutoff 10 --rate 250 --channels 2 --name lp -o two.safetensors
check "info shows the filter" bash -c "'$SSM' info bp.safetensors | grep -q \"sos 'filter' 1 ch, 4 sections: butter bandpass, order 4, 0.5-40 Hz, at 250 Hz\""
check "info shows the comb" bash -c "'$SSM' info comb.safetensors | grep -q '9 sections: notch, 50 Hz, Q 30, 9 harmonics'"
check "info --json" bash -c "'$SSM' info two.safetensors --json | grep -q '\"in_channels\": 2'"

# Streaming == batch, zero-phase
check "run stream block 1" "$SSM" run el.safetensors in.csv s1.csv --backend stream --block 1 -q
check "run stream block 333" "$SSM" run el.safetensors in.csv s333.csv --backend stream --block 333 -q
check "run batch" "$SSM" run el.safetensors in.csv b.csv -q
check "stream block 1 == block 333 (identical)" cmp -s s1.csv s333.csv
check "stream == batch (identical)" cmp -s s1.csv b.csv
check "zero-phase" "$SSM" run bp.safetensors in.csv zp.csv --zero-phase -q
check "zero-phase keeps length" test "$(wc -l < zp.csv)" = "$(wc -l < in.csv)"
check "zero-phase two channels" "$SSM" run two.safetensors in2.csv zp2.csv --zero-phase -q
check "zero-phase 1-channel filter per file channel" "$SSM" run bp.safetensors in2.csv zp3.csv --zero-phase -q
"$SSM" run bp.safetensors in.csv causal.csv -q
check "zero-phase differs from causal" bash -c "! cmp -s zp.csv causal.csv"

# A filter chained with a trained model (the ECG denoiser runs at 360 Hz)
awk 'BEGIN { srand(7); print "x"; for (i=0;i<8000;i++) printf "%.6f\n", 0.5*sin(i*0.05) + 0.2*sin(2*3.14159265*60*i/360) + 0.1*(rand()-0.5) }' > ecg_in.csv
check "notch then the ECG model" "$SSM" design notch --freq 60 --q 30 --rate 360 --then "$ECG" -o chain.safetensors
check "the ECG model then a low-pass" "$SSM" design butter --order 2 --cutoff 40 --rate 360 --first "$ECG" -o chain2.safetensors
check "chain info lists both" bash -c "'$SSM' info chain.safetensors | grep -q \"sos 'filter'\" && '$SSM' info chain.safetensors | grep -q \"s4d\""
check "chain stream block 1" "$SSM" run chain.safetensors ecg_in.csv cs.csv --backend stream --block 1 -q
check "chain batch" "$SSM" run chain.safetensors ecg_in.csv cb.csv -q
check "chain stream == batch" csv_close cs.csv cb.csv 1e-4
check "chain2 stream block 7" "$SSM" run chain2.safetensors ecg_in.csv c2s.csv --backend stream --block 7 -q
check "chain2 batch" "$SSM" run chain2.safetensors ecg_in.csv c2b.csv -q
check "chain2 stream == batch" csv_close c2s.csv c2b.csv 1e-4

# Bad parameters: one line, non-zero exit, nothing written
expect_error "order too high" "order must be in 1..32" x1.safetensors -- "$SSM" design butter --order 33 --cutoff 10 --rate 250 -o x1.safetensors
expect_error "order zero" "order must be in 1..32" x2.safetensors -- "$SSM" design butter --order 0 --cutoff 10 --rate 250 -o x2.safetensors
expect_error "order missing" "needs --order" x3.safetensors -- "$SSM" design butter --cutoff 10 --rate 250 -o x3.safetensors
expect_error "cutoff at Nyquist" "Nyquist" x4.safetensors -- "$SSM" design butter --order 4 --cutoff 125 --rate 250 -o x4.safetensors
expect_error "cutoff above Nyquist" "Nyquist" x5.safetensors -- "$SSM" design butter --order 4 --cutoff 200 --rate 250 -o x5.safetensors
expect_error "negative cutoff" "cutoff" x6.safetensors -- "$SSM" design butter --order 4 --cutoff -3 --rate 250 -o x6.safetensors
expect_error "band reversed" "reversed" x7.safetensors -- "$SSM" design butter --order 4 --band 40,0.5 --rate 250 -o x7.safetensors
expect_error "band malformed" "LOW,HIGH" x8.safetensors -- "$SSM" design butter --order 4 --band 40 --rate 250 -o x8.safetensors
expect_error "band edge above Nyquist" "Nyquist" x9.safetensors -- "$SSM" design butter --order 4 --band 1,130 --rate 250 -o x9.safetensors
expect_error "band for a low-pass" "needs --cutoff" x10.safetensors -- "$SSM" design butter --order 4 --band 1,30 --type lowpass --rate 250 -o x10.safetensors
expect_error "cutoff and band" "not both" x11.safetensors -- "$SSM" design butter --order 4 --band 1,30 --cutoff 3 --rate 250 -o x11.safetensors
expect_error "ripple missing" "needs --ripple" x12.safetensors -- "$SSM" design cheby1 --order 4 --cutoff 30 --rate 250 -o x12.safetensors
expect_error "attenuation missing" "needs --attenuation" x13.safetensors -- "$SSM" design ellip --order 4 --cutoff 30 --ripple 1 --rate 250 -o x13.safetensors
expect_error "ripple for butter" "applies to cheby1 and ellip" x14.safetensors -- "$SSM" design butter --order 4 --cutoff 30 --ripple 1 --rate 250 -o x14.safetensors
expect_error "attenuation below ripple" "must exceed" x15.safetensors -- "$SSM" design ellip --order 4 --cutoff 30 --ripple 3 --attenuation 2 --rate 250 -o x15.safetensors
expect_error "unknown family" "unknown filter family" x16.safetensors -- "$SSM" design chebyshev3 --order 4 --cutoff 30 --rate 250 -o x16.safetensors
expect_error "unknown type" "unknown filter type" x17.safetensors -- "$SSM" design butter --order 4 --cutoff 30 --type allpass --rate 250 -o x17.safetensors
expect_error "rate missing" "rate" x18.safetensors -- "$SSM" design butter --order 4 --cutoff 30 -o x18.safetensors
expect_error "rate zero" "sample rate" x19.safetensors -- "$SSM" design butter --order 4 --cutoff 30 --rate 0 -o x19.safetensors
expect_error "notch harmonic above Nyquist" "Nyquist" x20.safetensors -- "$SSM" design notch --freq 50 --q 30 --harmonics 3 --rate 250 -o x20.safetensors
expect_error "notch without q" "needs --q" x21.safetensors -- "$SSM" design notch --freq 50 --rate 250 -o x21.safetensors
expect_error "notch with order" "does not apply" x22.safetensors -- "$SSM" design notch --freq 50 --q 30 --order 2 --rate 250 -o x22.safetensors
expect_error "dcblock without cutoff" "needs --cutoff" x23.safetensors -- "$SSM" design dcblock --rate 250 -o x23.safetensors
expect_error "chain at the wrong rate" "360 Hz" x24.safetensors -- "$SSM" design notch --freq 50 --q 30 --rate 250 --then "$ECG" -o x24.safetensors
expect_error "chain with a missing model" "cannot open|no such" x25.safetensors -- "$SSM" design notch --freq 50 --q 30 --rate 250 --then nope.safetensors -o x25.safetensors
expect_error "then and first" "exclude" x26.safetensors -- "$SSM" design notch --freq 60 --q 30 --rate 360 --then "$ECG" --first "$ECG" -o x26.safetensors
expect_error "q not a number" "q" x27.safetensors -- "$SSM" design notch --freq 50 --q abc --rate 250 -o x27.safetensors
expect_error "zero-phase on a trained model" "only of sos layers" zz1.csv -- "$SSM" run chain.safetensors ecg_in.csv zz1.csv --zero-phase
expect_error "zero-phase at another rate" "does not resample" zz2.csv -- "$SSM" run bp.safetensors in.csv zz2.csv --zero-phase --rate 500
expect_error "zero-phase too short" "more than 27 samples" zz3.csv -- bash -c "head -10 in.csv > short.csv && '$SSM' run bp.safetensors short.csv zz3.csv --zero-phase"
expect_error "zero-phase with a backend" "no --backend" zz4.csv -- "$SSM" run bp.safetensors in.csv zz4.csv --zero-phase --backend stream

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
