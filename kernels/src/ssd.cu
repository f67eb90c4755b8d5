// Mamba-2's SSD by the chunked algorithm (Dao & Gu 2024, "Transformers are SSMs", §6), scalar A per head, one B/C
// group. With a_i = Δ_i·A and the inclusive cumulative sum Λ_i = Σ_{k≤i} a_k inside a chunk:
//   1. chunk states:  S_c = Σ_j exp(Λ_last − Λ_j)·Δ_j·x_j ⊗ B_j                      (one block per chunk and head)
//   2. across chunks: S_in[c+1] = exp(Λ_last(c))·S_in[c] + S_c                         (sequential over chunks)
//   3. outputs:       y_i = Σ_{j≤i} exp(Λ_i − Λ_j)·Δ_j·(C_i·B_j)·x_j + exp(Λ_i)·S_in·C_i + D·x_i
// First version: float32 on the CUDA cores, tiles in shared memory, no tensor cores (TF32 would miss the 1e-4 parity).
#include <algorithm>
#include <string>

#include "common.hpp"
#include "ssmstream/cuda.hpp"

namespace ssm::cuda {

namespace {

constexpr int kQ = 64;  // chunk length (fixed: the tiles below are sized for it)

// Λ for the chunk into lam[0..q), Δ into dt_s; returns q (steps in this chunk).
__device__ int load_decay(const SsdArgs& a, std::size_t b, std::size_t hd, std::size_t c, float* lam, float* dt_s) {
    const std::size_t t0 = c * kQ;
    const int q = static_cast<int>(std::min<std::size_t>(kQ, a.length - t0));
    if (threadIdx.x == 0) {
        float s = 0.0f;
        const float A = a.A[hd];
        for (int i = 0; i < q; ++i) {
            const float dt = a.dt[(b * a.length + t0 + i) * a.heads + hd];
            dt_s[i] = dt;
            s += dt * A;
            lam[i] = s;
        }
    }
    __syncthreads();
    return q;
}

// One block per (chunk, head, sequence): S_c[p][n] into states[b][c][hd][p][n], Λ_last into decay[b][c][hd].
__global__ void ssd_states_k(SsdArgs a, std::size_t nchunks, float* states, float* decay) {
    extern __shared__ float sm[];
    const std::size_t c = blockIdx.x, hd = blockIdx.y, b = blockIdx.z;
    const std::size_t P = a.headdim, N = a.dstate;
    float* lam = sm;
    float* dt_s = lam + kQ;
    float* w = dt_s + kQ;          // [Q]: exp(Λ_last − Λ_j)·Δ_j
    float* xs = w + kQ;            // [Q][P]
    float* bs = xs + kQ * P;       // [Q][N]
    const int q = load_decay(a, b, hd, c, lam, dt_s);
    const std::size_t t0 = c * kQ;
    for (int i = threadIdx.x; i < q; i += blockDim.x) w[i] = __expf(lam[q - 1] - lam[i]) * dt_s[i];
    for (std::size_t k = threadIdx.x; k < static_cast<std::size_t>(q) * P; k += blockDim.x)
        xs[k] = a.x[((b * a.length + t0 + k / P) * a.heads + hd) * P + k % P];
    for (std::size_t k = threadIdx.x; k < static_cast<std::size_t>(q) * N; k += blockDim.x)
        bs[k] = a.B[(b * a.length + t0 + k / N) * N + k % N];
    __syncthreads();
    float* out = states + ((b * nchunks + c) * a.heads + hd) * P * N;
    for (std::size_t k = threadIdx.x; k < P * N; k += blockDim.x) {
        const std::size_t p = k / N, n = k % N;
        float s = 0.0f;
        for (int j = 0; j < q; ++j) s += w[j] * xs[j * P + p] * bs[j * N + n];
        out[k] = s;
    }
    if (threadIdx.x == 0) decay[(b * nchunks + c) * a.heads + hd] = lam[q - 1];
}

// In place: states[c] becomes the state entering chunk c; the final state goes to a.state.
__global__ void ssd_combine_k(SsdArgs a, std::size_t nchunks, float* states, const float* decay) {
    const std::size_t PN = a.headdim * a.dstate;
    const std::size_t k = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, hd = blockIdx.y, b = blockIdx.z;
    if (k >= PN) return;
    float s = a.state ? a.state[(b * a.heads + hd) * PN + k] : 0.0f;
    for (std::size_t c = 0; c < nchunks; ++c) {
        float* p = states + ((b * nchunks + c) * a.heads + hd) * PN + k;
        const float own = *p;
        *p = s;
        s = __expf(decay[(b * nchunks + c) * a.heads + hd]) * s + own;
    }
    if (a.state) a.state[(b * a.heads + hd) * PN + k] = s;
}

__global__ void ssd_outputs_k(SsdArgs a, std::size_t nchunks, const float* states) {
    extern __shared__ float sm[];
    const std::size_t c = blockIdx.x, hd = blockIdx.y, b = blockIdx.z;
    const std::size_t P = a.headdim, N = a.dstate;
    float* lam = sm;
    float* dt_s = lam + kQ;
    float* g = dt_s + kQ;          // [Q][Q+1]: masked, decayed C_i·B_j·Δ_j
    float* xs = g + kQ * (kQ + 1); // [Q][P]
    float* bs = xs + kQ * P;       // [Q][N]
    float* cs = bs + kQ * N;       // [Q][N]
    const int q = load_decay(a, b, hd, c, lam, dt_s);
    const std::size_t t0 = c * kQ;
    for (std::size_t k = threadIdx.x; k < static_cast<std::size_t>(q) * P; k += blockDim.x)
        xs[k] = a.x[((b * a.length + t0 + k / P) * a.heads + hd) * P + k % P];
    for (std::size_t k = threadIdx.x; k < static_cast<std::size_t>(q) * N; k += blockDim.x) {
        bs[k] = a.B[(b * a.length + t0 + k / N) * N + k % N];
        cs[k] = a.C[(b * a.length + t0 + k / N) * N + k % N];
    }
    __syncthreads();
    for (int k = threadIdx.x; k < q * q; k += blockDim.x) {
        const int i = k / q, j = k % q;
        float v = 0.0f;
        if (j <= i) {
            for (std::size_t n = 0; n < N; ++n) v += cs[i * N + n] * bs[j * N + n];
            v *= __expf(lam[i] - lam[j]) * dt_s[j];
        }
        g[i * (kQ + 1) + j] = v;
    }
    __syncthreads();
    const float* sin = states + ((b * nchunks + c) * a.heads + hd) * P * N;
    const float Dh = a.D ? a.D[hd] : 0.0f;
    for (std::size_t k = threadIdx.x; k < static_cast<std::size_t>(q) * P; k += blockDim.x) {
        const int i = static_cast<int>(k / P);
        const std::size_t p = k % P;
        float y = 0.0f;
        for (int j = 0; j <= i; ++j) y += g[i * (kQ + 1) + j] * xs[j * P + p];
        float off = 0.0f;
        for (std::size_t n = 0; n < N; ++n) off += sin[p * N + n] * cs[i * N + n];
        y += __expf(lam[i]) * off + Dh * xs[i * P + p];
        a.y[((b * a.length + t0 + i) * a.heads + hd) * P + p] = y;
    }
}

}  // namespace

void ssd_scan(const SsdArgs& a) {
    if (!a.x || !a.dt || !a.A || !a.B || !a.C || !a.y) throw UsageError("ssd_scan: x, dt, A, B, C and y are required");
    if (a.chunk != kQ) throw UsageError("ssd_scan: this version runs chunks of " + std::to_string(kQ) + " steps");
    if (a.length == 0 || a.heads == 0 || a.batch == 0) return;
    if (a.headdim > 128 || a.dstate > 128) throw UsageError("ssd_scan: headdim and dstate must be ≤ 128");
    const std::size_t nchunks = (a.length + kQ - 1) / kQ;
    if (nchunks > (1u << 31) - 1 || a.heads > 65535 || a.batch > 65535) throw UsageError("ssd_scan: too many chunks, heads or sequences");
    const std::size_t P = a.headdim, N = a.dstate;
    static detail::DeviceArray<float> states, decay;  // kept between calls; one caller at a time
    if (states.size() < a.batch * nchunks * a.heads * P * N) states = detail::DeviceArray<float>(a.batch * nchunks * a.heads * P * N);
    if (decay.size() < a.batch * nchunks * a.heads) decay = detail::DeviceArray<float>(a.batch * nchunks * a.heads);
    const dim3 grid(static_cast<unsigned>(nchunks), static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch));
    const std::size_t sm1 = (3 * kQ + kQ * P + kQ * N) * sizeof(float);
    const std::size_t sm3 = (2 * kQ + kQ * (kQ + 1) + kQ * P + 2 * kQ * N) * sizeof(float);
    SSM_CUDA_CHECK(cudaFuncSetAttribute(ssd_states_k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(sm1)));
    SSM_CUDA_CHECK(cudaFuncSetAttribute(ssd_outputs_k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(sm3)));
    ssd_states_k<<<grid, 256, sm1>>>(a, nchunks, states.get(), decay.get());
    SSM_CUDA_LAUNCHED("ssd: chunk states");
    ssd_combine_k<<<dim3(static_cast<unsigned>((P * N + 255) / 256), static_cast<unsigned>(a.heads), static_cast<unsigned>(a.batch)), 256>>>(
        a, nchunks, states.get(), decay.get());
    SSM_CUDA_LAUNCHED("ssd: combine");
    ssd_outputs_k<<<grid, 256, sm3>>>(a, nchunks, states.get());
    SSM_CUDA_LAUNCHED("ssd: outputs");
}

}  // namespace ssm::cuda
