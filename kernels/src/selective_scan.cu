// Mamba's selective scan (S6) on the GPU, by a chunked scan in three passes over time chunks:
//   1. every (sequence, channel, chunk) runs its chunk from a zero state: the chunk's own final state and ΣΔ;
//   2. every (sequence, channel, state index) walks the chunks in order: the state entering each chunk is
//      exp(A·ΣΔ_prev)·(state entering the previous chunk) + (that chunk's own final state) — exact, since the decay
//      of a chunk is exp(A·ΣΔ) for a diagonal A;
//   3. every (sequence, channel, chunk) reruns its chunk from the true entering state and writes y.
// Discretisation (softplus, exp(Δ·A), Δ·B·u) is fused into both passes; the per-step state lives in registers and is
// never written to memory (only one state per chunk edge is, a few MB). Consecutive threads are consecutive channels,
// so u, Δ, z and y accesses are coalesced; B_t and C_t are the same for every channel (broadcast from L1).
#include <algorithm>
#include <string>

#include "common.hpp"
#include "ssmstream/cuda.hpp"

namespace ssm::cuda {

namespace {

__device__ __forceinline__ float softplus_(float x) { return x > 20.0f ? x : log1pf(__expf(x)); }

template <int N>
__global__ void chunk_states_k(SelectiveScanArgs a, std::size_t chunk, std::size_t nchunks, float* hloc, float* dsum) {
    const std::size_t d = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, c = blockIdx.y, b = blockIdx.z;
    if (d >= a.dim) return;
    const int ns = static_cast<int>(a.dstate);
    float A[N], h[N];
#pragma unroll
    for (int n = 0; n < N; ++n) {
        A[n] = n < ns ? a.A[d * a.dstate + n] * 1.4426950408889634f : 0.0f;  // exp(x) = exp2(x·log2 e)
        h[n] = 0.0f;
    }
    const float bias = a.delta_bias ? a.delta_bias[d] : 0.0f;
    const std::size_t t0 = c * chunk, t1 = std::min(a.length, t0 + chunk);
    float sum = 0.0f;
    for (std::size_t t = t0; t < t1; ++t) {
        const std::size_t i = (b * a.length + t) * a.dim + d;
        float dt = a.delta[i] + bias;
        if (a.delta_softplus) dt = softplus_(dt);
        const float du = dt * a.u[i];
        sum += dt;
        const float* Bt = a.B + (b * a.length + t) * a.dstate;
#pragma unroll
        for (int n = 0; n < N; ++n)
            if (n < ns) h[n] = exp2f(dt * A[n]) * h[n] + du * Bt[n];
    }
    float* out = hloc + ((b * nchunks + c) * a.dim + d) * a.dstate;
#pragma unroll
    for (int n = 0; n < N; ++n)
        if (n < ns) out[n] = h[n];
    dsum[(b * nchunks + c) * a.dim + d] = sum;
}

// In place: hloc[c] becomes the state entering chunk c; the final state goes to a.state.
__global__ void combine_k(SelectiveScanArgs a, std::size_t nchunks, float* hloc, const float* dsum) {
    const std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, b = blockIdx.y;
    if (j >= a.dim * a.dstate) return;
    const std::size_t d = j / a.dstate;
    const float A = a.A[j];
    float s = a.state ? a.state[b * a.dim * a.dstate + j] : 0.0f;
    for (std::size_t c = 0; c < nchunks; ++c) {
        float* p = hloc + (b * nchunks + c) * a.dim * a.dstate + j;
        const float own = *p;
        *p = s;
        s = __expf(A * dsum[(b * nchunks + c) * a.dim + d]) * s + own;
    }
    if (a.state) a.state[b * a.dim * a.dstate + j] = s;
}

template <int N>
__global__ void chunk_outputs_k(SelectiveScanArgs a, std::size_t chunk, std::size_t nchunks, const float* hin) {
    const std::size_t d = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, c = blockIdx.y, b = blockIdx.z;
    if (d >= a.dim) return;
    const int ns = static_cast<int>(a.dstate);
    float A[N], h[N];
    const float* h0 = hin + ((b * nchunks + c) * a.dim + d) * a.dstate;
#pragma unroll
    for (int n = 0; n < N; ++n) {
        A[n] = n < ns ? a.A[d * a.dstate + n] * 1.4426950408889634f : 0.0f;
        h[n] = n < ns ? h0[n] : 0.0f;
    }
    const float bias = a.delta_bias ? a.delta_bias[d] : 0.0f, Dd = a.D ? a.D[d] : 0.0f;
    const std::size_t t0 = c * chunk, t1 = std::min(a.length, t0 + chunk);
    for (std::size_t t = t0; t < t1; ++t) {
        const std::size_t i = (b * a.length + t) * a.dim + d;
        float dt = a.delta[i] + bias;
        if (a.delta_softplus) dt = softplus_(dt);
        const float u = a.u[i], du = dt * u;
        const float* Bt = a.B + (b * a.length + t) * a.dstate;
        const float* Ct = a.C + (b * a.length + t) * a.dstate;
        float y = 0.0f;
#pragma unroll
        for (int n = 0; n < N; ++n)
            if (n < ns) {
                h[n] = exp2f(dt * A[n]) * h[n] + du * Bt[n];
                y += h[n] * Ct[n];
            }
        y += Dd * u;
        if (a.z) {
            const float z = a.z[i];
            y *= z / (1.0f + __expf(-z));
        }
        a.y[i] = y;
    }
}

template <int N>
void launch(const SelectiveScanArgs& a) {
    int sms = 132;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    // Enough (channel, chunk) threads to fill the chip several times over, chunks no shorter than 32 steps.
    const std::size_t want = static_cast<std::size_t>(sms) * 2048 * 4;
    const std::size_t lanes = a.batch * a.dim;
    std::size_t nchunks = std::clamp<std::size_t>((want + lanes - 1) / lanes, 1, std::max<std::size_t>(1, a.length / 32));
    nchunks = std::min<std::size_t>(nchunks, 65535);
    const std::size_t chunk = (a.length + nchunks - 1) / nchunks;
    nchunks = (a.length + chunk - 1) / chunk;
    // Chunk-edge states, kept between calls (grown when a call needs more): no allocation per call. One caller at a
    // time, as for a Batch.
    static detail::DeviceArray<float> hloc, dsum;
    if (hloc.size() < a.batch * nchunks * a.dim * a.dstate) hloc = detail::DeviceArray<float>(a.batch * nchunks * a.dim * a.dstate);
    if (dsum.size() < a.batch * nchunks * a.dim) dsum = detail::DeviceArray<float>(a.batch * nchunks * a.dim);
    constexpr unsigned threads = 128;
    const dim3 grid(static_cast<unsigned>((a.dim + threads - 1) / threads), static_cast<unsigned>(nchunks), static_cast<unsigned>(a.batch));
    chunk_states_k<N><<<grid, threads>>>(a, chunk, nchunks, hloc.get(), dsum.get());
    SSM_CUDA_LAUNCHED("selective_scan: chunk states");
    const std::size_t cells = a.dim * a.dstate;
    combine_k<<<dim3(static_cast<unsigned>((cells + 255) / 256), static_cast<unsigned>(a.batch)), 256>>>(a, nchunks, hloc.get(), dsum.get());
    SSM_CUDA_LAUNCHED("selective_scan: combine");
    chunk_outputs_k<N><<<grid, threads>>>(a, chunk, nchunks, hloc.get());
    SSM_CUDA_LAUNCHED("selective_scan: outputs");
}

}  // namespace

void selective_scan(const SelectiveScanArgs& a) {
    if (!a.u || !a.delta || !a.A || !a.B || !a.C || !a.y) throw UsageError("selective_scan: u, delta, A, B, C and y are required");
    if (a.length == 0 || a.dim == 0 || a.batch == 0) return;
    if (a.batch > 65535) throw UsageError("selective_scan: at most 65535 sequences per launch");
    if (a.dstate <= 4) launch<4>(a);
    else if (a.dstate <= 8) launch<8>(a);
    else if (a.dstate <= 16) launch<16>(a);
    else if (a.dstate <= 32) launch<32>(a);
    else if (a.dstate <= 64) launch<64>(a);
    else throw UsageError("selective_scan: dstate " + std::to_string(a.dstate) + " > 64 is not supported");
}

}  // namespace ssm::cuda
