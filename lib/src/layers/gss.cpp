// GSS — the Gated State Space block of Mehta et al. 2022 ("Long Range Language Modeling via Gated State Spaces"),
// as the public implementation lucidrains/gated-state-spaces-pytorch (PyPI `gated-state-spaces-pytorch` 0.1.0,
// `gss.py`: GSS with its DSS) computes it, causal (reverse_seq = False), inference only, tensor names as its
// state_dict. Per frame, x of width D:
//   x̂ = LayerNorm(x);  u = GELU(W_u x̂) (E wide), v = GELU(W_v x̂) (H wide)
//   DSS: v̂ = LayerNorm_dss(v); per channel h and state n < N (N complex states, Λ shared by all channels,
//        Λ_n = −exp(Λ_real,n) + i·exp(Λ_imag,n) (or + i·Λ_imag,n)):  s_hn ← e^{Λ_n} s_hn + v̂_h,
//        y_h = Re(Σ_n C_hn (e^{Λ_n} − 1)/Λ_n · s_hn) + D_h v̂_h   (the kernel K_l = Re Σ C'(e^Λ)^l, dt = 1)
//   out = W_out ((W_gate y) ⊙ u) + b_out + x.
// No conjugate pairs here: the reference takes the real part of a sum over all N states (no factor 2).
#include <algorithm>
#include <cmath>
#include <complex>

#include "layers/layer.hpp"
#include "layers/lti_conv.hpp"
#include "ops/dense.hpp"
#include "ops/math.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

using cd = std::complex<double>;

class Gss final : public Layer {
public:
    std::string name;
    std::size_t D = 0, E = 0, H = 0, N = 0;
    bool imag_exp = true;
    std::size_t params = 0;
    float eps = 1e-5f;
    std::vector<float> ln_w, ln_b, dss_ln_w, dss_ln_b, pD;
    std::vector<float> wuv, zeros_uv;        // [D][E+H] transposed (to_u | to_v), no bias
    std::vector<float> wg, zeros_e, wo, bo;  // to_gate [H][E] transposed; to_out [E][D] transposed, bias [D]
    std::vector<float> ar, ai, cr, ci;       // e^Λ [N]; C' [H][N]

    std::size_t in_width() const noexcept override { return D; }
    std::size_t out_width() const noexcept override { return D; }
    std::size_t max_width() const noexcept override { return std::max({D, E + H}); }
    std::size_t state_size() const noexcept override { return 2 * H * N; }
    // x̂ (D) | u,v (E+H) | v̂ (H) | y (H) | gate (E)
    std::size_t scratch_size(std::size_t max_block) const noexcept override { return max_block * (D + 2 * E + 3 * H); }
    std::size_t param_count() const noexcept override { return params; }
    std::string describe() const override {
        return "gss '" + name + "' dim=" + std::to_string(D) + " hidden=" + std::to_string(E) + " dss_H=" + std::to_string(H) +
               " dss_N=" + std::to_string(N);
    }

    // Rows [0, frames): x̂ = LN(x), u|v = GELU(W x̂), v̂ = LN_dss(v).
    void pre(const float* in, float* xn, float* uv, float* vn, std::size_t frames) const noexcept {
        layernorm_forward(in, xn, frames, D, ln_w.data(), ln_b.data(), eps);
        dense_forward(xn, uv, frames, D, E + H, wuv.data(), zeros_uv.data());
        const std::size_t nuv = frames * (E + H);
#pragma omp simd
        for (std::size_t i = 0; i < nuv; ++i) uv[i] = gelu_erf(uv[i]);
        for (std::size_t t = 0; t < frames; ++t)
            layernorm_forward(uv + t * (E + H) + E, vn + t * H, 1, H, dss_ln_w.data(), dss_ln_b.data(), eps);
    }

    // The DSS for channels [h0, h1): rows of v̂ → rows of y (state: real [H][N], imaginary [H][N]).
    void scan(std::size_t h0, std::size_t h1, const float* vn, float* y, std::size_t frames, float* state) const noexcept {
        float* sr = state;
        float* si = state + H * N;
        for (std::size_t h = h0; h < h1; ++h) {
            float* xr = sr + h * N;
            float* xi = si + h * N;
            const float* c_r = cr.data() + h * N;
            const float* c_i = ci.data() + h * N;
            for (std::size_t t = 0; t < frames; ++t) {
                const float u = vn[t * H + h];
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (std::size_t n = 0; n < N; ++n) {
                    const float nr = ar[n] * xr[n] - ai[n] * xi[n] + u;
                    const float ni = ar[n] * xi[n] + ai[n] * xr[n];
                    xr[n] = nr;
                    xi[n] = ni;
                    acc += c_r[n] * nr - c_i[n] * ni;
                }
                y[t * H + h] = acc + pD[h] * u;
            }
        }
    }

