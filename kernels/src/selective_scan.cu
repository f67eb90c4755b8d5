// Mamba's selective scan (S6) on the GPU.
//
// Work split: a thread owns one channel of one sequence for one time chunk, its dstate-wide state in registers; a block
// owns 64 consecutive channels (so u, Δ, z and y rows are read and written as coalesced 256-byte rows) and one chunk.
// The block streams its chunk through shared memory in tiles of kTile steps, double-buffered with cp.async: the next
// tile of u, Δ, z, B and C is in flight while the current one is scanned, and B_t, C_t are loaded once per block and
// read by all 64 channels as shared-memory broadcasts. The discretisation (softplus, exp(Δ·A) by one ex2 per state,
// Δ·B·u) is fused; the state is never written to memory except at chunk edges.
//
// Chunks exist only to fill the chip when batch × dim threads are too few (long single sequences): with K chunks
//   1. chunk_states_k: chunks 0 … K−2 run from a zero state and leave their own final state and ΣΔ (reads Δ, u, B);
//   2. combine_*_k: per (sequence, channel, state index), the state entering chunk k is
//      exp(A·ΣΔ_{k−1})·(state entering chunk k−1) + (own final state of chunk k−1) — exact, since A is diagonal;
//   3. chunk_outputs_k: every chunk reruns from its true entering state and writes y (the last one the final state).
// With few channels and long chunks the second scan is replaced by a fix-up (see launch and chunk_fixup_k): every chunk
// is scanned once from a zero state, writing y and its own final state; after step 2, only the first steps of each
// chunk, until the decayed entering state falls below float rounding, get the entering state's share of y added.
// With K = 1 (enough channels) only one scan runs: one read of every input, one write of y.
#include <cuda_pipeline.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common.hpp"
#include "ssmstream/cuda.hpp"

