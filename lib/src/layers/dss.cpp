// DSS — Diagonal State Spaces (Gupta, Gu & Berant 2022), as the authors' standalone module defines it
// (ag1988/dss `src/models/sequence/ss/standalone/dss.py`: `DSSKernel`, `DSS`), inference only. Per channel h and
// complex state n < N (no conjugate pairs: K = Re of the sum), with dtΛ = exp(log_dt[h])·Λ (or, with log_dt [H, 2],
// Re Λ·exp(log_dt[h,0]) + i·Im Λ·exp(log_dt[h,1])), λ̄ = exp(dtΛ), the kernel is K_l = Re(Σ_n W̃_n λ̄_n^l), l < L:
//   softmax (default):        W̃ = W·(λ̄ − 1)·r(Λ·(λ̄^L − 1))   with r(x) = x̄ / (x x̄ + ε)   (normalised over L taps)
//   exp, exp-re-im, clip:     W̃ = W·(λ̄ − 1)·x̄ / max(|x|², ε), x = Λ          (the -no-scale versions: W̃ = W)
// y = K ∗ u + D u, then `activation`, then output_linear (1×1, + GLU with postact glu).
//
// The softmax kernel depends on its length L: the reference normalises it over the whole input (or over
// max_kernel_length), so an output sample depends on how long the input is — not a streaming model until L is
// fixed. `kernel_length` fixes it: the layer is the reference's convolution with an L-tap kernel, exactly as the
// reference computes with max_kernel_length = L (and, for an input of length L, without it). The recurrence of an
// L-tap exponential kernel is x_t = λ̄ x_{t−1} + u_t − λ̄^L u_{t−L}, so the state holds the last L inputs per
// channel (a ring) besides x. The exp/clip versions need no L (absent: the untruncated kernel, as the reference
// for any input length). States with Re(dtΛ) > 0 grow without bound in a recurrence and are refused.
// Batch: the kernel part as FFT convolution or as the recurrence over channel groups across threads (LtiConv),
// then the output projection over pieces of frames.
#include <algorithm>
#include <cmath>
#include <complex>
#include <map>

#include "layers/layer.hpp"
#include "layers/lti_conv.hpp"
#include "ops/dense.hpp"
#include "ops/math.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

enum class DssAct { none, gelu, tanh, relu, silu, sigmoid };

class Dss final : public Layer {
public:
    std::string name, version, act_name, postact;
    std::size_t H = 0, N = 0, L = 0;  // L = 0: untruncated kernel
    DssAct act = DssAct::gelu;
    std::vector<float> ar, ai, wr, wi, pr, pi;  // [H][N]: λ̄, W̃, λ̄^L
    std::vector<float> D, wt, bias;             // output_linear transposed [H][out_w]
    std::size_t out_w = 0, params = 0;

    std::size_t plane() const noexcept { return H * N; }
    std::size_t ring_offset() const noexcept { return 2 * plane(); }
    std::size_t pos_index() const noexcept { return 2 * plane() + H * L; }
    std::size_t in_width() const noexcept override { return H; }
    std::size_t out_width() const noexcept override { return H; }
    std::size_t max_width() const noexcept override { return out_w; }
    std::size_t state_size() const noexcept override { return 2 * plane() + (L ? H * L + 1 : 0); }
    std::size_t scratch_size(std::size_t max_block) const noexcept override { return max_block * (H + out_w); }
    std::size_t param_count() const noexcept override { return params; }
    std::string describe() const override {
        return "dss '" + name + "' H=" + std::to_string(H) + " N=" + std::to_string(N) + " version=" + version +
               (L ? " kernel_length=" + std::to_string(L) : std::string(" untruncated")) + " activation=" + act_name +
               " postact=" + postact;
    }

    std::size_t ring_pos(const float* state) const noexcept { return L ? static_cast<std::size_t>(state[pos_index()]) : 0; }
    void advance_pos(float* state, std::size_t frames) const noexcept {
        if (L) state[pos_index()] = static_cast<float>((ring_pos(state) + frames) % L);
    }