    // Rows [0, frames): out = W_out((W_gate y) ⊙ u) + b_out + x; g: frames × E scratch.
    void post(const float* in, const float* uv, const float* y, float* g, float* out, std::size_t frames) const noexcept {
        dense_forward(y, g, frames, H, E, wg.data(), zeros_e.data());
        for (std::size_t t = 0; t < frames; ++t) {
            float* gt = g + t * E;
            const float* ut = uv + t * (E + H);
#pragma omp simd
            for (std::size_t i = 0; i < E; ++i) gt[i] *= ut[i];
        }
        dense_forward(g, out, frames, E, D, wo.data(), bo.data());
        const std::size_t n = frames * D;
#pragma omp simd
        for (std::size_t i = 0; i < n; ++i) out[i] += in[i];
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        float* xn = scratch;
        float* uv = xn + frames * D;
        float* vn = uv + frames * (E + H);
        float* y = vn + frames * H;
        float* g = y + frames * H;
        pre(in, xn, uv, vn, frames);
        scan(0, H, vn, y, frames, state);
        post(in, uv, y, g, out, frames);
    }

    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

// Batch view: the DSS through LtiConv (FFT convolution or its recurrence, by the cost model), the norms,
// projections and gate split over pieces of frames.
class GssRunner final : public LayerRunner {
public:
    GssRunner(const Gss& l, BatchContext& ctx) : L_(l), pool_(ctx.pool), conv_(ctx, core(l), l.describe()) {
        const std::size_t chunk = ctx.options.chunk_frames;
        xn_ = ctx.reserve(chunk * l.D);
        uv_ = ctx.reserve(chunk * (l.E + l.H));
        vn_ = ctx.reserve(chunk * l.H);
        y_ = ctx.reserve(chunk * l.H);
        g_ = ctx.reserve(chunk * l.E);
    }
    static LtiCore core(const Gss& l) {
        LtiCore c;
        c.channels = l.H;
        c.state_size = l.state_size();
        c.recurrence_ns = 0.45 * static_cast<double>(l.N) + 2.0;
        c.scan = [&l](std::size_t h0, std::size_t h1, const float* in, float* y, std::size_t f, float* st) { l.scan(h0, h1, in, y, f, st); };
        return c;
    }
    void run(const float* in, float* out, std::size_t frames) override {
        const std::size_t D = L_.D, E = L_.E, H = L_.H;
        for_pieces(pool_, frames, 256, [&](std::size_t f0, std::size_t n) {
            L_.pre(in + f0 * D, xn_.get() + f0 * D, uv_.get() + f0 * (E + H), vn_.get() + f0 * H, n);
        });
        conv_.run(vn_.get(), y_.get(), frames);
        for_pieces(pool_, frames, 256, [&](std::size_t f0, std::size_t n) {
            L_.post(in + f0 * D, uv_.get() + f0 * (E + H), y_.get() + f0 * H, g_.get() + f0 * E, out + f0 * D, n);
        });
    }
    void reset() override { conv_.reset(); }
    void save(float* dst) const override { conv_.save(dst); }
    void load(const float* src) override { conv_.load(src); }
    void collect_plans(std::vector<LayerPlan>& plans) const override { plans.push_back(conv_.plan()); }

private:
    const Gss& L_;
    ThreadPool& pool_;
    LtiConv conv_;
    Workspace::Slice xn_, uv_, vn_, y_, g_;
};

std::unique_ptr<LayerRunner> Gss::make_runner(BatchContext& ctx) const { return std::make_unique<GssRunner>(*this, ctx); }

std::vector<float> transposed(const std::vector<double>& w, std::size_t rows, std::size_t cols) {
    std::vector<float> t(rows * cols);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c) t[c * rows + r] = static_cast<float>(w[r * cols + c]);
    return t;
}

}  // namespace

