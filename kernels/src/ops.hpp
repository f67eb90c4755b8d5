#pragma once
// Launchers of the element-wise and layout kernels (ops.cu), callable from host code compiled by the host compiler.
// All run on the default stream; arrays are device pointers; rows are frames, row-major (frame-major) unless said.
#include <cstddef>

namespace ssm::cuda::detail {

enum class Act { none, gelu, gelu_tanh, silu, tanh, relu, sigmoid };

/** y[r][i] += bias[i]. */
void bias_add(float* y, const float* bias, std::size_t rows, std::size_t w);
/** LayerNorm over each row of `w` (biased variance, eps inside the root), as the CPU path. */
void layernorm(const float* in, float* out, std::size_t rows, std::size_t w, const float* gamma, const float* beta, float eps);
/** out[r][i] = in[r][i]·a[i] + c[i] (folded BatchNorm). */
void affine(const float* in, float* out, std::size_t rows, std::size_t w, const float* a, const float* c);
void activation(const float* in, float* out, std::size_t n, Act act);
/** out[r][i] = (z[r][i] + b[i]) · σ(z[r][h+i] + b[h+i]); z rows of 2h; `bias` may be null. */
void glu(const float* z, float* out, std::size_t rows, std::size_t h, const float* bias);
/** out[i] = a[i] + b[i]. */
void add(const float* a, const float* b, float* out, std::size_t n);
/** Replaces NaN/±Inf by 0 in place and adds their number to *count (a device counter). */
void sanitize(float* x, std::size_t n, unsigned long long* count);
/** dst[c][t] = src[t][c] for t < rows, c < cols; dst rows `ld` floats apart. */
void to_channel_major(const float* src, std::size_t rows, std::size_t cols, float* dst, std::size_t ld);
/** dst[t][c] = act(src[c][t]) for t < rows, c < cols; src rows `ld` floats apart. */
void to_frame_major(const float* src, std::size_t ld, std::size_t rows, std::size_t cols, float* dst, Act act);

}  // namespace ssm::cuda::detail
