#!/usr/bin/env bash
# End-to-end tests of the `ssm` CLI: formats, backends agree, and every kind of bad input gives one clear line on
# stderr, a non-zero exit and no output file (not even a partial one).
set -u
SSM="$1"; MAKE_MODEL="$2"; SRC="$3"
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
    bad "$name (rc=$rc, stderr: $(cat stderr.txt | head -3))"
  fi
}

# max |a-b| over two CSV files with a header line, relative to the RMS of a; passes if <= tol
csv_close() {
  awk -F, -v tol="$3" 'NR==FNR { if (FNR>1) { for (i=1;i<=NF;i++) a[FNR,i]=$i; n=NF }; next }
    FNR>1 { for (i=1;i<=NF;i++) { d=$i-a[FNR,i]; if (d<0) d=-d; if (d>m) m=d; s+=a[FNR,i]^2; c++ } }
    END { r=sqrt(s/(c?c:1)); if (r<1e-3) r=1e-3; printf "  max diff %.3g, rms %.3g\n", m, r; exit !(m <= tol*r && c>0) }' "$1" "$2"
}

"$MAKE_MODEL" m.safetensors 1 1 16 2 32 16000 0 || { echo "cannot make a test model"; exit 1; }
"$MAKE_MODEL" m3.safetensors 3 2 8 1 16 250 1
awk 'BEGIN { srand(3); print "x"; for (i=0;i<20000;i++) printf "%.6f\n", sin(i*0.01)+ (rand()-0.5) }' > in.csv
awk 'BEGIN { srand(4); print "a,b,c"; for (i=0;i<3000;i++) printf "%.5f,%.5f,%.5f\n", rand()-0.5, sin(i*0.1), rand() }' > in3.csv

check "info" "$SSM" info m.safetensors
check "info --json" bash -c "'$SSM' info m.safetensors --json | grep -q '\"in_channels\": 1'"
check "run csv auto" "$SSM" run m.safetensors in.csv out_auto.csv -q
check "run csv stream block 1" "$SSM" run m.safetensors in.csv out_s1.csv --backend stream --block 1 -q
check "run csv stream block 333" "$SSM" run m.safetensors in.csv out_s333.csv --backend stream --block 333 -q
check "run csv fft" "$SSM" run m.safetensors in.csv out_fft.csv --backend fft -q
check "stream block 1 == block 333 (identical)" cmp -s out_s1.csv out_s333.csv
check "stream == auto batch" csv_close out_s1.csv out_auto.csv 1e-4
check "stream == fft batch" csv_close out_s1.csv out_fft.csv 1e-4
check "output keeps length" test "$(wc -l < out_fft.csv)" = "$(wc -l < in.csv)"
check "multichannel model" "$SSM" run m3.safetensors in3.csv out3.csv -q
check "multichannel output width" test "$(head -2 out3.csv | tail -1 | awk -F, '{print NF}')" = 2
check "--json summary" bash -c "'$SSM' run m.safetensors in.csv j.csv --json | grep -q '\"x_realtime\"'"
check "stdin/stdout stream" bash -c "head -c 4000 /dev/zero | '$SSM' stream m.safetensors --block 64 | wc -c | grep -qx 4000"
"$MAKE_MODEL" sd.safetensors 1 1 16 2 32 16000 1 statedict
"$MAKE_MODEL" sdref.safetensors 1 1 16 2 32 16000 1
check "convert S4 example state_dict" "$SSM" convert sd.safetensors imported.safetensors --prenorm --rate 16000
check "imported model runs" "$SSM" run imported.safetensors in.csv out_imp.csv -q
check "reference model runs" "$SSM" run sdref.safetensors in.csv out_ref.csv -q
check "imported == native" cmp -s out_imp.csv out_ref.csv
expect_error "convert rejects unknown checkpoint" "not a native model" bad_conv.safetensors -- "$SSM" convert "$SRC/tests/golden/s4d_layer_zoh.io.safetensors" bad_conv.safetensors
check "convert to f16" "$SSM" convert m.safetensors m16.safetensors --dtype f16
check "f16 model runs" "$SSM" run m16.safetensors in.csv out16.csv -q
check "f16 close to f32" csv_close out_auto.csv out16.csv 2e-2

