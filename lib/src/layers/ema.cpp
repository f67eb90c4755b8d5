// MEGA's multi-dimensional damped EMA — `MultiHeadEMA` of facebookresearch/mega
// (`fairseq/modules/exponential_moving_average.py`), the EMA sub-layer alone, inference only. Per channel d and
// EMA dimension n < ndim (real states), with p = σ(delta), q = 1 − p·σ(alpha), b = p·beta, g = gamma·sqrt(1/ndim):
//   h_t = q ⊙ h_{t−1} + b·x_t,   out_t = Σ_n g_n h_t,n,   y_t = silu(out_t + omega·x_t)
// which is the reference's incremental `one_step`, and its FFT forward with the kernel K_l = Σ_n g_n b_n q_n^l.
// With `truncation` T the reference keeps only T kernel taps; the recurrence of that FIR subtracts b·q^T·x_{t−T},
// so the state holds the last T inputs per channel (a ring) besides h. `bidirectional` convolves with future inputs:
// refused (not causal). Parameters as saved: delta, alpha, beta [D, ndim, 1], gamma [D, ndim], omega [D].
// Batch: the EMA as FFT convolution or as the recurrence over channel groups across threads (LtiConv), then silu.
#include <algorithm>
#include <cmath>

#include "layers/layer.hpp"
#include "layers/lti_conv.hpp"
#include "ops/math.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

class Ema final : public Layer {
public:
    std::string name;
    std::size_t D = 0, N = 0, T = 0;       // T = 0: untruncated
    std::vector<float> q, b, g, qT, omega;  // [D][N] (omega [D])

    std::size_t ring_offset() const noexcept { return D * N; }
    std::size_t pos_index() const noexcept { return D * N + D * T; }
    std::size_t in_width() const noexcept override { return D; }
    std::size_t out_width() const noexcept override { return D; }
    std::size_t state_size() const noexcept override { return D * N + (T ? D * T + 1 : 0); }
    std::size_t param_count() const noexcept override { return 5 * D * N + D; }
    std::string describe() const override {
        return "ema '" + name + "' D=" + std::to_string(D) + " ndim=" + std::to_string(N) +
               (T ? " truncation=" + std::to_string(T) : std::string());
    }
    std::size_t ring_pos(const float* state) const noexcept { return T ? static_cast<std::size_t>(state[pos_index()]) : 0; }
    void advance_pos(float* state, std::size_t frames) const noexcept {
        if (T) state[pos_index()] = static_cast<float>((ring_pos(state) + frames) % T);
    }

    // Channels [d0, d1): rows of `in` → out, before the silu. The ring position is read, not advanced.
    void scan(std::size_t d0, std::size_t d1, const float* in, float* out, std::size_t frames, float* state) const noexcept {
        const std::size_t pos0 = ring_pos(state);
        for (std::size_t d = d0; d < d1; ++d) {
            float* __restrict h = state + d * N;
            float* ring = T ? state + ring_offset() + d * T : nullptr;
            const float* __restrict qd = q.data() + d * N;
            const float* __restrict bd = b.data() + d * N;
            const float* __restrict gd = g.data() + d * N;
            const float* __restrict td = qT.data() + d * N;
            std::size_t p = pos0;
            for (std::size_t t = 0; t < frames; ++t) {
                const float u = in[t * D + d];
                float old = 0.0f;
                if (ring) {
                    old = ring[p];
                    ring[p] = u;
                    p = p + 1 == T ? 0 : p + 1;
                }
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (std::size_t n = 0; n < N; ++n) {
                    const float v = qd[n] * h[n] + bd[n] * u - td[n] * old;
                    h[n] = v;
                    acc += gd[n] * v;
                }
                out[t * D + d] = acc + omega[d] * u;
            }
        }
    }

