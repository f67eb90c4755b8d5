// Mamba-2 (SSD): the mixer of state-spaces/mamba `mamba_ssm/modules/mamba2.py` (class Mamba2, forward and step) and
// of transformers' Mamba2Mixer. H heads of P = head_dim channels (E = H·P), G groups sharing B and C, one scalar A
// per head. Per frame:
//   [z, xBC, dt] = in_proj(u);  xBC = silu(conv1d(xBC)) (causal, depthwise);  [x, B, C] = xBC  (B, C: [G][N])
//   Δ[h] = clamp(softplus(dt[h] + dt_bias[h]), dt_limit);  A[h] = −exp(A_log[h])
//   s[h, p, n] = exp(Δ[h]·A[h])·s[h, p, n] + Δ[h]·x[h, p]·B[g(h), n];  y[h, p] = Σ_n C[g(h), n]·s[h, p, n] + D[h]·x[h, p]
//   y = RMSNormGated(y, z) (per group of E/G channels: norm(y·silu(z))·w, or norm(y)·w·silu(z) when norm_before_gate)
//   out = out_proj(y)
// State per stream: the conv window ([d_conv−1][E+2GN]) then s ([H][P][N]). Stream runs the recurrence; Batch runs the
// SSD chunked algorithm of the reference `ssd_minimal.py` per head: within a chunk of Q frames the output is
// (L ∘ C·Bᵀ)·(Δx) plus the carried state read through C, and the state passes from chunk to chunk (matrix products).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "layers/mamba_common.hpp"  // before immintrin.h: it includes Eigen (and the intrinsics) past a GCC 12 false warning
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace ssm::detail {

namespace {

class Mamba2 final : public Layer {
public:
    std::string name;
    std::size_t D = 0, E = 0, N = 0, K = 0, H = 0, P = 0, G = 0, Q = 256;
    bool gated_norm = true, norm_before_gate = false;
    float norm_eps = 1e-5f, dt_lo = 0.0f, dt_hi = INFINITY;
    Weights w_in, w_out;
    std::vector<float> b_in, conv_wt, conv_b, dt_bias, A, Dskip /* [E] */, norm_w, b_out;

    std::size_t conv_dim() const noexcept { return E + 2 * G * N; }
    std::size_t proj_width() const noexcept { return E + conv_dim() + H; }
    std::size_t in_width() const noexcept override { return D; }
    std::size_t out_width() const noexcept override { return D; }
    std::size_t state_size() const noexcept override { return (K - 1) * conv_dim() + H * P * N; }
    std::size_t scratch_size(std::size_t mb) const noexcept override {
        return mb * proj_width() + mb * conv_dim() + mb * H + mb * E + 64;
    }
    std::size_t param_count() const noexcept override {
        return w_in.size() + b_in.size() + conv_wt.size() + conv_b.size() + 3 * H + norm_w.size() + w_out.size() + b_out.size();
    }
    std::size_t weight_bytes() const noexcept override {
        return (param_count() - w_in.size() - w_out.size()) * sizeof(float) + w_in.bytes() + w_out.bytes();
    }
    std::string describe() const override {
        return "mamba2 '" + name + "' d_model " + std::to_string(D) + ", d_inner " + std::to_string(E) + ", heads " +
               std::to_string(H) + " x " + std::to_string(P) + ", groups " + std::to_string(G) + ", d_state " +
               std::to_string(N) + ", d_conv " + std::to_string(K);
    }

    struct Buffers {
        float *zx, *xbc, *dt, *y;
    };
    Buffers carve(float* s, std::size_t mb) const noexcept {
        Buffers b{};
        b.zx = s;
        b.xbc = b.zx + mb * proj_width();
        b.dt = b.xbc + mb * conv_dim();
        b.y = b.dt + mb * H;
        return b;
    }

    void in_proj(const float* in, const Buffers& b, std::size_t t0, std::size_t t1) const noexcept {
        const std::size_t w = proj_width();
        project(in + t0 * D, D, t1 - t0, D, w_in, b_in.empty() ? nullptr : b_in.data(), w, b.zx + t0 * w, w);
        for (std::size_t t = t0; t < t1; ++t)
            for (std::size_t h = 0; h < H; ++h) {
                const float d = fast_softplus(b.zx[t * w + E + conv_dim() + h] + dt_bias[h]);
                b.dt[t * H + h] = std::min(std::max(d, dt_lo), dt_hi);
            }
    }
    void conv(const Buffers& b, std::size_t frames, float* window, std::size_t c0, std::size_t c1) const noexcept {
        causal_conv_silu(b.zx + E, proj_width(), frames, conv_dim(), K, conv_wt.data(), conv_b.empty() ? nullptr : conv_b.data(),
                         window, b.xbc, conv_dim(), c0, c1);
    }
    const float* Bp(const Buffers& b, std::size_t t, std::size_t g) const noexcept { return b.xbc + t * conv_dim() + E + g * N; }
    const float* Cp(const Buffers& b, std::size_t t, std::size_t g) const noexcept {
        return b.xbc + t * conv_dim() + E + G * N + g * N;
    }
    // The recurrence over state rows [r0, r1) of H·P (row h·P + p: channel p of head h; rows are independent, so
    // Batch splits them over threads): per frame the rank-1 update s = e^{ΔA}·s + (Δx)·Bᵀ and y = s·C + D·x. With
    // AVX-512 both run in one pass over s, four rows at a time, their four dot products reduced together (a horizontal
    // sum per row costs as much as the row's update); otherwise the update row by row and y as a matrix-vector product.
    void scan(const Buffers& b, std::size_t frames, float* s_all, std::size_t r0, std::size_t r1) const noexcept {
        using Eigen::Index;
        const std::size_t cd = conv_dim(), hpg = H / G;
        for (std::size_t h = r0 / P; h * P < r1; ++h) {
            const std::size_t p0 = std::max(r0, h * P) - h * P, p1 = std::min(r1, h * P + P) - h * P, rows = p1 - p0;
            float* s = s_all + (h * P + p0) * N;
            const std::size_t g = h / hpg;
            const Rows S(s, static_cast<Index>(rows), static_cast<Index>(N), Eigen::OuterStride<>(static_cast<Index>(N)));
            const float* dk = Dskip.data() + h * P + p0;
            for (std::size_t t = 0; t < frames; ++t) {
                const float d = b.dt[t * H + h], dA = std::exp(d * A[h]);
                const float* Bv = Bp(b, t, g);
                const float* Cv = Cp(b, t, g);
                const float* x = b.xbc + t * cd + h * P + p0;
                float* y = b.y + t * E + h * P + p0;
                std::size_t p = 0;
#if defined(__AVX512F__)
                if (N % 16 == 0) p = scan_rows4(s, rows, Bv, Cv, x, dk, d, dA, y);
#endif
                if (p == rows) continue;
                for (std::size_t q = p; q < rows; ++q) {
                    const float dx = d * x[q];
                    float* sp = s + q * N;
#pragma omp simd
                    for (std::size_t n = 0; n < N; ++n) sp[n] = dA * sp[n] + dx * Bv[n];
                }
                const auto rest = static_cast<Index>(rows - p);
                Eigen::Map<Eigen::VectorXf> Y(y + p, rest);
                Y.noalias() = S.bottomRows(rest) * Eigen::Map<const Eigen::VectorXf>(Cv, static_cast<Index>(N));
                for (std::size_t q = p; q < rows; ++q) y[q] += dk[q] * x[q];
            }
        }
    }
#if defined(__AVX512F__)
    // Rows [0, rows/4·4) of a run of one head's rows, one frame (N a multiple of 16); returns the rows done.
    std::size_t scan_rows4(float* s, std::size_t rows, const float* Bv, const float* Cv, const float* x, const float* dk, float d,
                           float dA, float* y) const noexcept {
        const __m512 a = _mm512_set1_ps(dA);
        const std::size_t done = rows / 4 * 4;
        for (std::size_t p = 0; p < done; p += 4) {
            float* r0 = s + p * N;
            float* r1 = r0 + N;
            float* r2 = r1 + N;
            float* r3 = r2 + N;
            const __m512 x0 = _mm512_set1_ps(d * x[p]), x1 = _mm512_set1_ps(d * x[p + 1]), x2 = _mm512_set1_ps(d * x[p + 2]),
                         x3 = _mm512_set1_ps(d * x[p + 3]);
            __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            for (std::size_t n = 0; n < N; n += 16) {
                const __m512 bv = _mm512_loadu_ps(Bv + n), cv = _mm512_loadu_ps(Cv + n);
                const __m512 v0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(r0 + n), _mm512_mul_ps(x0, bv));
                const __m512 v1 = _mm512_fmadd_ps(a, _mm512_loadu_ps(r1 + n), _mm512_mul_ps(x1, bv));
                const __m512 v2 = _mm512_fmadd_ps(a, _mm512_loadu_ps(r2 + n), _mm512_mul_ps(x2, bv));
                const __m512 v3 = _mm512_fmadd_ps(a, _mm512_loadu_ps(r3 + n), _mm512_mul_ps(x3, bv));
                _mm512_storeu_ps(r0 + n, v0);
                _mm512_storeu_ps(r1 + n, v1);
                _mm512_storeu_ps(r2 + n, v2);
                _mm512_storeu_ps(r3 + n, v3);
                c0 = _mm512_fmadd_ps(cv, v0, c0);
                c1 = _mm512_fmadd_ps(cv, v1, c1);
                c2 = _mm512_fmadd_ps(cv, v2, c2);
                c3 = _mm512_fmadd_ps(cv, v3, c3);
            }
            // 4 × 16 lanes → 4 sums: halves added, then three horizontal adds leave row r's partial sums in lane r of
            // each 128-bit half.
            const auto half = [](__m512 v) { return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0xEE))); };
            const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half(c0), half(c1)), _mm256_hadd_ps(half(c2), half(c3)));
            const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            const __m128 xs = _mm_loadu_ps(x + p);
            _mm_storeu_ps(y + p, _mm_fmadd_ps(_mm_loadu_ps(dk + p), xs, sum));
        }
        return done;
    }
