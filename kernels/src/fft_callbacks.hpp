#pragma once
// What the cuFFT callbacks of the overlap-save convolution (fft_callbacks.cu) read: one struct in device memory per
// plan, rewritten before each call. Shared by the callbacks (compiled to LTO-IR and linked into cuFFT's kernels at
// plan time) and the host code in fft_conv.cu.
#include <cstddef>

namespace ssm::cuda::detail {

/** n / d for 32-bit n by a multiply and a shift (d fixed per plan): q = (umulhi(n, m) + n) >> s. */
struct FastDiv {
    unsigned d = 1, m = 1, s = 0;
    FastDiv() = default;
    explicit FastDiv(unsigned div) : d(div) {
        while ((1ull << s) < d) ++s;
        m = static_cast<unsigned>(((1ull << 32) * ((1ull << s) - d)) / d + 1);
    }
};

struct FftCallbackInfo {
    const float* x;        // new input, channel-major [H][xs], T samples per channel
    const float* hist;     // the last hl inputs before this call, [H][hl]
    float* hist_out;       // receives the last hl inputs after this call, [H][hl]
    const float* kf;       // kernel spectra / M, complex [H][bins]
    float* y;              // output, channel-major [H][ys]
    unsigned long long xs, ys, hl, T, hop;
    unsigned S;            // windows per channel in this plan
    unsigned ld;           // real row length (M + 2: rows are transformed in place)
    unsigned bins;         // M / 2 + 1
    int act;               // an Act (ops.hpp), as int
    FastDiv by_ld, by_bins, by_S;
};

}  // namespace ssm::cuda::detail