namespace ssm::cuda {

namespace {

constexpr int kCh = 64;    // channels per block (= threads)
constexpr int kTile = 8;   // steps per shared-memory tile

// softplus(x) = max(x, 0) + log1p(e), e = exp(−|x|) ∈ (0, 1]: log1p by its series where e is small (where 1 + e
// would round), by the hardware log elsewhere; relative error ≈ 1e-6, a few instructions instead of log1pf's many.
__device__ __forceinline__ float softplus_(float x) {
    const float e = __expf(-fabsf(x));
    const float series = e * fmaf(e, fmaf(e, fmaf(e, -0.25f, 1.0f / 3.0f), -0.5f), 1.0f);
    return fmaxf(x, 0.0f) + (e < 0.0625f ? series : __logf(1.0f + e));
}
__device__ __forceinline__ float ex2_(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}
// 2^x on the FMA pipe (round, degree-6 polynomial on [−½, ½], exponent added as an integer; relative error ≈ 1e-7,
// as ex2.approx): the scan is bound by the 16-per-clock special-function unit, so a share of the exponentials is
// computed here instead, where the FMA pipe has room.
__device__ __forceinline__ float ex2_poly(float x) {
    x = fminf(fmaxf(x, -126.0f), 126.0f);
    const float t = x + 12582912.0f;  // 1.5·2^23: the low mantissa bits of t hold round(x)
    const float f = x - (t - 12582912.0f);
    float p = 1.5403530e-4f;
    p = fmaf(p, f, 1.3333558e-3f);
    p = fmaf(p, f, 9.6181291e-3f);
    p = fmaf(p, f, 5.5504109e-2f);
    p = fmaf(p, f, 2.4022651e-1f);
    p = fmaf(p, f, 6.9314718e-1f);
    p = fmaf(p, f, 1.0f);
    return __int_as_float(__float_as_int(p) + (__float_as_int(t) << 23));
}
// Which state indices take the polynomial: kPoly's low byte for pass 1, next byte for pass 3; 0 none, 1 every eighth,
// 2 every fourth. Measured on the H100 (bench_cuda, SSM_BENCH_POLY): none is fastest, 3-9% ahead of the others, so
// the scan is bound by issue slots as much as by the special-function unit; kept for other GPUs' balance.
template <bool kOut, int kPoly>
__device__ __forceinline__ float ex2_mix(float x, int n) {
    constexpr int m = kOut ? (kPoly >> 8) & 255 : kPoly & 255;
    return (m == 1 && (n & 7) == 7) || (m == 2 && (n & 3) == 3) ? ex2_poly(x) : ex2_(x);
}

// One tile of the inputs in shared memory: rows of kCh channels for u, Δ (and z), rows of N for B (and C).
template <int N, bool kOut>
struct alignas(16) Tile {
    float u[kTile][kCh], dt[kTile][kCh];
    float z[kOut ? kTile : 1][kCh];
    float B[kTile][N];
    float C[kOut ? kTile : 1][N];
};

// Issue the copies of steps [t, t + nt) of sequence b, channels [d0, d0 + kCh), into `s` (4-byte cp.async, so any
// dim and dstate work; each warp's row copies are contiguous 128-byte segments).
template <int N, bool kOut>
__device__ __forceinline__ void load_tile(const SelectiveScanArgs& a, std::size_t b, std::size_t t, int nt, std::size_t d0,
                                          Tile<N, kOut>& s) {
    const int c = threadIdx.x;
    const std::size_t d = d0 + c;
    if (d < a.dim) {
        const std::size_t g = (b * a.length + t) * a.dim + d;
        const float *pu = a.u + g, *pd = a.delta + g, *pz = a.z ? a.z + g : nullptr;
#pragma unroll
        for (int i = 0; i < kTile; ++i)
            if (i < nt) {
                __pipeline_memcpy_async(&s.u[i][c], pu + i * a.dim, 4);
                __pipeline_memcpy_async(&s.dt[i][c], pd + i * a.dim, 4);
                if constexpr (kOut)
                    if (pz) __pipeline_memcpy_async(&s.z[i][c], pz + i * a.dim, 4);
            }
    }
    const int ns = static_cast<int>(a.dstate);
    const float* Bg = a.B + (b * a.length + t) * a.dstate;
    const float* Cg = a.C + (b * a.length + t) * a.dstate;
    for (int k = c; k < nt * ns; k += kCh) {
        const int i = k / ns, n = k - i * ns;
        __pipeline_memcpy_async(&s.B[i][n], Bg + k, 4);
        if constexpr (kOut) __pipeline_memcpy_async(&s.C[i][n], Cg + k, 4);
    }
    __pipeline_commit();
}

// Scans steps [t0, t1) of sequence b for channels [d0, d0 + kCh) from the state in h. kOut: write y (and use C, z).
template <int N, bool kOut, int kPoly>
__device__ __forceinline__ float scan_chunk(const SelectiveScanArgs& a, std::size_t b, std::size_t d0, std::size_t t0,
                                            std::size_t t1, const float (&A2)[N], float (&h)[N], Tile<N, kOut> (&s)[2]) {
    const int c = threadIdx.x;
    const std::size_t d = d0 + c;
    const bool live = d < a.dim;
    const float bias = live && a.delta_bias ? a.delta_bias[d] : 0.0f;
    const float Dd = kOut && live && a.D ? a.D[d] : 0.0f;
    const int ntiles = static_cast<int>((t1 - t0 + kTile - 1) / kTile);
    float dsum = 0.0f;
    load_tile<N, kOut>(a, b, t0, static_cast<int>(std::min<std::size_t>(kTile, t1 - t0)), d0, s[0]);
    for (int k = 0; k < ntiles; ++k) {
        const std::size_t t = t0 + static_cast<std::size_t>(k) * kTile;
        const int nt = static_cast<int>(std::min<std::size_t>(kTile, t1 - t));
        if (k + 1 < ntiles) {
            const std::size_t tn = t + kTile;
            load_tile<N, kOut>(a, b, tn, static_cast<int>(std::min<std::size_t>(kTile, t1 - tn)), d0, s[(k + 1) & 1]);
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const Tile<N, kOut>& cur = s[k & 1];
        if (live) {
            // Groups of kG steps, unrolled: the softplus of all kG steps first (independent, so their latencies
            // overlap), then the recurrence, then the gating and stores, keeping the serial chain per step short.
            float* yp = a.y + (b * a.length + t) * a.dim + d;
#pragma unroll
            for (int i = 0; i < kTile; ++i) {
                if (i >= nt) break;  // (uniform) B, C past the chunk end were never loaded
                float dt = cur.dt[i][c] + bias;
                if (a.delta_softplus) dt = softplus_(dt);
                const float u = cur.u[i][c], du = dt * u;
                dsum += dt;
                float y0 = 0.0f, y1 = 0.0f;
#pragma unroll
                for (int n4 = 0; n4 < N; n4 += 4) {
                    const float4 Bv = *reinterpret_cast<const float4*>(&cur.B[i][n4]);
                    const float Bn[4] = {Bv.x, Bv.y, Bv.z, Bv.w};
                    float Cn[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    if constexpr (kOut) {
                        const float4 Cv = *reinterpret_cast<const float4*>(&cur.C[i][n4]);
                        Cn[0] = Cv.x, Cn[1] = Cv.y, Cn[2] = Cv.z, Cn[3] = Cv.w;
                    }
#pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        const int n = n4 + q;
                        h[n] = fmaf(ex2_mix<kOut, kPoly>(dt * A2[n], n), h[n], du * Bn[q]);
                        if constexpr (kOut) {
                            if (q & 1) y1 = fmaf(h[n], Cn[q], y1);
                            else y0 = fmaf(h[n], Cn[q], y0);
                        }
                    }
                }
                if constexpr (kOut) {
                    float y = fmaf(Dd, u, y0 + y1);
                    if (a.z) {
                        const float z = cur.z[i][c];
                        y *= __fdividef(z, 1.0f + __expf(-z));
                    }
                    yp[i * a.dim] = y;
                }
            }
        }
        __syncthreads();  // the next iteration's copies overwrite this buffer
    }
    return dsum;
}

template <int N, bool kOut>
__device__ __forceinline__ void zero_pads(const SelectiveScanArgs& a, Tile<N, kOut> (&s)[2]) {
    // State indices ≥ dstate: B and C are 0 there (and A is 0), so those states stay 0 and add nothing to y.
    const int ns = static_cast<int>(a.dstate);
    if (ns == N) return;
    for (int k = threadIdx.x; k < kTile * N; k += kCh) {
        const int i = k / N, n = k % N;
        if (n >= ns)
            for (int j = 0; j < 2; ++j) {
                s[j].B[i][n] = 0.0f;
                if constexpr (kOut) s[j].C[i][n] = 0.0f;
            }
    }
}

template <int N>
__device__ __forceinline__ void load_A(const SelectiveScanArgs& a, std::size_t d, float (&A2)[N]) {
    const int ns = static_cast<int>(a.dstate);
#pragma unroll
    for (int n = 0; n < N; ++n) A2[n] = d < a.dim && n < ns ? a.A[d * a.dstate + n] * 1.4426950408889634f : 0.0f;  // e^x = 2^(x·log2 e)
}

// Pass 1: chunks 0 … K−2 from a zero state: hloc[b][k][d][n] and dsum[b][k][d].
template <int N, int kPoly>
__global__ void __launch_bounds__(kCh, N <= 16 ? 12 : N <= 32 ? 6 : 3) chunk_states_k(SelectiveScanArgs a, std::size_t chunk, std::size_t nchunks, float* hloc,
                                                      float* dsum) {
    __shared__ Tile<N, false> s[2];
    const std::size_t d0 = blockIdx.x * std::size_t{kCh}, k = blockIdx.y, b = blockIdx.z, d = d0 + threadIdx.x;
    zero_pads<N, false>(a, s);
    float A2[N], h[N];
    load_A<N>(a, d, A2);
#pragma unroll
    for (int n = 0; n < N; ++n) h[n] = 0.0f;
    const std::size_t t0 = k * chunk, t1 = std::min(a.length, t0 + chunk);
    const float sum = scan_chunk<N, false, kPoly>(a, b, d0, t0, t1, A2, h, s);
    if (d >= a.dim) return;
    float* out = hloc + ((b * nchunks + k) * a.dim + d) * a.dstate;
#pragma unroll
    for (int n = 0; n < N; ++n)
        if (n < static_cast<int>(a.dstate)) out[n] = h[n];
    dsum[(b * nchunks + k) * a.dim + d] = sum;
}

// Pass 2, in place: hloc[b][k] becomes the state entering chunk k (k = 0 … K−1). Chunks 0 … K−2 are cut into G
// groups, so that the walk is parallel: (a) each (b, d, n, group) composes its group from a zero state; (b) each (b, d,
// n) walks the G groups in order; (c) each (b, d, n, group) walks its chunks again from the group's entering state.
// Loads of several chunks are issued before the dependent chain uses them.
constexpr int kLoads = 8;

__global__ void combine_groups_k(SelectiveScanArgs a, std::size_t nchunks, std::size_t nagg, std::size_t per, unsigned G,
                                 const float* hloc, const float* dsum, float* gagg, float* gdec) {
    const std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, g = blockIdx.y, b = blockIdx.z;
    if (j >= a.dim * a.dstate) return;
    const std::size_t d = j / a.dstate, cells = a.dim * a.dstate;
    const std::size_t k0 = g * per, k1 = std::min(nagg, k0 + per);
    const float A = a.A[j];
    float s = 0.0f, D = 0.0f;
    for (std::size_t k = k0; k < k1; k += kLoads) {
        float own[kLoads], dec[kLoads];
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
            if (k + i < k1) {
                own[i] = hloc[(b * nchunks + k + i) * cells + j];
                dec[i] = dsum[(b * nchunks + k + i) * a.dim + d];
            }
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
            if (k + i < k1) {
                s = fmaf(__expf(A * dec[i]), s, own[i]);
                D += dec[i];
            }
    }
    gagg[(b * G + g) * cells + j] = s;
    gdec[(b * G + g) * cells + j] = D;
}

// fixup: the aggregates already hold the initial state (chunk 0 started from it) and the final state goes to a.state;
// otherwise the walk starts from a.state and its end is the state entering the last chunk.
__global__ void combine_top_k(SelectiveScanArgs a, std::size_t nchunks, unsigned G, float* gagg, const float* gdec, float* hloc,
                              bool fixup) {
    const std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, b = blockIdx.y;
    if (j >= a.dim * a.dstate) return;
    const std::size_t cells = a.dim * a.dstate;
    const float A = a.A[j];
    float s = a.state && !fixup ? a.state[b * cells + j] : 0.0f;
    for (unsigned g = 0; g < G; ++g) {
        const float own = gagg[(b * G + g) * cells + j], D = gdec[(b * G + g) * cells + j];
        gagg[(b * G + g) * cells + j] = s;  // now: the state entering group g
        s = fmaf(__expf(A * D), s, own);
    }
    if (!fixup) hloc[(b * nchunks + nchunks - 1) * cells + j] = s;
    else if (a.state) a.state[b * cells + j] = s;
}

__global__ void combine_fill_k(SelectiveScanArgs a, std::size_t nchunks, std::size_t nagg, std::size_t per, unsigned G, const float* gin,
                               float* hloc, const float* dsum) {
    const std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x, g = blockIdx.y, b = blockIdx.z;
    if (j >= a.dim * a.dstate) return;
    const std::size_t d = j / a.dstate, cells = a.dim * a.dstate;
    const std::size_t k0 = g * per, k1 = std::min(nagg, k0 + per);
    const float A = a.A[j];
    float s = gin[(b * G + g) * cells + j];
    for (std::size_t k = k0; k < k1; k += kLoads) {
        float own[kLoads], dec[kLoads];
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
            if (k + i < k1) {
                own[i] = hloc[(b * nchunks + k + i) * cells + j];
                dec[i] = dsum[(b * nchunks + k + i) * a.dim + d];
            }
#pragma unroll
        for (int i = 0; i < kLoads; ++i)
            if (k + i < k1) {
                hloc[(b * nchunks + k + i) * cells + j] = s;
                s = fmaf(__expf(A * dec[i]), s, own[i]);
            }
    }
}

// Pass 3: every chunk from its entering state (hin[b][k][d][n], or a.state / zero when hin is null), writes y; the
// last chunk writes the final state.
// With hend (the fix-up algorithm): chunk 0 from a.state, the others from zero; each chunk's own final state and ΣΔ
// go to hend / dsum, and chunk_fixup_k adds the part of y that the true entering state contributes.
template <int N, int kPoly>
__global__ void __launch_bounds__(kCh, N <= 16 ? 12 : N <= 32 ? 6 : 3) chunk_outputs_k(SelectiveScanArgs a, std::size_t chunk, std::size_t nchunks, const float* hin,
                                                                                  float* hend = nullptr, float* dsum = nullptr) {
    __shared__ Tile<N, true> s[2];
    const std::size_t d0 = blockIdx.x * std::size_t{kCh}, k = blockIdx.y, b = blockIdx.z, d = d0 + threadIdx.x;
    zero_pads<N, true>(a, s);
    const int ns = static_cast<int>(a.dstate);
    float A2[N], h[N];
    load_A<N>(a, d, A2);
    const float* h0 = d >= a.dim          ? nullptr
                      : hin               ? hin + ((b * nchunks + k) * a.dim + d) * a.dstate
                      : hend && k > 0     ? nullptr
                      : a.state           ? a.state + (b * a.dim + d) * a.dstate
                                          : nullptr;
#pragma unroll
    for (int n = 0; n < N; ++n) h[n] = h0 && n < ns ? h0[n] : 0.0f;
    const std::size_t t0 = k * chunk, t1 = std::min(a.length, t0 + chunk);
    const float sum = scan_chunk<N, true, kPoly>(a, b, d0, t0, t1, A2, h, s);
    if (hend) {
        if (d >= a.dim) return;
        float* out = hend + ((b * nchunks + k) * a.dim + d) * a.dstate;
#pragma unroll
        for (int n = 0; n < N; ++n)
            if (n < ns) out[n] = h[n];
        dsum[(b * nchunks + k) * a.dim + d] = sum;
        return;
    }
    if (d < a.dim && a.state && k + 1 == nchunks) {
        float* out = a.state + (b * a.dim + d) * a.dstate;
#pragma unroll
        for (int n = 0; n < N; ++n)
            if (n < ns) out[n] = h[n];
    }
}

// The fix-up: y_t += (C_t · P_t)·silu(z_t) with P_t = exp(A·(Δ_1 + … + Δ_t)) ⊙ h_in, the entering state decayed to
// step t of the chunk. With softplus Δ ≥ 0 and every A ≤ 0, P only shrinks, and once every |P[n]| is below 2^-26 of
// the largest |h_in[n]| what is left is far below float rounding of y: the walk stops there (typically after a few
// hundred steps of a chunk of thousands). Otherwise it runs to the chunk end. One thread per (sequence, chunk, channel).
template <int N>
__global__ void __launch_bounds__(kCh) chunk_fixup_k(SelectiveScanArgs a, std::size_t chunk, std::size_t nchunks, const float* hin) {
    const std::size_t d = blockIdx.x * std::size_t{kCh} + threadIdx.x, k = blockIdx.y + 1, b = blockIdx.z;
    if (d >= a.dim) return;
    const int ns = static_cast<int>(a.dstate);
    float A2[N], P[N];
    load_A<N>(a, d, A2);
    const float* h0 = hin + ((b * nchunks + k) * a.dim + d) * a.dstate;
    float top = 0.0f;
    bool shrinking = a.delta_softplus;
#pragma unroll
    for (int n = 0; n < N; ++n) {
        P[n] = n < ns ? h0[n] : 0.0f;
        top = fmaxf(top, fabsf(P[n]));
        shrinking = shrinking && A2[n] <= 0.0f;
    }
    const float floor_ = top * 1.4901161e-08f;  // 2^-26
    const float bias = a.delta_bias ? a.delta_bias[d] : 0.0f;
    const std::size_t t0 = k * chunk, t1 = std::min(a.length, t0 + chunk);
    const float* __restrict__ dl = a.delta + (b * a.length) * a.dim + d;
    const float* __restrict__ zz = a.z ? a.z + (b * a.length) * a.dim + d : nullptr;
    float* __restrict__ yy = a.y + (b * a.length) * a.dim + d;
    constexpr int kG = 8;  // steps whose loads are issued together, ahead of the dependent chain
    for (std::size_t t = t0; t < t1; t += kG) {
        float dv[kG], zv[kG], yv[kG];
#pragma unroll
        for (int j = 0; j < kG; ++j) {
            const bool in = t + j < t1;
            dv[j] = in ? dl[(t + j) * a.dim] : 0.0f;
            zv[j] = in && zz ? zz[(t + j) * a.dim] : 0.0f;
            yv[j] = in ? yy[(t + j) * a.dim] : 0.0f;
        }
        float big = 0.0f;
#pragma unroll
        for (int j = 0; j < kG; ++j) {
            if (t + j >= t1) break;
            float dt = dv[j] + bias;
            if (a.delta_softplus) dt = softplus_(dt);
            const float* Ct = a.C + (b * a.length + t + j) * a.dstate;
            float c0 = 0.0f, c1 = 0.0f;
            big = 0.0f;
#pragma unroll
            for (int n = 0; n < N; ++n) {
                P[n] *= ex2_(dt * A2[n]);
                big = fmaxf(big, fabsf(P[n]));
                if (n < ns) {
                    if (n & 1) c1 = fmaf(__ldg(Ct + n), P[n], c1);
                    else c0 = fmaf(__ldg(Ct + n), P[n], c0);
                }
            }
            float corr = c0 + c1;
            if (zz) corr *= __fdividef(zv[j], 1.0f + __expf(-zv[j]));
            yy[(t + j) * a.dim] = yv[j] + corr;
        }
        if (shrinking && big <= floor_) break;
    }
}

template <int N, int kPoly = 0>
void launch(const SelectiveScanArgs& a) {
    static int sms = [] {
        int v = 132;
        cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0);
        return v;
    }();
    // Two algorithms once time is cut into chunks: "rescan" (pass 1 finds each chunk's own final state, pass 3 scans
    // every chunk again from its true entering state: two scans of every step) and "fixup" (one scan of every chunk
    // from a zero state, then only the first few hundred steps of each chunk corrected for the entering state, see
    // chunk_fixup_k). The fix-up walk is latency-bound, so it pays with long chunks (≥ 4096 steps), which only few
    // channels (long single sequences) leave room for. H100 (bench_cuda, dstate 16): 64 channels, 2^22 steps: 47% of
    // the copy roofline against 44%, 2^24: 61% against 45%; but 256 channels, 2^20 steps: 26% against 40%, and with
    // more channels the rescan was as fast or faster. SSM_SCAN_ALGO=fixup / rescan forces either (benchmarks, tests).
    const char* algo = std::getenv("SSM_SCAN_ALGO");
    bool fixup = a.batch * a.dim <= 64;
    if (algo && std::strcmp(algo, "fixup") == 0) fixup = true;
    if (algo && std::strcmp(algo, "rescan") == 0) fixup = false;
    std::size_t chunk = a.chunk;
    if (chunk == 0) {
        // Split time only as far as needed to fill every multiprocessor several times over (24 warps each): each
        // extra chunk costs a second scan of its steps (pass 1), so one chunk per sequence when the channels suffice.
        const std::size_t want = static_cast<std::size_t>(sms) * 1536, lanes = a.batch * a.dim;
        const std::size_t k = std::clamp<std::size_t>((want + lanes - 1) / lanes, 1, std::max<std::size_t>(1, a.length / 512));
        chunk = (a.length + k - 1) / k;
        if (fixup) chunk = std::max<std::size_t>(chunk, 4096);
    }
    chunk = std::max<std::size_t>(chunk, 1);
    const std::size_t nchunks = (a.length + chunk - 1) / chunk;
    if (nchunks > 65535) throw UsageError("selective_scan: more than 65535 chunks; use longer chunks");
    const unsigned cblocks = static_cast<unsigned>((a.dim + kCh - 1) / kCh);
    if (nchunks == 1) {
        chunk_outputs_k<N, kPoly><<<dim3(cblocks, 1, static_cast<unsigned>(a.batch)), kCh>>>(a, chunk, 1, nullptr);
        SSM_CUDA_LAUNCHED("selective_scan: outputs");
        return;
    }
    // Chunk-edge states, kept between calls (grown when a call needs more): no allocation per call. One caller at a
    // time, as for a Batch.
    static detail::DeviceArray<float> hloc, dsum;
    if (hloc.size() < a.batch * nchunks * a.dim * a.dstate) hloc = detail::DeviceArray<float>(a.batch * nchunks * a.dim * a.dstate);
    if (dsum.size() < a.batch * nchunks * a.dim) dsum = detail::DeviceArray<float>(a.batch * nchunks * a.dim);
    if (fixup) {
        chunk_outputs_k<N, kPoly><<<dim3(cblocks, static_cast<unsigned>(nchunks), static_cast<unsigned>(a.batch)), kCh>>>(
            a, chunk, nchunks, nullptr, hloc.get(), dsum.get());
        SSM_CUDA_LAUNCHED("selective_scan: chunks from zero");
    } else {
        chunk_states_k<N, kPoly><<<dim3(cblocks, static_cast<unsigned>(nchunks - 1), static_cast<unsigned>(a.batch)), kCh>>>(
            a, chunk, nchunks, hloc.get(), dsum.get());
        SSM_CUDA_LAUNCHED("selective_scan: chunk states");
    }
    const std::size_t nagg = fixup ? nchunks : nchunks - 1;
    const std::size_t cells = a.dim * a.dstate, G = std::min<std::size_t>(64, nagg), per = (nagg + G - 1) / G;
    static detail::DeviceArray<float> gagg, gdec;
    if (gagg.size() < a.batch * G * cells) {
        gagg = detail::DeviceArray<float>(a.batch * G * cells);
        gdec = detail::DeviceArray<float>(a.batch * G * cells);
    }
    const unsigned cb = static_cast<unsigned>((cells + 127) / 128);
    combine_groups_k<<<dim3(cb, static_cast<unsigned>(G), static_cast<unsigned>(a.batch)), 128>>>(
        a, nchunks, nagg, per, static_cast<unsigned>(G), hloc.get(), dsum.get(), gagg.get(), gdec.get());
    SSM_CUDA_LAUNCHED("selective_scan: combine groups");
    combine_top_k<<<dim3(cb, static_cast<unsigned>(a.batch)), 128>>>(a, nchunks, static_cast<unsigned>(G), gagg.get(), gdec.get(), hloc.get(),
                                                                       fixup);
    SSM_CUDA_LAUNCHED("selective_scan: combine top");
    combine_fill_k<<<dim3(cb, static_cast<unsigned>(G), static_cast<unsigned>(a.batch)), 128>>>(
        a, nchunks, nagg, per, static_cast<unsigned>(G), gagg.get(), hloc.get(), dsum.get());
    SSM_CUDA_LAUNCHED("selective_scan: combine fill");
    if (fixup) {
        chunk_fixup_k<N><<<dim3(cblocks, static_cast<unsigned>(nchunks - 1), static_cast<unsigned>(a.batch)), kCh>>>(a, chunk, nchunks, hloc.get());
        SSM_CUDA_LAUNCHED("selective_scan: fix-up");
        return;
    }
    chunk_outputs_k<N, kPoly><<<dim3(cblocks, static_cast<unsigned>(nchunks), static_cast<unsigned>(a.batch)), kCh>>>(a, chunk, nchunks, hloc.get());
    SSM_CUDA_LAUNCHED("selective_scan: outputs");
}

}  // namespace

void selective_scan(const SelectiveScanArgs& a) {
    if (!a.u || !a.delta || !a.A || !a.B || !a.C || !a.y) throw UsageError("selective_scan: u, delta, A, B, C and y are required");
    if (a.length == 0 || a.dim == 0 || a.batch == 0) return;
    if (a.batch > 65535) throw UsageError("selective_scan: at most 65535 sequences per launch");
    if (a.dstate <= 4) launch<4>(a);
    else if (a.dstate <= 8) launch<8>(a);
    else if (a.dstate <= 16) {
        // SSM_SCAN_POLY (benchmarks only): the share of exponentials on the FMA pipe, pass 1 / pass 3 (see ex2_mix).
        const char* e = std::getenv("SSM_SCAN_POLY");
        const int poly = e ? std::atoi(e) : -1;
        switch (poly) {
            case 1: launch<16, 1>(a); break;
            case 2: launch<16, 2>(a); break;
            case 258: launch<16, 258>(a); break;
            case 257: launch<16, 257>(a); break;
            default: launch<16, 0>(a);
        }
    }
    else if (a.dstate <= 32) launch<32>(a);
    else if (a.dstate <= 64) launch<64>(a);
    else throw UsageError("selective_scan: dstate " + std::to_string(a.dstate) + " > 64 is not supported");
}

}  // namespace ssm::cuda