#endif
    void gate_out(const Buffers& b, float* out, std::size_t t0, std::size_t t1) const noexcept {
        const std::size_t w = proj_width(), gs = E / G;
        for (std::size_t t = t0; t < t1; ++t) {
            float* y = b.y + t * E;
            const float* z = b.zx + t * w;
            const auto gate = [&] {
#pragma omp simd
                for (std::size_t i = 0; i < E; ++i) y[i] *= silu(z[i]);
            };
            if (!gated_norm) {
                gate();
                continue;
            }
            if (!norm_before_gate) gate();
            for (std::size_t g = 0; g < G; ++g) rms_normalize(y + g * gs, gs, norm_eps, norm_w.data() + g * gs);
            if (norm_before_gate) gate();
        }
        project(b.y + t0 * E, E, t1 - t0, E, w_out, b_out.empty() ? nullptr : b_out.data(), D, out + t0 * D, D);
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        const auto b = carve(scratch, frames);
        in_proj(in, b, 0, frames);
        conv(b, frames, state, 0, conv_dim());
        scan(b, frames, state + (K - 1) * conv_dim(), 0, H * P);
        gate_out(b, out, 0, frames);
    }

    // SSD over heads [h0, h1) for `frames` rows in chunks of Qc frames (the config's chunk_size, at most 256: it
    // changes only the rounding), each head carrying its s ([P][N]) from chunk to chunk. C·Bᵀ is computed once per
    // group and chunk and shared by the group's heads. Measured on the bench's signal model (2-core Zen 4, loaded):
    // chunks of 32, 64 and 256 within 5% of each other. `ws` holds ssd_scratch() floats.
    static constexpr std::size_t kBatchChunk = 256;
    std::size_t Qc = kBatchChunk;
    std::size_t ssd_scratch() const noexcept { return 2 * Qc * Qc + 4 * Qc * P + Qc * N + 3 * Qc + 32; }
    void ssd_heads(const Buffers& b, std::size_t frames, float* s0, std::size_t h0, std::size_t h1, float* ws) const noexcept {
        using Eigen::Index;
        const std::size_t cd = conv_dim(), per_group = H / G;
        float* CB = ws;
        float* Mm = CB + Qc * Qc;
        float* Xs = Mm + Qc * Qc;
        float* Xraw = Xs + Qc * P;
        float* Yc = Xraw + Qc * P;
        float* Tc = Yc + Qc * P;
        float* Bd = Tc + Qc * P;
        const auto at = (reinterpret_cast<std::uintptr_t>(Bd + Qc * N) + 7) & ~std::uintptr_t{7};
        double* acum = reinterpret_cast<double*>(at);  // cumulative Δ·A in float64: exp of differences stays accurate
        float* dec = reinterpret_cast<float*>(acum + Qc);
        for (std::size_t c0 = 0; c0 < frames; c0 += Qc) {
            const std::size_t L = std::min(Qc, frames - c0);
            const auto Li = static_cast<Index>(L);
            std::size_t cb_group = G;  // none yet
            for (std::size_t h = h0; h < h1; ++h) {
                const std::size_t g = h / per_group;
                const float a = A[h];
                Rows S(s0 + (h - h0) * P * N, static_cast<Index>(P), static_cast<Index>(N), Eigen::OuterStride<>(static_cast<Index>(N)));
                ConstRows Bm(Bp(b, c0, g), Li, static_cast<Index>(N), Eigen::OuterStride<>(static_cast<Index>(cd)));
                ConstRows Cm(Cp(b, c0, g), Li, static_cast<Index>(N), Eigen::OuterStride<>(static_cast<Index>(cd)));
                if (g != cb_group) {  // C·Bᵀ is the group's, whatever the head
                    Rows CBm(CB, Li, Li, Eigen::OuterStride<>(Li));
                    CBm.noalias() = Cm * Bm.transpose();
                    cb_group = g;
                }
                double run = 0.0;
                for (std::size_t i = 0; i < L; ++i) {
                    const float d = b.dt[(c0 + i) * H + h];
                    run += static_cast<double>(d) * static_cast<double>(a);
                    acum[i] = run;
                    const float* xr = b.xbc + (c0 + i) * cd + h * P;
                    for (std::size_t p = 0; p < P; ++p) {
                        Xraw[i * P + p] = xr[p];
                        Xs[i * P + p] = d * xr[p];
                    }
                }
                Rows X(Xs, Li, static_cast<Index>(P), Eigen::OuterStride<>(static_cast<Index>(P)));
                Rows Y(Yc, Li, static_cast<Index>(P), Eigen::OuterStride<>(static_cast<Index>(P)));
                Rows M(Mm, Li, Li, Eigen::OuterStride<>(Li));
                // Intra-chunk: (L ∘ C·Bᵀ)·(Δx), L[i][j] = exp(Σ_{j<k≤i} Δ_k A) = Π_{j<k≤i} exp(Δ_k A) below the diagonal:
                // row i is row i−1 times exp(Δ_i A), so the Qc² decays cost one multiply each and no exp.
                for (std::size_t i = 0; i < L; ++i) {
                    const float e = std::exp(b.dt[(c0 + i) * H + h] * a);
                    float* row = Mm + i * L;
                    const float* cbr = CB + i * L;
#pragma omp simd
                    for (std::size_t j = 0; j < i; ++j) {
                        dec[j] *= e;
                        row[j] = cbr[j] * dec[j];
                    }
                    dec[i] = 1.0f;
                    row[i] = cbr[i];
                    for (std::size_t j = i + 1; j < L; ++j) row[j] = 0.0f;
                }
                Y.noalias() = M * X;
                // The carried state read through C, decayed to each row: exp(Σ_{k≤i} Δ_k A) · C_i · sᵀ.
                Rows T(Tc, Li, static_cast<Index>(P), Eigen::OuterStride<>(static_cast<Index>(P)));
                T.noalias() = Cm * S.transpose();
                for (std::size_t i = 0; i < L; ++i) {
                    const float e = static_cast<float>(std::exp(acum[i]));
                    float* yo = b.y + (c0 + i) * E + h * P;
                    const float* dk = Dskip.data() + h * P;
#pragma omp simd
                    for (std::size_t p = 0; p < P; ++p) yo[p] = Yc[i * P + p] + e * Tc[i * P + p] + dk[p] * Xraw[i * P + p];
                }
                // State passing: s ← exp(Σ Δ A)·s + (Δx)ᵀ·(decay ∘ B).
                Rows Bdec(Bd, Li, static_cast<Index>(N), Eigen::OuterStride<>(static_cast<Index>(N)));
                for (std::size_t i = 0; i < L; ++i) {
                    const float e = static_cast<float>(std::exp(acum[L - 1] - acum[i]));
                    const float* br = Bp(b, c0 + i, g);
                    for (std::size_t n = 0; n < N; ++n) Bd[i * N + n] = e * br[n];
                }
                S *= static_cast<float>(std::exp(acum[L - 1]));
                S.noalias() += X.transpose() * Bdec;
            }
        }
    }

    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