# Bad input: one line, non-zero exit, no output
expect_error "missing input" "no such file" o1.csv -- "$SSM" run m.safetensors nope.csv o1.csv
expect_error "missing model" "cannot open|no such" o2.csv -- "$SSM" run nope.safetensors in.csv o2.csv
head -c 100 m.safetensors > trunc.safetensors
expect_error "truncated model" "trunc.safetensors" o3.csv -- "$SSM" run trunc.safetensors in.csv o3.csv
printf 'garbage that is not a model at all' > junk.safetensors
expect_error "junk model" "junk.safetensors" o4.csv -- "$SSM" run junk.safetensors in.csv o4.csv
expect_error "unsupported output format" "unsupported output format" o5.xyz -- "$SSM" run m.safetensors in.csv o5.xyz
expect_error "wrong channel count" "channel" o6.csv -- "$SSM" run m3.safetensors in.csv o6.csv
{ echo x; echo 0.1; echo nan; echo 0.3; } > nan.csv
expect_error "NaN sample" "non-finite sample .NaN. at frame 1" o7.csv -- "$SSM" run m.safetensors nan.csv o7.csv
check "NaN zeroed on request" "$SSM" run m.safetensors nan.csv o7b.csv --nonfinite zero -q
echo x > empty.csv
expect_error "zero-length csv" "no data rows|zero-length" o8.csv -- "$SSM" run m.safetensors empty.csv o8.csv
{ echo x; echo 0.1; echo abc; } > text.csv
expect_error "non-numeric csv" "not a number" o9.csv -- "$SSM" run m.safetensors text.csv o9.csv
printf '\x93NUMPY\x01\x00\x76\x00{'"'"'descr'"'"': '"'"'<f4'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (1000, 1), }' > trunc.npy
printf '%*s\n' $((118 - 67)) '' >> trunc.npy
head -c 200 /dev/zero >> trunc.npy
expect_error "truncated npy" "truncated" o10.npy -- "$SSM" run m.safetensors trunc.npy o10.npy
mkdir adir
expect_error "directory as input" "directory" o11.csv -- "$SSM" run m.safetensors adir o11.csv
head -c 3000 /dev/urandom > noise.wav
expect_error "corrupt wav" "noise.wav" o12.wav -- "$SSM" run m.safetensors noise.wav o12.wav
expect_error "rate contradicting model for stream" "Hz" o13 -- bash -c "head -c 40 /dev/zero | '$SSM' stream m.safetensors --rate 44100"
expect_error "truncated raw stream" "truncated" o14 -- bash -c "head -c 41 /dev/zero | '$SSM' stream m.safetensors > /dev/null"
expect_error "bad --block" "block" o15.csv -- "$SSM" run m.safetensors in.csv o15.csv --block 0

# Audio through libsndfile (WAV/FLAC/OGG), resampled when the rate differs.
if "$SSM" run m.safetensors in.csv tone.wav -q --rate 16000 2>/dev/null; then
  check "wav in/out" "$SSM" run m.safetensors tone.wav out.wav -q
  check "flac out" "$SSM" run m.safetensors tone.wav out.flac -q
  check "ogg out" "$SSM" run m.safetensors tone.wav out.ogg -q
  "$SSM" run m.safetensors in.csv tone8k.wav -q --rate 8000 2>/dev/null  # an 8 kHz file: the model is 16 kHz
  "$SSM" run m.safetensors tone8k.wav res.wav > /dev/null 2> res.txt
  check "resampling is announced" grep -q "resampling 8000 Hz -> 16000 Hz" res.txt
  check "resampled output written" test -s res.wav
else
  bad "write a wav"
fi

# The GPU backend is a run-time module: ssm itself never links the CUDA libraries (they cost a CPU run > 200 MB of
# resident memory), and --backend cuda fails with a reason where there is no module or no GPU.
if command -v ldd >/dev/null; then
  if ldd "$SSM" | grep -q -E "libcuda|libcufft|libcublas"; then bad "ssm links CUDA libraries"; else ok "ssm links no CUDA library"; fi
fi
expect_error "--backend cuda without a usable GPU or module" "backend cuda" o16.csv -- env SSM_CUDA_MODULE=/nonexistent/module.so "$SSM" run m.safetensors in.csv o16.csv --backend cuda

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
