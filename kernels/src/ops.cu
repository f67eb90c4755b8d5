// Element-wise and layout kernels of the batch engine. All memory-bound: each reads its inputs once and writes its
// outputs once, with consecutive threads on consecutive addresses.
#include <cmath>

#include "common.hpp"
#include "ops.hpp"

namespace ssm::cuda::detail {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::size_t n, std::size_t per_block = kThreads) {
    const std::size_t b = (n + per_block - 1) / per_block;
    return static_cast<unsigned>(b < 1 ? 1 : (b > (1u << 30) ? (1u << 30) : b));
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + __expf(-x)); }

__device__ __forceinline__ float apply(float x, Act act) {
    switch (act) {
        case Act::none: return x;
        case Act::gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case Act::gelu_tanh: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case Act::silu: return x * sigmoidf_(x);
        case Act::tanh: return tanhf(x);
        case Act::relu: return x > 0.0f ? x : 0.0f;
        case Act::sigmoid: return sigmoidf_(x);
    }
    return x;
}

// Grid-stride loops: a launch of bounded size covers any n.
__global__ void bias_add_k(float* y, const float* bias, std::size_t n, std::size_t w) {
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        y[i] += bias[i % w];
}

__global__ void affine_k(const float* in, float* out, std::size_t n, std::size_t w, const float* a, const float* c) {
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        out[i] = in[i] * a[i % w] + c[i % w];
}

__global__ void activation_k(const float* in, float* out, std::size_t n, Act act) {
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        out[i] = apply(in[i], act);
}

__global__ void glu_k(const float* z, float* out, std::size_t rows, std::size_t h, const float* bias) {
    const std::size_t n = rows * h;
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
        const std::size_t r = i / h, c = i % h;
        float a = z[r * 2 * h + c], g = z[r * 2 * h + h + c];
        if (bias) {
            a += bias[c];
            g += bias[h + c];
        }
        out[i] = a * sigmoidf_(g);
    }
}

__global__ void add_k(const float* a, const float* b, float* out, std::size_t n) {
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void sanitize_k(float* x, std::size_t n, unsigned long long* count) {
    unsigned long long bad = 0;
    for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
        if (!isfinite(x[i])) {
            x[i] = 0.0f;
            ++bad;
        }
    if (bad) atomicAdd(count, bad);
}

// One warp per row; the row is read twice (mean, then variance and output) and stays in L1 between.
__global__ void layernorm_k(const float* in, float* out, std::size_t rows, std::size_t w, const float* gamma,
                            const float* beta, float eps) {
    const std::size_t warp = (blockIdx.x * std::size_t{blockDim.x} + threadIdx.x) / 32;
    const unsigned lane = threadIdx.x % 32;
    if (warp >= rows) return;
    const float* x = in + warp * w;
    float s = 0.0f;
    for (std::size_t i = lane; i < w; i += 32) s += x[i];
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float mean = s / static_cast<float>(w);
    float v = 0.0f;
    for (std::size_t i = lane; i < w; i += 32) v += (x[i] - mean) * (x[i] - mean);
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    const float inv = rsqrtf(v / static_cast<float>(w) + eps);
    float* y = out + warp * w;
    for (std::size_t i = lane; i < w; i += 32) y[i] = (x[i] - mean) * inv * gamma[i] + beta[i];
}

// 32×32 tiles through shared memory (padded against bank conflicts): reads and writes both coalesced.
constexpr int kTile = 32, kRowsPer = 8;

__global__ void to_channel_major_k(const float* src, std::size_t rows, std::size_t cols, float* dst, std::size_t ld) {
    __shared__ float tile[kTile][kTile + 1];
    const std::size_t c0 = std::size_t{blockIdx.y} * kTile, t0 = std::size_t{blockIdx.x} * kTile;
    for (int j = threadIdx.y; j < kTile; j += kRowsPer) {
        const std::size_t t = t0 + j, c = c0 + threadIdx.x;
        if (t < rows && c < cols) tile[j][threadIdx.x] = src[t * cols + c];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < kTile; j += kRowsPer) {
        const std::size_t c = c0 + j, t = t0 + threadIdx.x;
        if (t < rows && c < cols) dst[c * ld + t] = tile[threadIdx.x][j];
    }
}

__global__ void to_frame_major_k(const float* src, std::size_t ld, std::size_t rows, std::size_t cols, float* dst, Act act) {
    __shared__ float tile[kTile][kTile + 1];
    const std::size_t c0 = std::size_t{blockIdx.y} * kTile, t0 = std::size_t{blockIdx.x} * kTile;
    for (int j = threadIdx.y; j < kTile; j += kRowsPer) {
        const std::size_t c = c0 + j, t = t0 + threadIdx.x;
        if (t < rows && c < cols) tile[j][threadIdx.x] = src[c * ld + t];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < kTile; j += kRowsPer) {
        const std::size_t t = t0 + j, c = c0 + threadIdx.x;
        if (t < rows && c < cols) dst[t * cols + c] = apply(tile[threadIdx.x][j], act);
    }
}

}  // namespace

