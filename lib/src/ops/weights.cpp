#include "ops/weights.hpp"

#include <algorithm>
#include <bit>

namespace ssm::detail {

namespace {
inline float widen(std::uint16_t h) noexcept { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

// One dot product, vectorised by the compiler (zero-extend, shift, FMA). On a 2-core Zen 4 this streams a 50k × 768
// BF16 matrix at 17 GB/s, about the machine's copy rate, against 22 GB/s of float32 bytes for the same matrix as
// float32: 1.6× fewer seconds per token.
inline float dot(const std::uint16_t* w, const float* x, std::size_t k) noexcept {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (std::size_t i = 0; i < k; ++i) s += widen(w[i]) * x[i];
    return s;
}
}  // namespace

void Weights::row(std::size_t r, float* dst) const noexcept {
    if (is_bf16()) {
        const std::uint16_t* src = bf16.data() + r * cols;
#pragma omp simd
        for (std::size_t i = 0; i < cols; ++i) dst[i] = widen(src[i]);
    } else {
        std::copy(f32.begin() + static_cast<std::ptrdiff_t>(r * cols), f32.begin() + static_cast<std::ptrdiff_t>((r + 1) * cols), dst);
    }
}

void project_bf16(const float* in, std::size_t in_stride, std::size_t frames, std::size_t k, const std::uint16_t* w,
                  const float* b, std::size_t n, float* out, std::size_t out_stride) noexcept {
    if (frames == 0 || n == 0) return;
    // Rows of W in tiles of ~128 kB, so that with several frames a tile is read from memory once and from L2 after.
    const std::size_t tile = std::max<std::size_t>(1, (128u * 1024u) / (2 * std::max<std::size_t>(k, 1)));
    for (std::size_t r0 = 0; r0 < n; r0 += tile) {
        const std::size_t r1 = std::min(n, r0 + tile);
        for (std::size_t t = 0; t < frames; ++t) {
            const float* x = in + t * in_stride;
            float* y = out + t * out_stride;
            for (std::size_t r = r0; r < r1; ++r) y[r] = dot(w + r * k, x, k) + (b != nullptr ? b[r] : 0.0f);
        }
    }
}

}  // namespace ssm::detail