// Batch: the chunk in pieces of kPiece frames per thread (bounded scratch; a piece's activations stay in each core's L2:
// 1024 per piece measured 10–20% slower on one thread), projections split by rows over the pool,
// the convolution by channels, and the scan by heads (SSD) or state rows (recurrence), each carrying its own state
// through the piece. The scan is SSD (the chunked matrix form) or the recurrence: both are exact, and on a CPU the
// recurrence usually costs less.
// SSD does 2·Q·(P + N/heads-per-group) flops per frame and head for the quadratic part plus the 4·P·N of its state
// passing, the recurrence the 4·P·N alone, and it runs them almost as fast as SSD's small matrix products run theirs
// (bench_mamba, 2-core Zen 4: bench/README.md). `--backend fft` (the layers' parallel views) forces SSD,
// `recurrence` the recurrence, `auto` takes the cheaper by the flop counts and the two measured rates.
class Mamba2Runner final : public LayerRunner {
public:
    Mamba2Runner(const Mamba2& l, BatchContext& ctx) : l_(l), pool_(ctx.pool) {
        piece_ = std::min<std::size_t>(std::max<std::size_t>(kPiece * pool_.size() / l.Qc, 1) * l.Qc, ctx.options.chunk_frames);
        scratch_ = ctx.reserve(l.scratch_size(piece_));
        state_.assign(l.state_size(), 0.0f);
        const double P = static_cast<double>(l.P), N = static_cast<double>(l.N), Q = static_cast<double>(l.Qc),
                     hpg = static_cast<double>(l.H / l.G);
        const double rec_ns = 4 * P * N / kRecGflops, ssd_ns = (2 * Q * (P + N / hpg) + 4 * P * N) / kSsdGflops;
        const Backend b = ctx.options.backend;
        ssd_on_ = b == Backend::fft || (b == Backend::automatic && ssd_ns < rec_ns);
        reason_ = b != Backend::automatic ? "forced"
                                          : "cost model: SSD " + std::to_string(std::lround(ssd_ns)) + " vs recurrence " +
                                                std::to_string(std::lround(rec_ns)) + " ns per frame and head";
        if (ssd_on_) ssd_ = ctx.reserve(l.ssd_scratch() * pool_.size());
    }
    void run(const float* in, float* out, std::size_t frames) override {
        const std::size_t cd = l_.conv_dim();
        for (std::size_t f0 = 0; f0 < frames; f0 += piece_) {
            const std::size_t n = std::min(piece_, frames - f0);
            const auto b = l_.carve(scratch_.get(), n);
            const float* x = in + f0 * l_.D;
            float* y = out + f0 * l_.D;
            rows(n, [&](std::size_t t0, std::size_t t1) { l_.in_proj(x, b, t0, t1); });
            split(cd, runs_of_16(cd), [&](std::size_t c0, std::size_t c1, std::size_t) { l_.conv(b, n, state_.data(), c0, c1); });
            float* s = state_.data() + (l_.K - 1) * cd;
            if (ssd_on_)  // heads in contiguous runs per thread, so a run shares its group's C·Bᵀ
                split(l_.H, (l_.H + pool_.size() - 1) / pool_.size(), [&](std::size_t h0, std::size_t h1, std::size_t part) {
                    l_.ssd_heads(b, n, s + h0 * l_.P * l_.N, h0, h1, ssd_.get() + part * l_.ssd_scratch());
                });
            else
                split(l_.H * l_.P, runs_of_16(l_.H * l_.P), [&](std::size_t r0, std::size_t r1, std::size_t) { l_.scan(b, n, s, r0, r1); });
            rows(n, [&](std::size_t t0, std::size_t t1) { l_.gate_out(b, y, t0, t1); });
        }
    }
    void reset() override { std::fill(state_.begin(), state_.end(), 0.0f); }
    void save(float* dst) const override { std::copy(state_.begin(), state_.end(), dst); }
    void load(const float* src) override { std::copy(src, src + state_.size(), state_.begin()); }
    void collect_plans(std::vector<LayerPlan>& plans) const override {
        plans.push_back({l_.describe(), ssd_on_ ? "ssd" : "recurrence",
                         (ssd_on_ ? "SSD chunks of " + std::to_string(l_.Qc) + " frames, heads split over threads"
                                  : std::string("recurrence, state rows split over threads")) +
                             " (" + reason_ + ")",
                         0, 0});
    }

private:
    template <class F>
    void rows(std::size_t n, F&& f) {
        const std::size_t grain = std::max<std::size_t>(64, (n + pool_.size() - 1) / pool_.size());
        pool_.parallel_for(pieces_of(n, grain), [&](std::size_t b, std::size_t e, std::size_t) {
            f(b * grain, std::min(n, e * grain));
        }, 1);
    }
    // Channels or state rows per task: about two tasks per thread (taken as threads come free), in multiples of 16
    // (whole cache lines; the scan kernel's rows of 4). Strips of 16 spent their time on per-frame setup: measured
    // 20% of a 2-thread run in the convolution alone.
    std::size_t runs_of_16(std::size_t total) const {
        const std::size_t per = (total + 2 * pool_.size() - 1) / (2 * pool_.size());
        return std::max<std::size_t>(16, (per + 15) / 16 * 16);
    }
    template <class F>
    void split(std::size_t total, std::size_t grain, F&& f) {
        pool_.parallel_for(pieces_of(total, grain), [&](std::size_t b, std::size_t e, std::size_t part) {
            f(b * grain, std::min(total, e * grain), part);
        }, 1);
    }
    static constexpr std::size_t kPiece = 256;  // frames per thread in a piece
    const Mamba2& l_;
    ThreadPool& pool_;
    std::size_t piece_ = 0;
    // Flop rates (GFLOP/s = flops per ns) of the two scans on one core: the recurrence ran at ~43 GFLOP/s in a perf
    // profile of bench_mamba's signal stream; SSD's is set so the model orders the two as bench_mamba's forced rows do
    // (SSD 12.7× vs recurrence 15.7× real time, one thread). Rough: only the order matters to the choice.
    static constexpr double kRecGflops = 40.0, kSsdGflops = 45.0;
    bool ssd_on_ = true;
    std::string reason_;
    Workspace::Slice scratch_, ssd_;
    std::vector<float> state_;
};

