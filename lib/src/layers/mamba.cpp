// Mamba (S6): the mixer of state-spaces/mamba `mamba_ssm/modules/mamba_simple.py` (class Mamba, its forward and
// step) and of transformers' MambaMixer; with `bcdt_rms_eps` also FalconMamba's mixer (weightless RMS norms on dt, B
// and C after x_proj). Per frame, with E = d_inner channels and N = d_state:
//   [x, z] = in_proj(u);  x = silu(conv1d(x)) (causal, depthwise, kernel d_conv);  [dt, B, C] = x_proj(x)
//   Δ = softplus(dt_proj(dt));  A = −exp(A_log)
//   h[c, n] = exp(Δ[c]·A[c, n])·h[c, n] + Δ[c]·B[n]·x[c];  y[c] = Σ_n C[n]·h[c, n] + D[c]·x[c]
//   out = out_proj(y · silu(z))
// State per stream: the conv window ([d_conv−1][E], oldest first) then h ([E][N]). The recurrence runs channel by
// channel with h in registers across the block; the projections of a block are matrix products.
#include <algorithm>
#include <cmath>

#include "layers/mamba_common.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {


namespace {

class Mamba final : public Layer {
public:
    std::string name;
    std::size_t D = 0, E = 0, N = 0, K = 0, R = 0;
    bool bcdt_norm = false;  // FalconMamba: weightless RMS norms on dt, B and C
    float bcdt_eps = 0.0f;
    Weights w_in, w_out;
    std::vector<float> b_in, conv_wt, conv_b, w_x, w_dt, b_dt, A, Dskip, b_out;

    std::size_t dbc() const noexcept { return R + 2 * N; }
    std::size_t in_width() const noexcept override { return D; }
    std::size_t out_width() const noexcept override { return D; }
    std::size_t state_size() const noexcept override { return (K - 1) * E + E * N; }
    std::size_t scratch_size(std::size_t mb) const noexcept override {
        return mb * 2 * E + mb * E + mb * dbc() + mb * E + mb * E + 64;
    }
    std::size_t param_count() const noexcept override {
        return w_in.size() + b_in.size() + conv_wt.size() + conv_b.size() + w_x.size() + w_dt.size() + b_dt.size() +
               A.size() + Dskip.size() + w_out.size() + b_out.size();
    }
    std::size_t weight_bytes() const noexcept override {
        return (param_count() - w_in.size() - w_out.size()) * sizeof(float) + w_in.bytes() + w_out.bytes();
    }
    std::string describe() const override {
        return std::string(bcdt_norm ? "falcon-mamba" : "mamba") + " '" + name + "' d_model " + std::to_string(D) +
               ", d_inner " + std::to_string(E) + ", d_state " + std::to_string(N) + ", d_conv " + std::to_string(K) +
               ", dt_rank " + std::to_string(R);
    }

    struct Buffers {
        float *xz, *xc, *dbc, *delta, *y;
    };
    Buffers carve(float* s, std::size_t mb) const noexcept {
        Buffers b{};
        b.xz = s;
        b.xc = b.xz + mb * 2 * E;
        b.dbc = b.xc + mb * E;
        b.delta = b.dbc + mb * dbc();
        b.y = b.delta + mb * E;
        return b;
    }

