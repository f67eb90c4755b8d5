#pragma once
// Launchers of the selective families' element-wise kernels (mamba_ops.cu): what ssm::cuda::Batch's Mamba and
// Mamba-2 layers need around the scans and the cuBLAS projections. Device pointers, frame-major rows, default stream.
#include <cstddef>

namespace ssm::cuda::detail {

/** out[r] = in[r] / sqrt(mean(in[r]²) + eps) (· weight when not null), rows of `w`; in place allowed. */
void rmsnorm(const float* in, float* out, std::size_t rows, std::size_t w, const float* weight, float eps);
/** Mamba's causal depthwise conv1d and SiLU over `rows` frames of C channels (`in` rows `ld_in` floats apart, `out`
 * contiguous): out[t][c] = silu(bias[c] + Σ_k wt[k][c]·x[t + k − (K−1)][c]), the K−1 rows before the first frame from
 * `window` ([K−1][C], oldest first), which is then advanced to the last K−1 inputs. `bias` may be null. */
void causal_conv_silu(const float* in, std::size_t ld_in, std::size_t rows, std::size_t C, std::size_t K, const float* wt,
                      const float* bias, float* window, float* out);
/** dst[t][i] = src[t·ld + i] for t < rows, i < cols. */
void copy_cols(const float* src, std::size_t ld, std::size_t rows, std::size_t cols, float* dst);
/** Mamba-2's Δ: dt[t][h] = clamp(softplus(src[t·ld + h] + bias[h]), lo, hi), softplus as PyTorch (threshold 20). */
void dt_softplus(const float* src, std::size_t ld, std::size_t rows, std::size_t H, const float* bias, float lo, float hi, float* dt);
/** Mamba-2's output gate with its RMSNorm per group of `gs` channels over rows of E (z rows `ld_z` floats apart):
 * mode 0 y·silu(z); 1 norm(y·silu(z))·w; 2 norm(y)·w·silu(z). In place on y. */
void gated_rmsnorm(float* y, const float* z, std::size_t ld_z, std::size_t rows, std::size_t E, std::size_t gs, const float* w,
                   float eps, int mode);

}  // namespace ssm::cuda::detail
