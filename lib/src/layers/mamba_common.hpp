#pragma once
// Pieces shared by the selective-SSM families (mamba.cpp, mamba2.cpp, mamba_stack.cpp): the projections as Eigen
// matrix products over Maps of the caller's rows, the causal depthwise convolution with its carried window, softplus
// as PyTorch computes it, RMS normalisation, and the factories the registry maps to.
//
// Eigen's GEMM needs packing buffers. Below this size it takes them from the stack (alloca) instead of the heap, so
// a block's projections stay allocation-free inside Stream::process (tests/test_mamba_realtime.cpp counts). Eigen
// sizes them from the cache sizes: about kc·mc floats (mc chosen to fit L2) plus kc·min(frames, nc), kc ≤ 320, so a
// process call uses in the order of 1–2 MB of stack for large layers: a real-time thread needs a stack of a few MB
// (Linux's default 8 MB is plenty). No other translation unit of the library uses Eigen's float GEMM, so the limit
// set here is the one its instantiations see.
#ifndef EIGEN_STACK_ALLOCATION_LIMIT
#define EIGEN_STACK_ALLOCATION_LIMIT (4 * 1024 * 1024)
#endif
// GCC 12 reports a false "may be used uninitialized" inside Eigen's AVX-512 transpose; the location is Eigen's.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#pragma GCC diagnostic pop
#include <cmath>
#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>

#include "layers/layer.hpp"
#include "ops/math.hpp"

namespace ssm::detail {

std::unique_ptr<Layer> make_mamba(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_mamba2(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_rmsnorm(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_embedding(const nlohmann::json& c, Params& p, std::size_t in_width);

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRows = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
using Rows = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;

/** out[t, :] = in[t, :] · Wᵀ + b for t < frames: a PyTorch nn.Linear with W [n, k] row-major. Rows are `in_stride`
 * and `out_stride` floats apart (a column slice of a wider row). `b` may be null. */
inline void project(const float* in, std::size_t in_stride, std::size_t frames, std::size_t k, const float* w,
                    const float* b, std::size_t n, float* out, std::size_t out_stride) noexcept {
    if (frames == 0) return;
    const auto f = static_cast<Eigen::Index>(frames), kk = static_cast<Eigen::Index>(k), nn = static_cast<Eigen::Index>(n);
    ConstRows x(in, f, kk, Eigen::OuterStride<>(static_cast<Eigen::Index>(in_stride)));
    ConstRows wm(w, nn, kk, Eigen::OuterStride<>(kk));
    Rows y(out, f, nn, Eigen::OuterStride<>(static_cast<Eigen::Index>(out_stride)));
    y.noalias() = x * wm.transpose();
    if (b != nullptr) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, nn);
}

/** As above over a checkpoint's matrix as stored (float32, or bfloat16 read as such: a token step reads half the bytes). */
inline void project(const float* in, std::size_t in_stride, std::size_t frames, std::size_t k, const Weights& w,
                    const float* b, std::size_t n, float* out, std::size_t out_stride) noexcept {
    if (w.is_bf16())
        project_bf16(in, in_stride, frames, k, w.bf16.data(), b, n, out, out_stride);
    else
        project(in, in_stride, frames, k, w.f32.data(), b, n, out, out_stride);
}

/** y = x / sqrt(mean(x²) + eps), optionally × weight: the RMS norms of Mamba, Mamba-2 and FalconMamba. */
inline void rms_normalize(float* x, std::size_t w, float eps, const float* weight) noexcept {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (std::size_t i = 0; i < w; ++i) ss += x[i] * x[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(w) + eps);
    if (weight != nullptr) {
#pragma omp simd
        for (std::size_t i = 0; i < w; ++i) x[i] = weight[i] * (x[i] * inv);
    } else {
#pragma omp simd
        for (std::size_t i = 0; i < w; ++i) x[i] = x[i] * inv;
    }
}

/** The causal depthwise convolution of Mamba's conv1d (kernel K, left padding K−1) followed by SiLU, over channels
 * [c0, c1) of `frames` rows. `src` rows are `src_stride` apart; `window` holds the previous K−1 input rows ([K−1][C],
 * oldest first) and is advanced. `wt` is the kernel transposed to [K][C]; `bias` may be null. Each output is summed in
 * registers and written once (a pass per tap over the rows was bound by its loads and stores). */
inline void causal_conv_silu(const float* src, std::size_t src_stride, std::size_t frames, std::size_t C,
                             std::size_t K, const float* wt, const float* bias, float* window, float* dst,
                             std::size_t dst_stride, std::size_t c0, std::size_t c1) noexcept {
    constexpr std::size_t kMaxK = 16;  // the factories reject longer kernels
    const std::size_t h = K - 1;
    for (std::size_t t = 0; t < frames; ++t) {
        const float* row[kMaxK];  // tap k reads the input at t + k − h: from the window before the first frame
        for (std::size_t k = 0; k < K; ++k)
            row[k] = t + k < h ? window + (t + k) * C : src + (t + k - h) * src_stride;
        float* y = dst + t * dst_stride;
        if (K == 4) {
            const float *r0 = row[0], *r1 = row[1], *r2 = row[2], *r3 = row[3];
            const float *w0 = wt, *w1 = wt + C, *w2 = wt + 2 * C, *w3 = wt + 3 * C;
#pragma omp simd
            for (std::size_t c = c0; c < c1; ++c) {
                const float a = (bias ? bias[c] : 0.0f) + w0[c] * r0[c] + w1[c] * r1[c] + w2[c] * r2[c] + w3[c] * r3[c];
                y[c] = silu(a);
            }
            continue;
        }
#pragma omp simd
        for (std::size_t c = c0; c < c1; ++c) {
            float a = bias ? bias[c] : 0.0f;
            for (std::size_t k = 0; k < K; ++k) a += wt[k * C + c] * row[k][c];
            y[c] = silu(a);
        }
    }
    // The last h input rows become the window (older window rows kept in front when the call is shorter than h).
    const std::size_t keep = frames < h ? h - frames : 0;
    for (std::size_t j = 0; j < keep; ++j)
        for (std::size_t c = c0; c < c1; ++c) window[j * C + c] = window[(j + frames) * C + c];
    for (std::size_t j = keep; j < h; ++j) {
        const float* r = src + (frames - h + j) * src_stride;
        for (std::size_t c = c0; c < c1; ++c) window[j * C + c] = r[c];
    }
}

/** Rows [r0, r1) of `n` split into pieces of at least `grain` for the pool. */
inline std::size_t pieces_of(std::size_t n, std::size_t grain) { return n == 0 ? 0 : (n + grain - 1) / grain; }


}  // namespace ssm::detail
