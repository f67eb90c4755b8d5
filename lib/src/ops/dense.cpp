#include "ops/dense.hpp"
#include "ops/math.hpp"

#include <cmath>

namespace ssm::detail {

void dense_forward(const float* in, float* out, std::size_t frames, std::size_t in_w, std::size_t out_w,
                   const float* wt, const float* bias) noexcept {
    // Two rows at a time share each weight row load; the per-row arithmetic order is the same as one row alone.
    std::size_t t = 0;
    for (; t + 2 <= frames; t += 2) {
        float* __restrict o0 = out + t * out_w;
        float* __restrict o1 = o0 + out_w;
        const float* x0 = in + t * in_w;
        const float* x1 = x0 + in_w;
        for (std::size_t o = 0; o < out_w; ++o) o0[o] = o1[o] = bias ? bias[o] : 0.0f;
        for (std::size_t i = 0; i < in_w; ++i) {
            const float a = x0[i], b = x1[i];
            const float* __restrict w = wt + i * out_w;
#pragma omp simd
            for (std::size_t o = 0; o < out_w; ++o) {
                o0[o] += a * w[o];
                o1[o] += b * w[o];
            }
        }
    }
    for (; t < frames; ++t) {
        float* __restrict o0 = out + t * out_w;
        const float* x0 = in + t * in_w;
        for (std::size_t o = 0; o < out_w; ++o) o0[o] = bias ? bias[o] : 0.0f;
        for (std::size_t i = 0; i < in_w; ++i) {
            const float a = x0[i];
            const float* __restrict w = wt + i * out_w;
#pragma omp simd
            for (std::size_t o = 0; o < out_w; ++o) o0[o] += a * w[o];
        }
    }
}

void layernorm_forward(const float* in, float* out, std::size_t frames, std::size_t w, const float* gamma,
                       const float* beta, float eps) noexcept {
    for (std::size_t t = 0; t < frames; ++t) {
        const float* x = in + t * w;
        float* y = out + t * w;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (std::size_t i = 0; i < w; ++i) sum += x[i];
        const float mean = sum / static_cast<float>(w);
        float var = 0.0f;
#pragma omp simd reduction(+ : var)
        for (std::size_t i = 0; i < w; ++i) var += (x[i] - mean) * (x[i] - mean);
        const float inv = 1.0f / std::sqrt(var / static_cast<float>(w) + eps);
#pragma omp simd
        for (std::size_t i = 0; i < w; ++i) y[i] = (x[i] - mean) * inv * gamma[i] + beta[i];
    }
}

void dense_glu(const float* in, float* out, std::size_t frames, std::size_t H, const float* wt, const float* bias,
               float* z) noexcept {
    dense_forward(in, z, frames, H, 2 * H, wt, bias);
    for (std::size_t t = 0; t < frames; ++t) {
        const float* zr = z + t * 2 * H;
        float* o = out + t * H;
#pragma omp simd
        for (std::size_t i = 0; i < H; ++i) o[i] = zr[i] * fast_sigmoid(zr[H + i]);
    }
}

}  // namespace ssm::detail