    // Channels [h0, h1): rows of `in` → y (before activation). The ring position is read, not advanced.
    void scan(std::size_t h0, std::size_t h1, const float* in, float* y, std::size_t frames, float* state) const noexcept {
        const std::size_t P = plane(), pos0 = ring_pos(state);
        for (std::size_t h = h0; h < h1; ++h) {
            float* __restrict xr = state + h * N;
            float* __restrict xi = state + P + h * N;
            float* ring = L ? state + ring_offset() + h * L : nullptr;
            const float* __restrict a_r = ar.data() + h * N;
            const float* __restrict a_i = ai.data() + h * N;
            const float* __restrict w_r = wr.data() + h * N;
            const float* __restrict w_i = wi.data() + h * N;
            const float* __restrict p_r = pr.data() + h * N;
            const float* __restrict p_i = pi.data() + h * N;
            std::size_t p = pos0;
            for (std::size_t t = 0; t < frames; ++t) {
                const float u = in[t * H + h];
                float old = 0.0f;
                if (ring) {
                    old = ring[p];
                    ring[p] = u;
                    p = p + 1 == L ? 0 : p + 1;
                }
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (std::size_t n = 0; n < N; ++n) {
                    const float nr = a_r[n] * xr[n] - a_i[n] * xi[n] + u - p_r[n] * old;
                    const float ni = a_r[n] * xi[n] + a_i[n] * xr[n] - p_i[n] * old;
                    xr[n] = nr;
                    xi[n] = ni;
                    acc += w_r[n] * nr - w_i[n] * ni;
                }
                y[t * H + h] = acc + D[h] * u;
            }
        }
    }

    // Activation and output_linear over rows of y → out; z: frames × out_w scratch.
    void finish(float* y, float* out, std::size_t frames, float* z) const noexcept {
        const std::size_t n = frames * H;
        switch (act) {
            case DssAct::none: break;
            case DssAct::gelu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = gelu_erf(y[i]);
                break;
            case DssAct::tanh:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = fast_tanh(y[i]);
                break;
            case DssAct::relu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = y[i] > 0 ? y[i] : 0.0f;
                break;
            case DssAct::silu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = silu(y[i]);
                break;
            case DssAct::sigmoid:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = fast_sigmoid(y[i]);
                break;
        }
        if (out_w == H) {
            dense_forward(y, out, frames, H, H, wt.data(), bias.data());
            return;
        }
        dense_glu(y, out, frames, H, wt.data(), bias.data(), z);  // out_w == 2H
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        float* y = scratch;
        scan(0, H, in, y, frames, state);
        advance_pos(state, frames);
        finish(y, out, frames, scratch + frames * H);
    }

    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

// Batch view: the kernel part through LtiConv (FFT convolution of the recurrence's impulse response, or the
// recurrence itself, by the cost model), then the activation and output projection over pieces of frames.
class DssRunner final : public LayerRunner {
public:
    DssRunner(const Dss& l, BatchContext& ctx) : L_(l), pool_(ctx.pool), conv_(ctx, core(l), l.describe()) {
        const std::size_t chunk = ctx.options.chunk_frames;
        y_ = ctx.reserve(chunk * l.H);
        z_ = ctx.reserve(chunk * l.out_w);
    }
    static LtiCore core(const Dss& l) {
        LtiCore c;
        c.channels = l.H;
        c.state_size = l.state_size();
        c.fir_length = l.L;
        c.recurrence_ns = 0.45 * static_cast<double>(l.N) + 2.0;  // bench/run_lti_a.sh: 31 ns at N = 64
        c.scan = [&l](std::size_t h0, std::size_t h1, const float* in, float* y, std::size_t frames, float* st) {
            l.scan(h0, h1, in, y, frames, st);
        };
        c.advance = [&l](float* st, std::size_t frames) { l.advance_pos(st, frames); };
        return c;
    }
    void run(const float* in, float* out, std::size_t frames) override {
        float* y = y_.get();
        conv_.run(in, y, frames);
        const std::size_t piece = 256, pieces = (frames + piece - 1) / piece;
        pool_.parallel_for(pieces, [&](std::size_t b, std::size_t e, std::size_t) {
            for (std::size_t p = b; p < e; ++p) {
                const std::size_t f0 = p * piece, f1 = std::min(frames, f0 + piece);
                L_.finish(y + f0 * L_.H, out + f0 * L_.H, f1 - f0, z_.get() + f0 * L_.out_w);
            }
        }, 1);
    }
    void reset() override { conv_.reset(); }
    void save(float* dst) const override { conv_.save(dst); }
    void load(const float* src) override { conv_.load(src); }
    void collect_plans(std::vector<LayerPlan>& plans) const override { plans.push_back(conv_.plan()); }

private:
    const Dss& L_;
    ThreadPool& pool_;
    LtiConv conv_;
    Workspace::Slice y_, z_;
};

std::unique_ptr<LayerRunner> Dss::make_runner(BatchContext& ctx) const { return std::make_unique<DssRunner>(*this, ctx); }

}  // namespace

