// Mamba-2's SSD by the chunked algorithm (Dao & Gu 2024, "Transformers are SSMs", §6), scalar A per head, one B/C
// group. With a_i = Δ_i·A and the inclusive cumulative sum Λ_i = Σ_{k≤i} a_k inside a chunk:
//   1. chunk states:  S_c = Σ_j exp(Λ_last − Λ_j)·Δ_j·x_j ⊗ B_j                      (one block per chunk and head)
//   2. across chunks: S_in[c+1] = exp(Λ_last(c))·S_in[c] + S_c                         (sequential over chunks)
//   3. outputs:       y_i = Σ_{j≤i} exp(Λ_i − Λ_j)·Δ_j·(C_i·B_j)·x_j + exp(Λ_i)·S_in·C_i + D·x_i
// headdim = dstate = 64 (Mamba-2's shapes) runs on the tensor cores: every product of steps 1 and 3 is a 64×64×64
// matrix product in TF32 with the 3-term split (a·b ≈ a_hi·b_hi + a_hi·b_lo + a_lo·b_hi, FP32 accumulation), which
// keeps FP32 accuracy (≈1e-6) where plain TF32 (≈3e-4) would miss the 1e-4 parity. Other shapes run the first
// version: FP32 on the CUDA cores. Step 2 is parallel over groups of chunks (a walk per group, then over groups).
#include <mma.h>

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

// ---- tensor-core path (headdim = dstate = 64) ----
using namespace nvcuda;
constexpr int kLd = kQ + 4;  // padded shared-memory rows (floats): a multiple of 4 for wmma, off the bank period
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragAc = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBc = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

template <class F>
__device__ __forceinline__ void split(F& hi, F& lo) {
#pragma unroll
    for (int t = 0; t < hi.num_elements; ++t) {
        const float v = hi.x[t], h = wmma::__float_to_tf32(v);
        hi.x[t] = h;
        lo.x[t] = wmma::__float_to_tf32(v - h);
    }
}
// acc += A·B over k = 64 (eight k-steps of 8), A and B fp32 in shared memory, 3xTF32.
template <class FA, class FB, class LA, class LB>
__device__ __forceinline__ void mma64(FragC& acc, LA la, LB lb) {
#pragma unroll 2
    for (int k = 0; k < kQ; k += 8) {
        FA ah, al;
        FB bh, bl;
        la(ah, k);
        lb(bh, k);
        split(ah, al);
        split(bh, bl);
        wmma::mma_sync(acc, al, bh, acc);
        wmma::mma_sync(acc, ah, bl, acc);
        wmma::mma_sync(acc, ah, bh, acc);
    }
}

// Λ (inclusive cumulative Δ·A) and Δ of chunk c into lam, dts (zero past q); returns q. One warp.
__device__ __forceinline__ int chunk_decay(const SsdArgs& a, std::size_t b, std::size_t hd, std::size_t c, float* lam, float* dts) {
    const std::size_t t0 = c * kQ;
    const int q = static_cast<int>(std::min<std::size_t>(kQ, a.length - t0));
    if (threadIdx.x < 32) {
        const float A = a.A[hd];
        const int l = threadIdx.x;
        float d0 = l < q ? a.dt[(b * a.length + t0 + l) * a.heads + hd] : 0.0f;
        float d1 = l + 32 < q ? a.dt[(b * a.length + t0 + l + 32) * a.heads + hd] : 0.0f;
        float s0 = d0 * A, s1 = d1 * A;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {  // inclusive warp scans of both halves
            const float v0 = __shfl_up_sync(0xffffffffu, s0, o), v1 = __shfl_up_sync(0xffffffffu, s1, o);
            if (l >= o) s0 += v0, s1 += v1;
        }
        s1 += __shfl_sync(0xffffffffu, s0, 31);
        lam[l] = s0;
        lam[l + 32] = s1;
        dts[l] = d0;
        dts[l + 32] = d1;
    }
    return q;
}

