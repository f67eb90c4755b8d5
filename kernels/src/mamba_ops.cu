// Element-wise kernels of the Mamba and Mamba-2 layers of ssm::cuda::Batch (the scans are selective_scan.cu and
// ssd.cu). Memory-bound: one read and one write of each array, consecutive threads on consecutive channels.
#include <cmath>

#include "common.hpp"
#include "mamba_ops.hpp"

namespace ssm::cuda::detail {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float silu_(float x) { return x / (1.0f + __expf(-x)); }
__device__ __forceinline__ float softplus_(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// A warp per row (grid-stride over rows: a launch has at most 65536 blocks): sum of squares by shuffles, then the
// scaled row.
__global__ void rmsnorm_k(const float* in, float* out, std::size_t rows, std::size_t w, const float* weight, float eps) {
    const unsigned lane = threadIdx.x % 32;
    const std::size_t warps = std::size_t{gridDim.x} * blockDim.x / 32;
    for (std::size_t r = (blockIdx.x * std::size_t{blockDim.x} + threadIdx.x) / 32; r < rows; r += warps) {
        const float* x = in + r * w;
        float s = 0.0f;
        for (std::size_t i = lane; i < w; i += 32) s += x[i] * x[i];
        for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
        const float inv = rsqrtf(s / static_cast<float>(w) + eps);
        float* y = out + r * w;
        for (std::size_t i = lane; i < w; i += 32) y[i] = weight ? weight[i] * (x[i] * inv) : x[i] * inv;
    }
}

__global__ void conv_k(const float* in, std::size_t ld, std::size_t rows, std::size_t C, std::size_t K, const float* wt,
                       const float* bias, const float* window, float* out) {
    const std::size_t n = rows * C, h = K - 1;
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
        const std::size_t t = i / C, c = i % C;
        float a = bias ? bias[c] : 0.0f;
        for (std::size_t k = 0; k < K; ++k) {
            const std::size_t j = t + k;  // input index + h
            const float x = j < h ? window[j * C + c] : in[(j - h) * ld + c];
            a = fmaf(wt[k * C + c], x, a);
        }
        out[i] = silu_(a);
    }
}

// One thread per channel walks the window forward (it reads rows ahead of the ones it writes).
__global__ void window_k(const float* in, std::size_t ld, std::size_t rows, std::size_t C, std::size_t h, float* window) {
    const std::size_t c = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
    if (c >= C) return;
    for (std::size_t j = 0; j < h; ++j) {
        const std::size_t src = rows + j;  // index into [window | inputs]
        window[j * C + c] = src < h ? window[src * C + c] : in[(src - h) * ld + c];
    }
}

__global__ void copy_cols_k(const float* src, std::size_t ld, std::size_t rows, std::size_t cols, float* dst) {
    const std::size_t n = rows * cols;
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        dst[i] = src[(i / cols) * ld + i % cols];
}

__global__ void dt_k(const float* src, std::size_t ld, std::size_t rows, std::size_t H, const float* bias, float lo, float hi, float* dt) {
    const std::size_t n = rows * H;
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
        const std::size_t h = i % H;
        dt[i] = fminf(fmaxf(softplus_(src[(i / H) * ld + h] + bias[h]), lo), hi);
    }
}

// A warp per (row, group), grid-stride.
__global__ void gated_k(float* y, const float* z, std::size_t ld_z, std::size_t rows, std::size_t E, std::size_t gs,
                        const float* w, float eps, int mode) {
    const std::size_t groups = E / gs, warps = std::size_t{gridDim.x} * blockDim.x / 32;
    const unsigned lane = threadIdx.x % 32;
    for (std::size_t k = (blockIdx.x * std::size_t{blockDim.x} + threadIdx.x) / 32; k < rows * groups; k += warps) {
        const std::size_t r = k / groups, g0 = (k % groups) * gs;
        float* yr = y + r * E + g0;
        const float* zr = z + r * ld_z + g0;
        if (mode == 0) {
            for (std::size_t i = lane; i < gs; i += 32) yr[i] *= silu_(zr[i]);
            continue;
        }
        float s = 0.0f;
        for (std::size_t i = lane; i < gs; i += 32) {
            const float v = mode == 1 ? yr[i] * silu_(zr[i]) : yr[i];
            s += v * v;
        }
        for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
        const float inv = rsqrtf(s / static_cast<float>(gs) + eps);
        for (std::size_t i = lane; i < gs; i += 32) {
            const float g = silu_(zr[i]), wi = w ? w[g0 + i] : 1.0f;
            yr[i] = mode == 1 ? wi * (yr[i] * g * inv) : wi * (yr[i] * inv) * g;
        }
    }
}

}  // namespace

void rmsnorm(const float* in, float* out, std::size_t rows, std::size_t w, const float* weight, float eps) {
    if (rows == 0) return;
    rmsnorm_k<<<grid_stride_blocks(rows * 32), kThreads>>>(in, out, rows, w, weight, eps);
    SSM_CUDA_LAUNCHED("rmsnorm");
}

void causal_conv_silu(const float* in, std::size_t ld_in, std::size_t rows, std::size_t C, std::size_t K, const float* wt,
                      const float* bias, float* window, float* out) {
    if (rows * C == 0) return;
    conv_k<<<grid_stride_blocks(rows * C), kThreads>>>(in, ld_in, rows, C, K, wt, bias, window, out);
    SSM_CUDA_LAUNCHED("causal_conv_silu");
    if (K > 1) {
        window_k<<<grid_stride_blocks(C), kThreads>>>(in, ld_in, rows, C, K - 1, window);
        SSM_CUDA_LAUNCHED("causal_conv_silu: window");
    }
}

void copy_cols(const float* src, std::size_t ld, std::size_t rows, std::size_t cols, float* dst) {
    if (rows * cols == 0) return;
    copy_cols_k<<<grid_stride_blocks(rows * cols), kThreads>>>(src, ld, rows, cols, dst);
    SSM_CUDA_LAUNCHED("copy_cols");
}

void dt_softplus(const float* src, std::size_t ld, std::size_t rows, std::size_t H, const float* bias, float lo, float hi, float* dt) {
    if (rows * H == 0) return;
    dt_k<<<grid_stride_blocks(rows * H), kThreads>>>(src, ld, rows, H, bias, lo, hi, dt);
    SSM_CUDA_LAUNCHED("dt_softplus");
}

void gated_rmsnorm(float* y, const float* z, std::size_t ld_z, std::size_t rows, std::size_t E, std::size_t gs, const float* w,
                   float eps, int mode) {
    if (rows * E == 0) return;
    gated_k<<<grid_stride_blocks(rows * (E / gs) * 32), kThreads>>>(y, z, ld_z, rows, E, gs, w, eps, mode);
    SSM_CUDA_LAUNCHED("gated_rmsnorm");
}

}  // namespace ssm::cuda::detail
