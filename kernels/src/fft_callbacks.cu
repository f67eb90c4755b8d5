// cuFFT LTO callbacks of the overlap-save convolution: compiled on their own to LTO-IR (kernels/CMakeLists.txt), the
// bytes embedded in the library and handed to cufftXtSetJITCallback, which links them into cuFFT's own kernels. They
// remove every pass of the plain pipeline that is not an FFT:
//   load (R2C input):   window s of channel h read straight from history ++ x (zero past the end), and the inputs
//                       that become the next call's history copied out on the way;
//   store (R2C output): the spectrum multiplied by the kernel's spectrum before it is written;
//   store (C2R output): only the hop outputs a window keeps are written, to y, with the activation applied.
// Offsets count elements of the in-place layout: real rows of ld = M + 2 floats, complex rows of bins = M/2 + 1.
// C++ linkage, global namespace, cuFFT's exact signatures: cuFFT declares and calls each by the name it is given.
#include <cufftXt.h>

#include "fft_callbacks.hpp"

using ssm::cuda::detail::FftCallbackInfo;

namespace {

using ssm::cuda::detail::FastDiv;

__device__ __forceinline__ unsigned fdiv(unsigned n, const FastDiv& f) {
    return static_cast<unsigned>((static_cast<unsigned long long>(__umulhi(n, f.m)) + n) >> f.s);
}

// offset = r·row + i. A multiply and a shift whenever the offset fits 32 bits (always, in practice): an integer
// division in every callback made the transforms twice as slow.
__device__ __forceinline__ void split(unsigned long long off, const FastDiv& row, unsigned long long& r, unsigned& i) {
    if (off < (1ull << 32)) {
        const unsigned o = static_cast<unsigned>(off), q = fdiv(o, row);
        r = q;
        i = o - q * row.d;
    } else {
        r = off / row.d;
        i = static_cast<unsigned>(off - r * row.d);
    }
}
__device__ __forceinline__ void split_row(unsigned long long row, const FastDiv& S, unsigned long long& h, unsigned long long& s) {
    if (row < (1ull << 32)) {
        h = fdiv(static_cast<unsigned>(row), S);
        s = row - h * S.d;
    } else {
        h = row / S.d;
        s = row - h * S.d;
    }
}

// The callbacks call no libdevice function (erff, tanhf): only intrinsics, so the LTO-IR needs nothing at link time.
__device__ __forceinline__ float tanh_(float x) {
    const float e = __expf(-2.0f * fabsf(x));
    return copysignf(__fdividef(1.0f - e, 1.0f + e), x);
}
// erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
__device__ __forceinline__ float erf_(float x) {
    const float a = fabsf(x), t = __fdividef(1.0f, fmaf(0.3275911f, a, 1.0f));
    const float p = t * fmaf(t, fmaf(t, fmaf(t, fmaf(t, 1.061405429f, -1.453152027f), 1.421413741f), -0.284496736f), 0.254829592f);
    return copysignf(1.0f - p * __expf(-a * a), x);
}

__device__ __forceinline__ float act_apply(float x, int act) {
    switch (act) {  // the order of detail::Act
        case 0: return x;
        case 1: return 0.5f * x * (1.0f + erf_(x * 0.70710678118654752f));
        case 2: return 0.5f * x * (1.0f + tanh_(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case 3: return x / (1.0f + __expf(-x));
        case 4: return tanh_(x);
        case 5: return x > 0.0f ? x : 0.0f;
        case 6: return 1.0f / (1.0f + __expf(-x));
    }
    return x;
}

}  // namespace

__device__ cufftReal ssm_os_load(void*, unsigned long long offset, void* info, void*) {
    const auto& c = *static_cast<const FftCallbackInfo*>(info);
    unsigned long long row;
    unsigned i;
    split(offset, c.by_ld, row, i);
    unsigned long long h, s;
    split_row(row, c.by_S, h, s);
    const unsigned long long q = s * c.hop + i;  // position in history ++ x
    float v = 0.0f;
    if (q < c.hl) v = c.hist[h * c.hl + q];
    else if (q - c.hl < c.T) v = c.x[h * c.xs + (q - c.hl)];
    if (q >= c.T && q < c.hl + c.T) c.hist_out[h * c.hl + (q - c.T)] = v;  // may be written twice, always the same value
    return v;
}

__device__ void ssm_os_multiply(void* out, unsigned long long offset, cufftComplex v, void* info, void*) {
    const auto& c = *static_cast<const FftCallbackInfo*>(info);
    unsigned long long row;
    unsigned k;
    split(offset, c.by_bins, row, k);
    unsigned long long h, s;
    split_row(row, c.by_S, h, s);
    const float2 b = reinterpret_cast<const float2*>(c.kf)[h * c.bins + k];
    static_cast<cufftComplex*>(out)[offset] = make_float2(v.x * b.x - v.y * b.y, v.x * b.y + v.y * b.x);
}

__device__ void ssm_os_scatter(void*, unsigned long long offset, cufftReal v, void* info, void*) {
    const auto& c = *static_cast<const FftCallbackInfo*>(info);
    unsigned long long row;
    unsigned i;
    split(offset, c.by_ld, row, i);
    if (i < c.hl) return;
    unsigned long long h, s;
    split_row(row, c.by_S, h, s);
    const unsigned long long j = i - c.hl;  // output j of this window
    if (j >= c.hop) return;                 // (rows are M + 2 long: the padding is not an output)
    const unsigned long long t = s * c.hop + j;
    if (t < c.T) c.y[h * c.ys + t] = act_apply(v, c.act);
}