// Rows [0, q) of a [q][64] block at src (row stride `stride` floats) into dst[64][kLd], zero rows past q.
__device__ __forceinline__ void load_rows(const float* src, std::size_t stride, int q, float* dst) {
    for (int k = threadIdx.x; k < kQ * 16; k += blockDim.x) {
        const int r = k >> 4, c4 = (k & 15) * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < q) v = *reinterpret_cast<const float4*>(src + r * stride + c4);
        *reinterpret_cast<float4*>(dst + r * kLd + c4) = v;
    }
}

// S_c = Xᵀ·diag(w)·B, w_j = exp(Λ_last − Λ_j)·Δ_j: one block (8 warps, 2 output tiles each) per chunk, head, sequence.
__global__ void __launch_bounds__(256) ssd_states_tc(SsdArgs a, std::size_t nchunks, float* states, float* decay) {
    __shared__ __align__(32) float xs[kQ * kLd], bw[kQ * kLd];
    __shared__ float lam[kQ], dts[kQ];
    const std::size_t c = blockIdx.x, hd = blockIdx.y, b = blockIdx.z, t0 = c * kQ;
    const int q = chunk_decay(a, b, hd, c, lam, dts);
    load_rows(a.x + ((b * a.length + t0) * a.heads + hd) * kQ, a.heads * kQ, q, xs);
    load_rows(a.B + (b * a.length + t0) * kQ, kQ, q, bw);
    __syncthreads();
    for (int k = threadIdx.x; k < kQ * kQ; k += blockDim.x) {
        const int j = k >> 6, n = k & 63;
        bw[j * kLd + n] *= j < q ? __expf(lam[q - 1] - lam[j]) * dts[j] : 0.0f;
    }
    __syncthreads();
    const int w = threadIdx.x >> 5;
    float* out = states + ((b * nchunks + c) * a.heads + hd) * kQ * kQ;
#pragma unroll 1
    for (int t = w * 2; t < w * 2 + 2; ++t) {
        const int tp = t >> 2, tn = t & 3;
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        mma64<FragAc, FragB>(acc, [&](FragAc& f, int k) { wmma::load_matrix_sync(f, xs + k * kLd + tp * 16, kLd); },
                             [&](FragB& f, int k) { wmma::load_matrix_sync(f, bw + k * kLd + tn * 16, kLd); });
        wmma::store_matrix_sync(out + tp * 16 * kQ + tn * 16, acc, kQ, wmma::mem_row_major);
    }
    if (threadIdx.x == 0) decay[(b * nchunks + c) * a.heads + hd] = lam[q - 1];
}