std::unique_ptr<LayerRunner> Mamba2::make_runner(BatchContext& ctx) const { return std::make_unique<Mamba2Runner>(*this, ctx); }

}  // namespace

std::unique_ptr<Layer> make_mamba2(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "d_inner", "d_state", "d_conv", "head_dim", "n_groups", "bias", "conv_bias", "norm",
                     "norm_before_gate", "norm_eps", "dt_limit", "d_per_channel", "chunk_size"});
    auto m = std::make_unique<Mamba2>();
    const auto fail = [&](const std::string& what) { throw ConfigError("layer " + layer_label(c) + ": " + what); };
    m->name = get_string(c, "name", "", true);
    m->D = get_size(c, "d_model");
    m->E = get_size(c, "d_inner");
    m->N = get_size(c, "d_state");
    m->K = get_size(c, "d_conv");
    if (m->K < 1 || m->K > 16) fail("d_conv must be 1 to 16");
    m->P = get_size(c, "head_dim");
    m->G = get_size(c, "n_groups", 1, false);
    m->Q = get_size(c, "chunk_size", 256, false);
    m->Qc = std::clamp<std::size_t>(m->Q, 1, Mamba2::kBatchChunk);
    if (m->E % m->P != 0) fail("d_inner must be a multiple of head_dim");
    m->H = m->E / m->P;
    if (m->H % m->G != 0) fail("the number of heads (d_inner / head_dim) must be a multiple of n_groups");
    m->gated_norm = get_bool(c, "norm", true);
    m->norm_before_gate = get_bool(c, "norm_before_gate", false);
    m->norm_eps = static_cast<float>(get_number(c, "norm_eps", 1e-5));
    if (c.contains("dt_limit")) {
        const auto& lim = c["dt_limit"];
        if (!lim.is_array() || lim.size() != 2 || !lim[0].is_number() || !(lim[1].is_number() || lim[1].is_null()))
            fail("dt_limit must be [low, high] (high null = no upper limit)");
        m->dt_lo = lim[0].get<float>();
        m->dt_hi = lim[1].is_null() ? INFINITY : lim[1].get<float>();
        if (!(m->dt_lo <= m->dt_hi)) fail("dt_limit must have low <= high");
    }
    const bool bias = get_bool(c, "bias", false), conv_bias = get_bool(c, "conv_bias", true);
    const bool d_per_channel = get_bool(c, "d_per_channel", false);
    const auto D = static_cast<std::int64_t>(m->D), E = static_cast<std::int64_t>(m->E), H = static_cast<std::int64_t>(m->H),
               K = static_cast<std::int64_t>(m->K), CD = static_cast<std::int64_t>(m->conv_dim()),
               PW = static_cast<std::int64_t>(m->proj_width());
    const std::string pre = m->name + ".";
    m->w_in = p.take_weights(pre + "in_proj.weight", PW, D);
    if (bias) m->b_in = p.take_floats(pre + "in_proj.bias", {PW});
    const auto cw = p.take(pre + "conv1d.weight", {CD, 1, K});
    m->conv_wt.resize(m->K * m->conv_dim());
    for (std::size_t ch = 0; ch < m->conv_dim(); ++ch)
        for (std::size_t k = 0; k < m->K; ++k) m->conv_wt[k * m->conv_dim() + ch] = static_cast<float>(cw[ch * m->K + k]);
    if (conv_bias) m->conv_b = p.take_floats(pre + "conv1d.bias", {CD});
    m->dt_bias = p.take_floats(pre + "dt_bias", {H});
    const auto alog = p.take(pre + "A_log", {H});
    for (double v : alog) m->A.push_back(static_cast<float>(-std::exp(v)));
    const auto dv = p.take(pre + "D", {d_per_channel ? E : H});
    m->Dskip.resize(m->E);
    for (std::size_t i = 0; i < m->E; ++i) m->Dskip[i] = static_cast<float>(d_per_channel ? dv[i] : dv[i / m->P]);
    if (m->gated_norm) m->norm_w = p.take_floats(pre + "norm.weight", {E});
    m->w_out = p.take_weights(pre + "out_proj.weight", D, E);
    if (bias) m->b_out = p.take_floats(pre + "out_proj.bias", {D});
    if (in_width != m->D) fail("d_model " + std::to_string(m->D) + " but receives " + std::to_string(in_width) + " channels");
    return m;
}

}  // namespace ssm::detail