    static void activate(float* y, std::size_t n) noexcept {
#pragma omp simd
        for (std::size_t i = 0; i < n; ++i) y[i] = silu(y[i]);
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float*) const noexcept override {
        scan(0, D, in, out, frames, state);
        advance_pos(state, frames);
        activate(out, frames * D);
    }
    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

// Batch view: the EMA through LtiConv (FFT convolution with K + omega·δ, or the recurrence), then the silu.
class EmaRunner final : public LayerRunner {
public:
    EmaRunner(const Ema& l, BatchContext& ctx) : L_(l), pool_(ctx.pool), conv_(ctx, core(l), l.describe()) {}
    static LtiCore core(const Ema& l) {
        LtiCore c;
        c.channels = l.D;
        c.state_size = l.state_size();
        c.fir_length = l.T;
        c.recurrence_ns = 0.3 * static_cast<double>(l.N) + 2.0;
        c.scan = [&l](std::size_t d0, std::size_t d1, const float* in, float* y, std::size_t frames, float* st) {
            l.scan(d0, d1, in, y, frames, st);
        };
        c.advance = [&l](float* st, std::size_t frames) { l.advance_pos(st, frames); };
        return c;
    }
    void run(const float* in, float* out, std::size_t frames) override {
        conv_.run(in, out, frames);
        const std::size_t piece = 1024, pieces = (frames + piece - 1) / piece;
        pool_.parallel_for(pieces, [&](std::size_t b, std::size_t e, std::size_t) {
            for (std::size_t p = b; p < e; ++p) {
                const std::size_t f0 = p * piece, f1 = std::min(frames, f0 + piece);
                Ema::activate(out + f0 * L_.D, (f1 - f0) * L_.D);
            }
        }, 1);
    }
    void reset() override { conv_.reset(); }
    void save(float* dst) const override { conv_.save(dst); }
    void load(const float* src) override { conv_.load(src); }
    void collect_plans(std::vector<LayerPlan>& plans) const override { plans.push_back(conv_.plan()); }

private:
    const Ema& L_;
    ThreadPool& pool_;
    LtiConv conv_;
};

std::unique_ptr<LayerRunner> Ema::make_runner(BatchContext& ctx) const { return std::make_unique<EmaRunner>(*this, ctx); }

}  // namespace

std::unique_ptr<Layer> make_ema(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "ndim", "truncation", "bidirectional"});  // d_model = embed_dim
    auto l = std::make_unique<Ema>();
    l->name = get_string(c, "name", "", true);
    l->D = get_size(c, "d_model", in_width, false);
    l->N = get_size(c, "ndim", 2, false);
    l->T = get_size(c, "truncation", 0, false);
    if (get_bool(c, "bidirectional", false))
        throw ConfigError("layer " + layer_label(c) + ": bidirectional EMA convolves with future inputs and cannot stream");
    const auto D = static_cast<std::int64_t>(l->D), N = static_cast<std::int64_t>(l->N);
    const auto delta = p.take(l->name + ".delta", {D, N, 1});
    const auto alpha = p.take(l->name + ".alpha", {D, N, 1});
    const auto beta = p.take(l->name + ".beta", {D, N, 1});
    const auto gamma = p.take(l->name + ".gamma", {D, N});
    const auto omega = p.take(l->name + ".omega", {D});
    const double scale = std::sqrt(1.0 / static_cast<double>(l->N));
    auto sig = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
    for (std::size_t i = 0; i < l->D * l->N; ++i) {
        const double pp = sig(delta[i]), qq = 1.0 - pp * sig(alpha[i]);
        l->q.push_back(static_cast<float>(qq));
        l->b.push_back(static_cast<float>(pp * beta[i]));
        l->g.push_back(static_cast<float>(gamma[i] * scale));
        l->qT.push_back(l->T ? static_cast<float>(std::pow(qq, static_cast<double>(l->T)) * pp * beta[i]) : 0.0f);
    }
    for (double w : omega) l->omega.push_back(static_cast<float>(w));
    return l;
}

}  // namespace ssm::detail