// y = (C·Bᵀ ∘ L)·X + diag(exp Λ)·C·S_inᵀ + D·X for one chunk, head, sequence.
__global__ void __launch_bounds__(256) ssd_outputs_tc(SsdArgs a, std::size_t nchunks, const float* states) {
    extern __shared__ __align__(32) float sm[];
    float *cs = sm, *bs = cs + kQ * kLd, *xs = bs + kQ * kLd, *ms = xs + kQ * kLd, *ss = ms + kQ * kLd;
    float *lam = ss + kQ * kLd, *dts = lam + kQ;
    const std::size_t c = blockIdx.x, hd = blockIdx.y, b = blockIdx.z, t0 = c * kQ;
    const int q = chunk_decay(a, b, hd, c, lam, dts);
    load_rows(a.x + ((b * a.length + t0) * a.heads + hd) * kQ, a.heads * kQ, q, xs);
    load_rows(a.B + (b * a.length + t0) * kQ, kQ, q, bs);
    load_rows(a.C + (b * a.length + t0) * kQ, kQ, q, cs);
    load_rows(states + ((b * nchunks + c) * a.heads + hd) * kQ * kQ, kQ, kQ, ss);
    __syncthreads();
    const int w = threadIdx.x >> 5;
#pragma unroll 1
    for (int t = w * 2; t < w * 2 + 2; ++t) {  // G = C·Bᵀ
        const int ti = t >> 2, tj = t & 3;
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        mma64<FragA, FragBc>(acc, [&](FragA& f, int k) { wmma::load_matrix_sync(f, cs + ti * 16 * kLd + k, kLd); },
                             [&](FragBc& f, int k) { wmma::load_matrix_sync(f, bs + tj * 16 * kLd + k, kLd); });
        wmma::store_matrix_sync(ms + ti * 16 * kLd + tj * 16, acc, kLd, wmma::mem_row_major);
    }
    __syncthreads();
    for (int k = threadIdx.x; k < kQ * kQ; k += blockDim.x) {  // causal decay mask; C rows scaled by exp(Λ_i)
        const int i = k >> 6, j = k & 63;
        ms[i * kLd + j] = j <= i && i < q ? ms[i * kLd + j] * __expf(lam[i] - lam[j]) * dts[j] : 0.0f;
        cs[i * kLd + j] *= i < q ? __expf(lam[i]) : 0.0f;
    }
    __syncthreads();
    const float Dh = a.D ? a.D[hd] : 0.0f;
    const std::size_t ystride = a.heads * kQ;
    float* yg = a.y + ((b * a.length + t0) * a.heads + hd) * kQ;
    FragC accs[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = w * 2 + r, ti = t >> 2, tp = t & 3;
        FragC& acc = accs[r];
        wmma::load_matrix_sync(acc, xs + ti * 16 * kLd + tp * 16, kLd, wmma::mem_row_major);
#pragma unroll
        for (int e = 0; e < acc.num_elements; ++e) acc.x[e] *= Dh;
        mma64<FragA, FragB>(acc, [&](FragA& f, int k) { wmma::load_matrix_sync(f, ms + ti * 16 * kLd + k, kLd); },
                            [&](FragB& f, int k) { wmma::load_matrix_sync(f, xs + k * kLd + tp * 16, kLd); });
        mma64<FragA, FragBc>(acc, [&](FragA& f, int k) { wmma::load_matrix_sync(f, cs + ti * 16 * kLd + k, kLd); },
                             [&](FragBc& f, int k) { wmma::load_matrix_sync(f, ss + tp * 16 * kLd + k, kLd); });
        if (q == kQ) wmma::store_matrix_sync(yg + ti * 16 * ystride + tp * 16, acc, static_cast<unsigned>(ystride), wmma::mem_row_major);
    }
    if (q == kQ) return;
    __syncthreads();  // the short last chunk: through shared memory (ms is free now), rows < q only
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = w * 2 + r, ti = t >> 2, tp = t & 3;
        wmma::store_matrix_sync(ms + ti * 16 * kLd + tp * 16, accs[r], kLd, wmma::mem_row_major);
    }
    __syncthreads();
    for (int k = threadIdx.x; k < q * kQ; k += blockDim.x) yg[(k >> 6) * ystride + (k & 63)] = ms[(k >> 6) * kLd + (k & 63)];
}