std::unique_ptr<Layer> make_dss(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "d_state", "version", "kernel_length", "activation", "postact", "epsilon",
                     "max_real_Lambda", "channels", "bidirectional"});
    auto l = std::make_unique<Dss>();
    l->name = get_string(c, "name", "", true);
    l->H = get_size(c, "d_model", in_width, false);
    l->N = get_size(c, "d_state", 64, false);
    l->version = get_string(c, "version", "softmax");
    l->L = get_size(c, "kernel_length", 0, l->version == "softmax");
    l->act_name = get_string(c, "activation", "gelu");
    l->postact = get_string(c, "postact", "none");
    const double eps = get_number(c, "epsilon", 1e-7), max_re = get_number(c, "max_real_Lambda", 1e-4);
    const std::string lbl = "layer " + layer_label(c) + ": ";
    if (get_size(c, "channels", 1, false) != 1) throw ConfigError(lbl + "only channels = 1 is supported");
    if (get_bool(c, "bidirectional", false))
        throw ConfigError(lbl + "bidirectional DSS convolves with future inputs and cannot stream");
    static const std::map<std::string, DssAct> acts = {{"gelu", DssAct::gelu}, {"id", DssAct::none}, {"identity", DssAct::none},
                                                       {"none", DssAct::none}, {"linear", DssAct::none}, {"tanh", DssAct::tanh},
                                                       {"relu", DssAct::relu}, {"silu", DssAct::silu}, {"swish", DssAct::silu},
                                                       {"sigmoid", DssAct::sigmoid}};
    if (!acts.count(l->act_name)) throw ConfigError(lbl + "activation '" + l->act_name + "' is not supported");
    l->act = acts.at(l->act_name);
    if (l->postact != "none" && l->postact != "glu") throw ConfigError(lbl + "postact must be none or glu");
    static const char* versions[] = {"softmax", "exp", "exp-re-im", "exp-no-scale", "clip", "clip-no-scale"};
    if (std::find(std::begin(versions), std::end(versions), l->version) == std::end(versions))
        throw ConfigError(lbl + "version '" + l->version + "' is not one of DSSKernel's");

    const auto H = static_cast<std::int64_t>(l->H), N = static_cast<std::int64_t>(l->N);
    const std::string k = l->name + ".kernel.";
    using cd = std::complex<double>;
    std::vector<cd> lambda(l->N);
    std::size_t params = 0;
    if (l->version.find("exp") != std::string::npos) {
        const auto neg_re = p.take(k + "Lambda_log_neg_re", {N});
        const bool log_im = l->version == "exp-re-im";
        const auto im = p.take(k + (log_im ? "Lambda_log_im" : "Lambda_im"), {N});
        for (std::size_t n = 0; n < l->N; ++n) lambda[n] = cd(-std::exp(neg_re[n]), log_im ? std::exp(im[n]) : im[n]);
        params += 2 * l->N;
    } else {
        const auto lam = p.take(k + "Lambda", {N, 2});
        const bool clip = l->version.find("clip") != std::string::npos;
        for (std::size_t n = 0; n < l->N; ++n) lambda[n] = cd(clip ? std::min(lam[2 * n], max_re) : lam[2 * n], lam[2 * n + 1]);
        params += 2 * l->N;
    }
    const bool two_dt = p.has(k + "log_dt") && p.view(k + "log_dt").shape.size() == 2;
    const auto log_dt = two_dt ? p.take(k + "log_dt", {H, 2}) : p.take(k + "log_dt", {H});
    const auto W = p.take(k + "W", {1, H, N, 2});
    const auto Dv = p.take(l->name + ".D", {1, H});
    params += log_dt.size() + W.size() + Dv.size();

    const std::size_t P = l->H * l->N;
    for (auto* v : {&l->ar, &l->ai, &l->wr, &l->wi, &l->pr, &l->pi}) v->assign(P, 0.0f);
    for (std::size_t h = 0; h < l->H; ++h)
        for (std::size_t n = 0; n < l->N; ++n) {
            const cd dtl = two_dt ? cd(lambda[n].real() * std::exp(log_dt[2 * h]), lambda[n].imag() * std::exp(log_dt[2 * h + 1]))
                                  : std::exp(log_dt[h]) * lambda[n];
            if (!(dtl.real() <= 0.0))
                throw ConfigError(lbl + "channel " + std::to_string(h) + ", state " + std::to_string(n) +
                                  ": Re(dt·Lambda) > 0 (or not finite): the kernel grows and its recurrence cannot stream");
            const cd ab = std::exp(dtl);
            cd w(W[2 * (h * l->N + n)], W[2 * (h * l->N + n) + 1]);
            if (l->version == "softmax") {
                const cd x = (std::exp(dtl * static_cast<double>(l->L)) - 1.0) * lambda[n];
                w *= (ab - 1.0) * std::conj(x) / (x * std::conj(x) + eps);
            } else if (l->version.find("no-scale") == std::string::npos) {
                const cd x = lambda[n];
                w *= (ab - 1.0) * std::conj(x) / std::max(std::norm(x), eps);
            }
            const cd pl = l->L ? std::pow(ab, static_cast<double>(l->L)) : cd{};
            if (!std::isfinite(std::abs(w)) || !std::isfinite(std::abs(ab)))
                throw ConfigError(lbl + "channel " + std::to_string(h) + ", state " + std::to_string(n) + ": non-finite kernel");
            const std::size_t i = h * l->N + n;
            l->ar[i] = static_cast<float>(ab.real());
            l->ai[i] = static_cast<float>(ab.imag());
            l->wr[i] = static_cast<float>(w.real());
            l->wi[i] = static_cast<float>(w.imag());
            l->pr[i] = static_cast<float>(pl.real());
            l->pi[i] = static_cast<float>(pl.imag());
        }
    for (double d : Dv) l->D.push_back(static_cast<float>(d));

    l->out_w = l->postact == "glu" ? 2 * l->H : l->H;
    const std::string o = l->name + (l->postact == "glu" ? ".output_linear.0." : ".output_linear.");
    const auto ow = static_cast<std::int64_t>(l->out_w);
    const auto w = p.take(o + "weight", {ow, H});
    const auto b = p.take(o + "bias", {ow}, true);
    l->wt.resize(l->out_w * l->H);
    for (std::size_t r = 0; r < l->out_w; ++r)
        for (std::size_t i = 0; i < l->H; ++i) l->wt[i * l->out_w + r] = static_cast<float>(w[r * l->H + i]);
    for (double v : b) l->bias.push_back(static_cast<float>(v));
    l->params = params + w.size() + b.size();
    return l;
}

}  // namespace ssm::detail