void bias_add(float* y, const float* bias, std::size_t rows, std::size_t w) {
    if (rows * w == 0) return;
    bias_add_k<<<grid_stride_blocks(rows * w), kThreads>>>(y, bias, rows * w, w);
    SSM_CUDA_LAUNCHED("bias_add");
}

void layernorm(const float* in, float* out, std::size_t rows, std::size_t w, const float* gamma, const float* beta, float eps) {
    if (rows == 0) return;
    layernorm_k<<<blocks_for(rows * 32), kThreads>>>(in, out, rows, w, gamma, beta, eps);
    SSM_CUDA_LAUNCHED("layernorm");
}

void affine(const float* in, float* out, std::size_t rows, std::size_t w, const float* a, const float* c) {
    if (rows * w == 0) return;
    affine_k<<<grid_stride_blocks(rows * w), kThreads>>>(in, out, rows * w, w, a, c);
    SSM_CUDA_LAUNCHED("affine");
}

void activation(const float* in, float* out, std::size_t n, Act act) {
    if (n == 0) return;
    activation_k<<<grid_stride_blocks(n), kThreads>>>(in, out, n, act);
    SSM_CUDA_LAUNCHED("activation");
}

void glu(const float* z, float* out, std::size_t rows, std::size_t h, const float* bias) {
    if (rows * h == 0) return;
    glu_k<<<grid_stride_blocks(rows * h), kThreads>>>(z, out, rows, h, bias);
    SSM_CUDA_LAUNCHED("glu");
}

void add(const float* a, const float* b, float* out, std::size_t n) {
    if (n == 0) return;
    add_k<<<grid_stride_blocks(n), kThreads>>>(a, b, out, n);
    SSM_CUDA_LAUNCHED("add");
}

void sanitize(float* x, std::size_t n, unsigned long long* count) {
    if (n == 0) return;
    sanitize_k<<<grid_stride_blocks(n), kThreads>>>(x, n, count);
    SSM_CUDA_LAUNCHED("sanitize");
}

void to_channel_major(const float* src, std::size_t rows, std::size_t cols, float* dst, std::size_t ld) {
    if (rows * cols == 0) return;
    const dim3 grid(static_cast<unsigned>((rows + kTile - 1) / kTile), static_cast<unsigned>((cols + kTile - 1) / kTile));
    to_channel_major_k<<<grid, dim3(kTile, kRowsPer)>>>(src, rows, cols, dst, ld);
    SSM_CUDA_LAUNCHED("to_channel_major");
}

void to_frame_major(const float* src, std::size_t ld, std::size_t rows, std::size_t cols, float* dst, Act act) {
    if (rows * cols == 0) return;
    const dim3 grid(static_cast<unsigned>((rows + kTile - 1) / kTile), static_cast<unsigned>((cols + kTile - 1) / kTile));
    to_frame_major_k<<<grid, dim3(kTile, kRowsPer)>>>(src, ld, rows, cols, dst, act);
    SSM_CUDA_LAUNCHED("to_frame_major");
}

}  // namespace ssm::cuda::detail