    // Stages over rows [t0, t1) (projections, norms) or channels [c0, c1) (convolution, recurrence); a block runs
    // them in order, Batch splits each over threads.
    void in_proj(const float* in, const Buffers& b, std::size_t t0, std::size_t t1) const noexcept {
        project(in + t0 * D, D, t1 - t0, D, w_in, b_in.empty() ? nullptr : b_in.data(), 2 * E, b.xz + t0 * 2 * E, 2 * E);
    }
    void conv(const Buffers& b, std::size_t frames, float* window, std::size_t c0, std::size_t c1) const noexcept {
        causal_conv_silu(b.xz, 2 * E, frames, E, K, conv_wt.data(), conv_b.empty() ? nullptr : conv_b.data(), window,
                         b.xc, E, c0, c1);
    }
    void x_and_dt_proj(const Buffers& b, std::size_t t0, std::size_t t1) const noexcept {
        const std::size_t w = dbc();
        project(b.xc + t0 * E, E, t1 - t0, E, w_x.data(), nullptr, w, b.dbc + t0 * w, w);
        if (bcdt_norm)
            for (std::size_t t = t0; t < t1; ++t) {
                float* r = b.dbc + t * w;
                rms_normalize(r, R, bcdt_eps, nullptr);
                rms_normalize(r + R, N, bcdt_eps, nullptr);
                rms_normalize(r + R + N, N, bcdt_eps, nullptr);
            }
        project(b.dbc + t0 * w, w, t1 - t0, R, w_dt.data(), b_dt.data(), E, b.delta + t0 * E, E);
#pragma omp simd
        for (std::size_t i = t0 * E; i < t1 * E; ++i) b.delta[i] = fast_softplus(b.delta[i]);
    }
    // The selective scan over channels [c0, c1): 16 channels at a time in the vector lanes, their states transposed
    // to [N][16] so that B_t and C_t are broadcasts and y needs no horizontal sum (one per channel and step cost as
    // much as its state update); the channels past the last group of 16 one at a time.
    void scan(const Buffers& b, std::size_t frames, float* h_all, std::size_t c0, std::size_t c1) const noexcept {
        constexpr std::size_t kL = 16;
        const std::size_t w = dbc(), full = c0 + (c1 - c0) / kL * kL;
        for (std::size_t g = c0; g < full; g += kL) scan16(b, frames, h_all, g);
        for (std::size_t c = full; c < c1; ++c) scan1(b, frames, h_all, c, w);
    }
    void scan16(const Buffers& b, std::size_t frames, float* h_all, std::size_t g) const noexcept {
        constexpr std::size_t kL = 16, kMaxN = 256;
        alignas(64) float h[kMaxN][kL], a[kMaxN][kL];
        for (std::size_t l = 0; l < kL; ++l)
            for (std::size_t n = 0; n < N; ++n) {
                h[n][l] = h_all[(g + l) * N + n];
                a[n][l] = A[(g + l) * N + n];
            }
        const std::size_t w = dbc();
        for (std::size_t t = 0; t < frames; ++t) {
            const float* u = b.xc + t * E + g;
            const float* d = b.delta + t * E + g;
            const float* B = b.dbc + t * w + R;
            const float* C = B + N;
            alignas(64) float du[kL], acc[kL];
#pragma omp simd
            for (std::size_t l = 0; l < kL; ++l) {
                du[l] = d[l] * u[l];
                acc[l] = 0.0f;
            }
            for (std::size_t n = 0; n < N; ++n) {
                const float bn = B[n], cn = C[n];
#pragma omp simd
                for (std::size_t l = 0; l < kL; ++l) {
                    h[n][l] = fast_exp(d[l] * a[n][l]) * h[n][l] + du[l] * bn;
                    acc[l] += cn * h[n][l];
                }
            }
            const float* z = b.xz + t * 2 * E + E + g;
            float* y = b.y + t * E + g;
#pragma omp simd
            for (std::size_t l = 0; l < kL; ++l) y[l] = (acc[l] + Dskip[g + l] * u[l]) * silu(z[l]);
        }
        for (std::size_t l = 0; l < kL; ++l)
            for (std::size_t n = 0; n < N; ++n) h_all[(g + l) * N + n] = h[n][l];
    }
    void scan1(const Buffers& b, std::size_t frames, float* h_all, std::size_t c, std::size_t w) const noexcept {
        constexpr std::size_t kMaxN = 256;
        float h[kMaxN], a[kMaxN];
        float* hc = h_all + c * N;
        for (std::size_t n = 0; n < N; ++n) {
            h[n] = hc[n];
            a[n] = A[c * N + n];
        }
        const float dc = Dskip[c];
        for (std::size_t t = 0; t < frames; ++t) {
            const float u = b.xc[t * E + c], d = b.delta[t * E + c], du = d * u;
            const float* B = b.dbc + t * w + R;
            const float* C = B + N;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (std::size_t n = 0; n < N; ++n) {
                h[n] = fast_exp(d * a[n]) * h[n] + du * B[n];
                acc += C[n] * h[n];
            }
            const float zt = b.xz[t * 2 * E + E + c];
            b.y[t * E + c] = (acc + dc * u) * silu(zt);
        }
        for (std::size_t n = 0; n < N; ++n) hc[n] = h[n];
    }
    void out_proj(const Buffers& b, float* out, std::size_t t0, std::size_t t1) const noexcept {
        project(b.y + t0 * E, E, t1 - t0, E, w_out, b_out.empty() ? nullptr : b_out.data(), D, out + t0 * D, D);
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        const auto b = carve(scratch, frames);
        in_proj(in, b, 0, frames);
        conv(b, frames, state, 0, E);
        x_and_dt_proj(b, 0, frames);
        scan(b, frames, state + (K - 1) * E, 0, E);
        out_proj(b, out, 0, frames);
    }

    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

// Batch: the chunk in pieces of up to kPiece frames (bounded scratch whatever chunk_frames is), each stage split
// over the pool — rows for the projections, channels for the convolution and the selective scan (channels are
// independent, so each thread carries its channels' states through the piece). Same arithmetic as `step`.
class MambaRunner final : public LayerRunner {
public:
    MambaRunner(const Mamba& l, BatchContext& ctx) : l_(l), pool_(ctx.pool) {
        piece_ = std::min<std::size_t>(kPiece, ctx.options.chunk_frames);
        scratch_ = ctx.reserve(l.scratch_size(piece_));
        state_.assign(l.state_size(), 0.0f);
    }
    void run(const float* in, float* out, std::size_t frames) override {
        for (std::size_t f0 = 0; f0 < frames; f0 += piece_) {
            const std::size_t n = std::min(piece_, frames - f0);
            const auto b = l_.carve(scratch_.get(), n);
            const float* x = in + f0 * l_.D;
            float* y = out + f0 * l_.D;
            rows(n, [&](std::size_t t0, std::size_t t1) { l_.in_proj(x, b, t0, t1); });
            channels([&](std::size_t c0, std::size_t c1) { l_.conv(b, n, state_.data(), c0, c1); });
            rows(n, [&](std::size_t t0, std::size_t t1) { l_.x_and_dt_proj(b, t0, t1); });
            channels([&](std::size_t c0, std::size_t c1) { l_.scan(b, n, state_.data() + (l_.K - 1) * l_.E, c0, c1); });
            rows(n, [&](std::size_t t0, std::size_t t1) { l_.out_proj(b, y, t0, t1); });
        }
    }
    void reset() override { std::fill(state_.begin(), state_.end(), 0.0f); }
    void save(float* dst) const override { std::copy(state_.begin(), state_.end(), dst); }
    void load(const float* src) override { std::copy(src, src + state_.size(), state_.begin()); }
    void collect_plans(std::vector<LayerPlan>& plans) const override {
        plans.push_back({l_.describe(), "recurrence", "selective scan, channels split over threads", 0, 0});
    }

private:
    template <class F>
    void rows(std::size_t n, F&& f) {
        const std::size_t grain = std::max<std::size_t>(64, (n + pool_.size() - 1) / pool_.size());
        pool_.parallel_for(pieces_of(n, grain), [&](std::size_t b, std::size_t e, std::size_t) {
            f(b * grain, std::min(n, e * grain));
        }, 1);
    }
    template <class F>
    void channels(F&& f) {
        const std::size_t E = l_.E, grain = 16;
        pool_.parallel_for(pieces_of(E, grain), [&](std::size_t b, std::size_t e, std::size_t) {
            f(b * grain, std::min(E, e * grain));
        }, std::max<std::size_t>(1, pieces_of(E, grain) / (4 * pool_.size())));
    }
    static constexpr std::size_t kPiece = 1024;
    const Mamba& l_;
    ThreadPool& pool_;
    std::size_t piece_ = 0;
    Workspace::Slice scratch_;
    std::vector<float> state_;
};

std::unique_ptr<LayerRunner> Mamba::make_runner(BatchContext& ctx) const { return std::make_unique<MambaRunner>(*this, ctx); }

}  // namespace

std::unique_ptr<Layer> make_mamba(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "d_inner", "d_state", "d_conv", "dt_rank", "bias", "conv_bias", "bcdt_rms_eps"});
    auto m = std::make_unique<Mamba>();
    m->name = get_string(c, "name", "", true);
    m->D = get_size(c, "d_model");
    m->E = get_size(c, "d_inner");
    m->N = get_size(c, "d_state");
    m->K = get_size(c, "d_conv");
    if (m->K < 1 || m->K > 16) throw ConfigError("layer " + layer_label(c) + ": d_conv must be 1 to 16");
    m->R = get_size(c, "dt_rank");
    if (m->N > 256) throw ConfigError("layer " + layer_label(c) + ": d_state above 256 is not supported");
    m->bcdt_norm = c.contains("bcdt_rms_eps") && !c["bcdt_rms_eps"].is_null();
    const double eps = m->bcdt_norm ? get_number(c, "bcdt_rms_eps", 0.0) : 0.0;
    if (eps < 0) throw ConfigError("layer " + layer_label(c) + ": bcdt_rms_eps must be >= 0");
    m->bcdt_eps = static_cast<float>(eps);
    const bool bias = get_bool(c, "bias", false), conv_bias = get_bool(c, "conv_bias", true);
    const auto D = static_cast<std::int64_t>(m->D), E = static_cast<std::int64_t>(m->E), N = static_cast<std::int64_t>(m->N),
               K = static_cast<std::int64_t>(m->K), R = static_cast<std::int64_t>(m->R);
    const std::string pre = m->name + ".";
    m->w_in = p.take_weights(pre + "in_proj.weight", 2 * E, D);
    if (bias) m->b_in = p.take_floats(pre + "in_proj.bias", {2 * E});
    const auto cw = p.take(pre + "conv1d.weight", {E, 1, K});
    m->conv_wt.resize(m->K * m->E);
    for (std::size_t ch = 0; ch < m->E; ++ch)
        for (std::size_t k = 0; k < m->K; ++k) m->conv_wt[k * m->E + ch] = static_cast<float>(cw[ch * m->K + k]);
    if (conv_bias) m->conv_b = p.take_floats(pre + "conv1d.bias", {E});
    m->w_x = p.take_floats(pre + "x_proj.weight", {R + 2 * N, E});
    m->w_dt = p.take_floats(pre + "dt_proj.weight", {E, R});
    m->b_dt = p.take_floats(pre + "dt_proj.bias", {E});
    const auto alog = p.take(pre + "A_log", {E, N});
    m->A.resize(alog.size());
    for (std::size_t i = 0; i < alog.size(); ++i) m->A[i] = static_cast<float>(-std::exp(alog[i]));
    m->Dskip = p.take_floats(pre + "D", {E});
    m->w_out = p.take_weights(pre + "out_proj.weight", D, E);
    if (bias) m->b_out = p.take_floats(pre + "out_proj.bias", {D});
    if (in_width != m->D)
        throw ConfigError("layer " + layer_label(c) + ": d_model " + std::to_string(m->D) + " but receives " +
                          std::to_string(in_width) + " channels");
    return m;
}

}  // namespace ssm::detail
