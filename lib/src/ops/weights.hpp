#pragma once
// A weight matrix as the checkpoint stores it: float32, or bfloat16 kept as bfloat16. A token step of a language
// model reads every weight once, so it runs at memory speed: holding a BF16 checkpoint's matrices as BF16 halves the
// bytes read per token (and the resident memory) against widening them to float32 at load. bfloat16 → float32 is
// exact (the top 16 bits of the float), so a product over BF16 weights differs from one over their float32 copies
// only by the order of the sums.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ssm::detail {

struct Weights {
    std::vector<float> f32;            ///< row-major [rows][cols] (PyTorch nn.Linear layout), or empty
    std::vector<std::uint16_t> bf16;   ///< the same as bfloat16 bit patterns, or empty
    std::size_t rows = 0, cols = 0;

    bool is_bf16() const noexcept { return !bf16.empty(); }
    std::size_t size() const noexcept { return rows * cols; }
    std::size_t bytes() const noexcept { return f32.size() * sizeof(float) + bf16.size() * sizeof(std::uint16_t); }
    /** Row r widened to float32 into `dst` (cols floats). */
    void row(std::size_t r, float* dst) const noexcept;
};

/** out[t, :] = in[t, :] · Wᵀ + b for t < frames, W bfloat16 [n][k] row-major. Rows of `in`/`out` are `in_stride`/
 * `out_stride` floats apart; `b` may be null. Each output is one dot product in a fixed order, so a row's result
 * does not depend on `frames`. Allocation-free. */
void project_bf16(const float* in, std::size_t in_stride, std::size_t frames, std::size_t k, const std::uint16_t* w,
                  const float* b, std::size_t n, float* out, std::size_t out_stride) noexcept;

}  // namespace ssm::detail