std::unique_ptr<Layer> make_gss(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"dim", "lambda_imag_exp"});
    auto l = std::make_unique<Gss>();
    const std::string lab = "layer " + layer_label(c);
    l->name = get_string(c, "name", "", true);
    l->D = get_size(c, "dim", in_width, false);
    l->imag_exp = get_bool(c, "lambda_imag_exp", true);
    const std::string& nm = l->name;
    // E (dim × expansion), H (dss_kernel_H) and N (dss_kernel_N) are read off the tensors.
    const auto& vu = p.view(nm + ".to_u.0.weight");
    const auto& vv = p.view(nm + ".to_v.0.weight");
    const auto& vl = p.view(nm + ".dss.Lambda_real");
    if (vu.shape.size() != 2 || vv.shape.size() != 2 || vl.shape.size() != 1 || vu.shape[0] < 1 || vv.shape[0] < 1 || vl.shape[0] < 1)
        throw FormatError(p.label() + ": tensors '" + nm + ".to_u.0.weight' [E, dim], '" + nm + ".to_v.0.weight' [H, dim] and '" +
                          nm + ".dss.Lambda_real' [N] must be 2-D, 2-D and 1-D");
    l->E = static_cast<std::size_t>(vu.shape[0]);
    l->H = static_cast<std::size_t>(vv.shape[0]);
    l->N = static_cast<std::size_t>(vl.shape[0]);
    const auto D = static_cast<std::int64_t>(l->D), E = static_cast<std::int64_t>(l->E), H = static_cast<std::int64_t>(l->H),
               N = static_cast<std::int64_t>(l->N);
    auto fl = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
    l->ln_w = fl(p.take(nm + ".norm.weight", {D}));
    l->ln_b = fl(p.take(nm + ".norm.bias", {D}));
    const auto wu = p.take(nm + ".to_u.0.weight", {E, D});
    const auto wv = p.take(nm + ".to_v.0.weight", {H, D});
    l->wuv.assign(l->D * (l->E + l->H), 0.0f);
    for (std::size_t i = 0; i < l->D; ++i) {
        for (std::size_t o = 0; o < l->E; ++o) l->wuv[i * (l->E + l->H) + o] = static_cast<float>(wu[o * l->D + i]);
        for (std::size_t o = 0; o < l->H; ++o) l->wuv[i * (l->E + l->H) + l->E + o] = static_cast<float>(wv[o * l->D + i]);
    }
    l->zeros_uv.assign(l->E + l->H, 0.0f);
    l->dss_ln_w = fl(p.take(nm + ".dss.norm.weight", {H}));
    l->dss_ln_b = fl(p.take(nm + ".dss.norm.bias", {H}));
    const auto lr = p.take(nm + ".dss.Lambda_real", {N});
    const auto li = p.take(nm + ".dss.Lambda_imag", {N});
    const auto Cr = p.take(nm + ".dss.C_real", {H, N});
    const auto Ci = p.take(nm + ".dss.C_imag", {H, N});
    l->pD = fl(p.take(nm + ".dss.param_D", {H}));
    l->wg = transposed(p.take(nm + ".to_gate.weight", {E, H}), l->E, l->H);
    l->zeros_e.assign(l->E, 0.0f);
    l->wo = transposed(p.take(nm + ".to_out.weight", {D, E}), l->D, l->E);
    l->bo = fl(p.take(nm + ".to_out.bias", {D}));
    l->params = 4 * l->D + l->E * l->D + l->H * l->D + 3 * l->H + 2 * l->N + 2 * l->H * l->N + l->E * l->H + l->D * l->E;

    l->ar.resize(l->N);
    l->ai.resize(l->N);
    l->cr.resize(l->H * l->N);
    l->ci.resize(l->H * l->N);
    std::vector<cd> scale(l->N);
    for (std::size_t n = 0; n < l->N; ++n) {
        const cd lam(-std::exp(lr[n]), l->imag_exp ? std::exp(li[n]) : li[n]);
        const cd a = std::exp(lam);
        if (!std::isfinite(std::abs(a)) || !std::isfinite(std::abs(lam)) || std::abs(lam) == 0.0)
            throw ConfigError(lab + ": state " + std::to_string(n) + ": Lambda_real/Lambda_imag give a non-finite system");
        l->ar[n] = static_cast<float>(a.real());
        l->ai[n] = static_cast<float>(a.imag());
        scale[n] = (a - 1.0) / lam;
    }
    for (std::size_t h = 0; h < l->H; ++h)
        for (std::size_t n = 0; n < l->N; ++n) {
            const cd cc = cd(Cr[h * l->N + n], Ci[h * l->N + n]) * scale[n];
            l->cr[h * l->N + n] = static_cast<float>(cc.real());
            l->ci[h * l->N + n] = static_cast<float>(cc.imag());
        }
    return l;
}

}  // namespace ssm::detail
