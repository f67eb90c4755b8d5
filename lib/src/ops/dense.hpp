#pragma once
// Dense building blocks over row-major blocks of frames. Each output row is computed in the same order whatever
// the number of rows, so a block of 64 gives bit-identical rows to 64 blocks of 1.
#include <cstddef>

namespace ssm::detail {

/** out[t, :] = bias + Σ_i in[t, i] · wt[i, :] for t < frames; wt is the weight transposed ([in][out]). */
void dense_forward(const float* in, float* out, std::size_t frames, std::size_t in_w, std::size_t out_w,
                   const float* wt, const float* bias) noexcept;

/** The S4-family output: a 1×1 convolution H → 2H (wt [H][2H]) then GLU, out[t] = a ⊙ σ(b) (H wide). `z` is
 * scratch of frames × 2H floats. */
void dense_glu(const float* in, float* out, std::size_t frames, std::size_t H, const float* wt, const float* bias,
               float* z) noexcept;

/** PyTorch LayerNorm over each row of width w. */
void layernorm_forward(const float* in, float* out, std::size_t frames, std::size_t w, const float* gamma,
                       const float* beta, float eps) noexcept;

}  // namespace ssm::detail