// Step 2 in groups (see the file comment): cells = headdim·dstate per (sequence, head); decay[b][c][hd] = Λ_last.
constexpr int kLoads = 8;
__global__ void ssd_group_k(SsdArgs a, std::size_t nchunks, std::size_t per, unsigned G, const float* states, const float* decay,
                            float* gagg, float* gdec) {
    const std::size_t cells = a.headdim * a.dstate;
    const std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, g = blockIdx.y, bh = blockIdx.z;
    if (j >= cells) return;
    const std::size_t b = bh / a.heads, hd = bh % a.heads, k0 = g * per, k1 = std::min(nchunks, k0 + per);
    float s = 0.0f, D = 0.0f;
    for (std::size_t k = k0; k < k1; k += kLoads) {
        float own[kLoads], dec[kLoads];
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
            if (k + i < k1) {
                own[i] = states[((b * nchunks + k + i) * a.heads + hd) * cells + j];
                dec[i] = decay[(b * nchunks + k + i) * a.heads + hd];
            }
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
            if (k + i < k1) {
                s = fmaf(__expf(dec[i]), s, own[i]);
                D += dec[i];
            }
    }
    gagg[(bh * G + g) * cells + j] = s;
    gdec[(bh * G + g) * cells + j] = D;
}
__global__ void ssd_group_top_k(SsdArgs a, unsigned G, float* gagg, const float* gdec) {
    const std::size_t cells = a.headdim * a.dstate;
    const std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, bh = blockIdx.y;
    if (j >= cells) return;
    float s = a.state ? a.state[bh * cells + j] : 0.0f;
    for (unsigned g = 0; g < G; ++g) {
        const float own = gagg[(bh * G + g) * cells + j], D = gdec[(bh * G + g) * cells + j];
        gagg[(bh * G + g) * cells + j] = s;
        s = fmaf(__expf(D), s, own);
    }
    if (a.state) a.state[bh * cells + j] = s;
}
__global__ void ssd_group_fill_k(SsdArgs a, std::size_t nchunks, std::size_t per, unsigned G, const float* gin, float* states,
                                 const float* decay) {
    const std::size_t cells = a.headdim * a.dstate;
    const std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, g = blockIdx.y, bh = blockIdx.z;
    if (j >= cells) return;
    const std::size_t b = bh / a.heads, hd = bh % a.heads, k0 = g * per, k1 = std::min(nchunks, k0 + per);
    float s = gin[(bh * G + g) * cells + j];
    for (std::size_t k = k0; k < k1; k += kLoads) {
        float own[kLoads], dec[kLoads];
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
            if (k + i < k1) {
                own[i] = states[((b * nchunks + k + i) * a.heads + hd) * cells + j];
                dec[i] = decay[(b * nchunks + k + i) * a.heads + hd];
            }
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
            if (k + i < k1) {
                states[((b * nchunks + k + i) * a.heads + hd) * cells + j] = s;
                s = fmaf(__expf(dec[i]), s, own[i]);
            }
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
    if (P == 64 && N == 64 && a.chunk == kQ) {
        const std::size_t bh = a.batch * a.heads, cells = P * N, G = std::min<std::size_t>(64, nchunks), per = (nchunks + G - 1) / G;
        static detail::DeviceArray<float> gagg, gdec;
        if (gagg.size() < bh * G * cells) {
            gagg = detail::DeviceArray<float>(bh * G * cells);
            gdec = detail::DeviceArray<float>(bh * G * cells);
        }
        if (bh > 65535) throw UsageError("ssd_scan: batch × heads must be ≤ 65535");
        const std::size_t smo = (5 * kQ * kLd + 2 * kQ) * sizeof(float);
        SSM_CUDA_CHECK(cudaFuncSetAttribute(ssd_outputs_tc, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smo)));
        ssd_states_tc<<<grid, 256>>>(a, nchunks, states.get(), decay.get());
        SSM_CUDA_LAUNCHED("ssd: chunk states (tensor cores)");
        const unsigned cb = static_cast<unsigned>((cells + 255) / 256);
        ssd_group_k<<<dim3(cb, static_cast<unsigned>(G), static_cast<unsigned>(bh)), 256>>>(a, nchunks, per, static_cast<unsigned>(G),
                                                                                           states.get(), decay.get(), gagg.get(), gdec.get());
        SSM_CUDA_LAUNCHED("ssd: combine groups");
        ssd_group_top_k<<<dim3(cb, static_cast<unsigned>(bh)), 256>>>(a, static_cast<unsigned>(G), gagg.get(), gdec.get());
        SSM_CUDA_LAUNCHED("ssd: combine top");
        ssd_group_fill_k<<<dim3(cb, static_cast<unsigned>(G), static_cast<unsigned>(bh)), 256>>>(a, nchunks, per, static_cast<unsigned>(G),
                                                                                                gagg.get(), states.get(), decay.get());
        SSM_CUDA_LAUNCHED("ssd: combine fill");
        ssd_outputs_tc<<<grid, 256, smo>>>(a, nchunks, states.get());
        SSM_CUDA_LAUNCHED("ssd: outputs (tensor cores)");
        return;
    }
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
