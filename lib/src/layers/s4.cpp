// S4 — the diagonal-plus-low-rank (NPLR/DPLR) state-space layer of state-spaces/s4 (`models/s4/s4.py`:
// `SSMKernelDPLR` inside `FFTConv` inside `S4Block`), inference only. Tensors carry the names `S4Block.state_dict()`
// writes (`layer.kernel.{inv_dt, A_real, A_imag, B, C, P, l_kernel}`, `layer.D`, `output_linear.0.*`).
//
// The reference's maths, per channel h (SSM index t = h mod n_ssm, conjugate-extended state of size 2·N/2):
//   A = diag(Λ) − P Pᴴ (rank R),  Λ = −f_re(A_real) − i·f_im(A_imag),  dt = f_dt(inv_dt),
//   bilinear step  x' = (2/dt − A)⁻¹ ((2/dt + A) x + 2 B u)        (`_setup_linear`, `_step_state_linear`),
//   y = Re(C x'),  C = (I − Ā^L)⁻ᵀ C̃ when the saved C is the length-L "C tilde" (`l_kernel` = L > 0, `_setup_step`),
//   then y + D u, the activation, and the output 1×1 linear (GLU by default).
// The convolution view of the reference (Cauchy kernel + Woodbury at the L roots of unity) is the same system's
// first L impulse-response taps, which is what the golden files check.
//
// Here (2/dt − A)⁻¹ is expanded once at load, in double, with Woodbury: Ā = diag(ā) − U Wᵀ, ā_n =
// (2/dt + Λ_n)/(2/dt − Λ_n) (the S4D bilinear diagonal), U = diag(1/m) P K, Wᵀ = Pᴴ diag(4/(m·dt)), m = 2/dt − Λ,
// K = (I_R + Pᴴ diag(1/m) P)⁻¹ (R×R). Each step is then a diagonal update plus R real scalars c = Wᵀx (one
// reduction over the states), O(N) per channel, in float32, without the 2/dt ≈ 10³ scaling of the reference's
// `E`/`D` form (better conditioned; same operator).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on Eigen's AVX-512 paths (false positives;
#pragma GCC diagnostic ignored "-Wuninitialized"        // the complex ones also trip -Wuninitialized at -O2 -g)
#include <Eigen/Dense>

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

using cd = std::complex<double>;

enum class Act { none, gelu, silu, tanh, relu, sigmoid };
enum class Final { none, id, glu };

constexpr std::size_t kMaxRank = 4;

class S4 final : public Layer {
public:
    std::string name;
    std::size_t H = 0, N2 = 0, R = 1, S = 1, l_kernel = 0;
    std::string act_name, final_name, dt_tf, re_tf, im_tf;
    Act act = Act::gelu;
    Final final_kind = Final::glu;
    std::size_t params = 0;
    // float parameters in lanes of W channels: [group][n][lane] (see sidx); U and W per rank: [r][plane]
    std::vector<float> ar, ai, br, bi, cr, ci, ur, ui, wr, wi, D;
    std::vector<float> wt, bias;  // output linear, transposed [H][out_w]
    std::size_t out_w = 0;

    static constexpr std::size_t W = 16;
    std::size_t groups() const noexcept { return (H + W - 1) / W; }
    std::size_t plane() const noexcept { return groups() * N2 * W; }
    std::size_t sidx(std::size_t h, std::size_t n) const noexcept { return (h / W) * N2 * W + n * W + h % W; }

    std::size_t in_width() const noexcept override { return H; }
    std::size_t out_width() const noexcept override { return H; }
    std::size_t max_width() const noexcept override { return final_kind == Final::glu ? 2 * H : H; }
    std::size_t state_size() const noexcept override { return 2 * plane(); }
    std::size_t scratch_size(std::size_t max_block) const noexcept override { return max_block * (H + out_w); }
    std::size_t param_count() const noexcept override { return params; }
    std::string describe() const override {
        return "s4 '" + name + "' H=" + std::to_string(H) + " N=" + std::to_string(2 * N2) + " rank=" + std::to_string(R) +
               " n_ssm=" + std::to_string(S) + " l_kernel=" + std::to_string(l_kernel) + " activation=" + act_name +
               " final_act=" + final_name;
    }

    // The recurrence for channel groups [g0, g1): in rows of H → y rows of H (before the activation). Per frame,
    // first c_r = Σ_n Re(W_rn x_n) over the old state, then x_n ← ā_n x_n − Σ_r U_rn c_r + B̄_n u and y += Re(C_n x_n).
    // Every sum runs in the same order whatever the block size: any blocking is bit-identical to stepping.
    void scan(std::size_t g0, std::size_t g1, const float* in, float* y, std::size_t frames, float* state) const noexcept {
        const std::size_t P = plane();
        for (std::size_t g = g0; g < g1; ++g) {
            const std::size_t hb = g * W, hw = std::min(W, H - hb), base = g * N2 * W;
            float* sr = state + base;
            float* si = state + P + base;
            for (std::size_t t = 0; t < frames; ++t) {
                alignas(64) float u[W] = {}, acc[W] = {}, c[kMaxRank][W] = {};
                const float* ut = in + t * H + hb;
                for (std::size_t l = 0; l < hw; ++l) u[l] = ut[l];
                for (std::size_t r = 0; r < R; ++r) {
                    const float* xr = wr.data() + r * P + base;
                    const float* xi = wi.data() + r * P + base;
                    for (std::size_t n = 0; n < N2; ++n)
#pragma omp simd
                        for (std::size_t l = 0; l < W; ++l)
                            c[r][l] += xr[n * W + l] * sr[n * W + l] - xi[n * W + l] * si[n * W + l];
                }
                for (std::size_t n = 0; n < N2; ++n) {
                    const std::size_t o = base + n * W;
                    alignas(64) float nr[W], ni[W];
#pragma omp simd
                    for (std::size_t l = 0; l < W; ++l) {
                        nr[l] = ar[o + l] * sr[n * W + l] - ai[o + l] * si[n * W + l] + br[o + l] * u[l];
                        ni[l] = ar[o + l] * si[n * W + l] + ai[o + l] * sr[n * W + l] + bi[o + l] * u[l];
                    }
                    for (std::size_t r = 0; r < R; ++r)
#pragma omp simd
                        for (std::size_t l = 0; l < W; ++l) {
                            nr[l] -= ur[r * P + o + l] * c[r][l];
                            ni[l] -= ui[r * P + o + l] * c[r][l];
                        }
#pragma omp simd
                    for (std::size_t l = 0; l < W; ++l) {
                        sr[n * W + l] = nr[l];
                        si[n * W + l] = ni[l];
                        acc[l] += cr[o + l] * nr[l] - ci[o + l] * ni[l];
                    }
                }
                float* yt = y + t * H + hb;
                for (std::size_t l = 0; l < hw; ++l) yt[l] = acc[l] + D[hb + l] * u[l];
            }
        }
    }

    // Activation over y (rows of H), then the output linear (+ GLU) into out.
    void finish(float* y, float* out, std::size_t f0, std::size_t f1, float* z) const noexcept {
        float* yy = y + f0 * H;
        const std::size_t n = (f1 - f0) * H;
        switch (act) {
            case Act::none: break;
            case Act::gelu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) yy[i] = gelu_erf(yy[i]);
                break;
            case Act::silu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) yy[i] = silu(yy[i]);
                break;
            case Act::tanh:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) yy[i] = fast_tanh(yy[i]);
                break;
            case Act::relu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) yy[i] = yy[i] > 0 ? yy[i] : 0.0f;
                break;
            case Act::sigmoid:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) yy[i] = fast_sigmoid(yy[i]);
                break;
        }
        float* oo = out + f0 * H;
        if (final_kind == Final::none) {
            std::copy(yy, yy + n, oo);
            return;
        }
        if (final_kind == Final::id) {
            dense_forward(yy, oo, f1 - f0, H, H, wt.data(), bias.data());
            return;
        }
        dense_glu(yy, oo, f1 - f0, H, wt.data(), bias.data(), z + f0 * 2 * H);
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        float* y = scratch;
        float* z = scratch + frames * H;
        scan(0, groups(), in, y, frames, state);
        finish(y, out, 0, frames, z);
    }

    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

// Batch view: the SSM through LtiConv — FFT convolution with the recurrence's impulse response (the reference's
// own convolution view computes the same kernel by Cauchy + Woodbury), or the blocked recurrence with its channel
// groups split over threads (bit-identical to streaming), by the cost model — then the pointwise part split over
// frames.
class S4Runner final : public LayerRunner {
public:
    S4Runner(const S4& l, BatchContext& ctx) : L_(l), pool_(ctx.pool), chunk_(ctx.options.chunk_frames), conv_(ctx, core(l), l.describe()) {
        y_ = ctx.reserve(chunk_ * L_.H);
        z_ = ctx.reserve(chunk_ * L_.out_w);
    }
    static LtiCore core(const S4& l) {
        LtiCore c;
        c.channels = l.H;
        c.group = S4::W;
        c.state_size = l.state_size();
        c.recurrence_ns = (1.0 + 0.2 * static_cast<double>(l.R)) * static_cast<double>(l.N2) + 2.0;  // 41 ns at N = 64
        c.scan = [&l](std::size_t g0, std::size_t g1, const float* in, float* y, std::size_t frames, float* st) {
            l.scan(g0, g1, in, y, frames, st);
        };
        return c;
    }
    void run(const float* in, float* out, std::size_t frames) override {
        float* y = y_.get();
        conv_.run(in, y, frames);
        const std::size_t piece = 256, pieces = (frames + piece - 1) / piece;
        pool_.parallel_for(pieces, [&](std::size_t b, std::size_t e, std::size_t) {
            L_.finish(y, out, b * piece, std::min(frames, e * piece), z_.get());
        }, 1);
    }
    void reset() override { conv_.reset(); }
    void save(float* dst) const override { conv_.save(dst); }
    void load(const float* src) override { conv_.load(src); }
    void collect_plans(std::vector<LayerPlan>& plans) const override { plans.push_back(conv_.plan()); }

private:
    const S4& L_;
    ThreadPool& pool_;
    std::size_t chunk_;
    LtiConv conv_;
    Workspace::Slice y_, z_;
};

std::unique_ptr<LayerRunner> S4::make_runner(BatchContext& ctx) const { return std::make_unique<S4Runner>(*this, ctx); }

// `param_transform` of s4.py.
double transform(double v, const std::string& tf) {
    if (tf == "none") return v;
    if (tf == "exp") return std::exp(v);
    if (tf == "relu") return std::max(v, 0.0) + 1e-4;
    if (tf == "sigmoid") return 1.0 / (1.0 + std::exp(-v));
    if (tf == "softplus") return v > 30 ? v : std::log1p(std::exp(v));
    return std::nan("");
}

}  // namespace

std::unique_ptr<Layer> make_s4(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "d_state", "rank", "l_kernel", "dt_transform", "real_transform", "imag_transform",
                     "activation", "final_act"});
    auto l = std::make_unique<S4>();
    const std::string lab = "layer " + layer_label(c);
    l->name = get_string(c, "name", "", true);
    l->H = get_size(c, "d_model", in_width, false);
    const std::size_t N = get_size(c, "d_state", 64, false);
    if (N % 2 != 0) throw ConfigError(lab + ": d_state must be even (conjugate pairs), got " + std::to_string(N));
    l->N2 = N / 2;
    l->R = get_size(c, "rank", 1, false);
    if (l->R > kMaxRank) throw ConfigError(lab + ": rank " + std::to_string(l->R) + " is above the supported " + std::to_string(kMaxRank));
    l->dt_tf = get_string(c, "dt_transform", "exp");
    l->re_tf = get_string(c, "real_transform", "exp");
    l->im_tf = get_string(c, "imag_transform", "none");
    for (const auto* tf : {&l->dt_tf, &l->re_tf, &l->im_tf})
        if (std::isnan(transform(0.5, *tf)))
            throw ConfigError(lab + ": transform '" + *tf + "' is not one of none, exp, relu, sigmoid, softplus");
    l->act_name = get_string(c, "activation", "gelu");
    l->final_name = get_string(c, "final_act", "glu");
    const std::map<std::string, Act> acts = {{"none", Act::none}, {"id", Act::none}, {"identity", Act::none},
                                             {"linear", Act::none}, {"gelu", Act::gelu}, {"silu", Act::silu},
                                             {"swish", Act::silu}, {"tanh", Act::tanh}, {"relu", Act::relu},
                                             {"sigmoid", Act::sigmoid}};
    if (!acts.count(l->act_name)) throw ConfigError(lab + ": activation '" + l->act_name + "' is not supported");
    l->act = acts.at(l->act_name);
    if (l->final_name == "glu") l->final_kind = Final::glu;
    else if (l->final_name == "id" || l->final_name == "identity") l->final_kind = Final::id;
    else if (l->final_name == "none") l->final_kind = Final::none;
    else throw ConfigError(lab + ": final_act '" + l->final_name + "' is not supported (glu, id, none)");

    const std::string k = l->name + ".layer.kernel.";
    const auto H = static_cast<std::int64_t>(l->H), N2 = static_cast<std::int64_t>(l->N2), R = static_cast<std::int64_t>(l->R);
    // n_ssm (S) is read off A_real's shape: it must divide H (the reference repeats each SSM H/S times).
    const auto& ar_view = p.view(k + "A_real");
    if (ar_view.shape.size() != 2 || ar_view.shape[1] != N2 || ar_view.shape[0] < 1 || H % ar_view.shape[0] != 0)
        throw FormatError(p.label() + ": tensor '" + k + "A_real': shape must be [n_ssm, " + std::to_string(N2) +
                          "] with n_ssm dividing d_model=" + std::to_string(H));
    const std::int64_t S = ar_view.shape[0];
    l->S = static_cast<std::size_t>(S);
    const auto& dt_view = p.view(k + "inv_dt");
    const bool dt_tied = dt_view.shape.size() == 2 && dt_view.shape[1] == 1;
    auto inv_dt = p.take(k + "inv_dt", {H, dt_tied ? 1 : N2});
    auto A_real = p.take(k + "A_real", {S, N2});
    auto A_imag = p.take(k + "A_imag", {S, N2});
    auto Bv = p.take(k + "B", {1, S, N2, 2});
    auto Cv = p.take(k + "C", {1, H, N2, 2});
    auto Pv = p.take(k + "P", {R, S, N2, 2});
    auto lk = p.take(k + "l_kernel", {});
    auto Dv = p.take(l->name + ".layer.D", {1, H});
    if (lk[0] < 0 || lk[0] != std::floor(lk[0]) || lk[0] > 1e9)
        throw FormatError(p.label() + ": tensor '" + k + "l_kernel' must be a non-negative integer, got " + std::to_string(lk[0]));
    l->l_kernel = static_cast<std::size_t>(lk[0]);
    l->params = inv_dt.size() + A_real.size() + A_imag.size() + Bv.size() + Cv.size() + Pv.size() + Dv.size();

    const std::size_t n2 = l->N2, F = 2 * n2, rk = l->R, Pl = l->plane();
    for (auto* v : {&l->ar, &l->ai, &l->br, &l->bi, &l->cr, &l->ci}) v->assign(Pl, 0.0f);  // padded lanes stay inert
    for (auto* v : {&l->ur, &l->ui, &l->wr, &l->wi}) v->assign(rk * Pl, 0.0f);
    using MatC = Eigen::MatrixXcd;
    for (std::size_t h = 0; h < l->H; ++h) {
        const std::size_t t = h % l->S;
        auto full = [&](std::vector<cd>& v) {  // the conjugate extension [v, conj v] (s4.py `_conj`)
            for (std::size_t n = 0; n < n2; ++n) v[n2 + n] = std::conj(v[n]);
        };
        std::vector<cd> lam(F), dt(F), B(F), Ct(F), m(F);
        std::vector<std::vector<cd>> P(rk, std::vector<cd>(F)), Q(rk, std::vector<cd>(F));
        for (std::size_t n = 0; n < n2; ++n) {
            const std::size_t i = t * n2 + n;
            lam[n] = cd(-transform(A_real[i], l->re_tf), -transform(A_imag[i], l->im_tf));
            dt[n] = transform(inv_dt[dt_tied ? h : h * n2 + n], l->dt_tf);
            B[n] = cd(Bv[2 * i], Bv[2 * i + 1]);
            Ct[n] = cd(Cv[2 * (h * n2 + n)], Cv[2 * (h * n2 + n) + 1]);
            for (std::size_t r = 0; r < rk; ++r) {
                const std::size_t j = (r * l->S + t) * n2 + n;
                P[r][n] = cd(Pv[2 * j], Pv[2 * j + 1]);
            }
        }
        full(lam); full(dt); full(B); full(Ct);
        for (std::size_t r = 0; r < rk; ++r) {
            full(P[r]);
            for (std::size_t n = 0; n < F; ++n) Q[r][n] = std::conj(P[r][n]);
        }
        for (std::size_t n = 0; n < F; ++n) m[n] = 2.0 / dt[n] - lam[n];
        // K = (I + Q diag(1/m) P)⁻¹, U = diag(1/m) P K, Wt = Q diag(4/(m dt)), B̄ = 2B/m − U (Q · 2B/m).
        MatC Kinv = MatC::Identity(static_cast<Eigen::Index>(rk), static_cast<Eigen::Index>(rk));
        for (std::size_t r = 0; r < rk; ++r)
            for (std::size_t s = 0; s < rk; ++s)
                for (std::size_t n = 0; n < F; ++n) Kinv(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(s)) += Q[r][n] * P[s][n] / m[n];
        const MatC K = Kinv.inverse();
        MatC U(static_cast<Eigen::Index>(F), static_cast<Eigen::Index>(rk)), Wt(static_cast<Eigen::Index>(rk), static_cast<Eigen::Index>(F));
        std::vector<cd> abar(F), bbar(F), b0(F);
        for (std::size_t n = 0; n < F; ++n) {
            abar[n] = 4.0 / (m[n] * dt[n]) - 1.0;
            b0[n] = 2.0 * B[n] / m[n];
            for (std::size_t s = 0; s < rk; ++s) {
                cd u = 0;
                for (std::size_t r = 0; r < rk; ++r) u += P[r][n] / m[n] * K(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(s));
                U(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(s)) = u;
                Wt(static_cast<Eigen::Index>(s), static_cast<Eigen::Index>(n)) = Q[s][n] * 4.0 / (m[n] * dt[n]);
            }
        }
        std::vector<cd> qb(rk);
        for (std::size_t r = 0; r < rk; ++r)
            for (std::size_t n = 0; n < F; ++n) qb[r] += Q[r][n] * b0[n];
        for (std::size_t n = 0; n < F; ++n) {
            bbar[n] = b0[n];
            for (std::size_t r = 0; r < rk; ++r) bbar[n] -= U(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(r)) * qb[r];
        }
        // The output vector: C itself, or C = (I − Ā^L)⁻ᵀ C̃ when the saved C is the length-L C̃ (`_setup_step`).
        std::vector<cd> dC = Ct;
        if (l->l_kernel > 0) {
            const auto Fi = static_cast<Eigen::Index>(F);
            MatC dA = -U * Wt;
            for (std::size_t n = 0; n < F; ++n) dA(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n)) += abar[n];
            MatC pw = MatC::Identity(Fi, Fi), base = dA;
            for (std::size_t e = l->l_kernel; e > 0; e >>= 1) {
                if (e & 1) pw = base * pw;
                if (e > 1) base = base * base;
            }
            const MatC lhs = (MatC::Identity(Fi, Fi) - pw).transpose();
            Eigen::VectorXcd rhs(Fi);
            for (std::size_t n = 0; n < F; ++n) rhs(static_cast<Eigen::Index>(n)) = Ct[n];
            const Eigen::VectorXcd x = lhs.fullPivLu().solve(rhs);
            for (std::size_t n = 0; n < F; ++n) dC[n] = x(static_cast<Eigen::Index>(n));
        }
        // Fold the conjugate half onto the kept half: Re(Σ_full v x) = Re Σ_half (v_n + conj v_{n+N/2}) x_n.
        auto fold = [&](auto get) {
            std::vector<cd> o(n2);
            for (std::size_t n = 0; n < n2; ++n) o[n] = get(n) + std::conj(get(n2 + n));
            return o;
        };
        const auto ceff = fold([&](std::size_t n) { return dC[n]; });
        auto f = [](double v) { return static_cast<float>(v); };
        bool finite = true;
        for (std::size_t n = 0; n < n2; ++n) {
            const std::size_t j = l->sidx(h, n);
            l->ar[j] = f(abar[n].real()); l->ai[j] = f(abar[n].imag());
            l->br[j] = f(bbar[n].real()); l->bi[j] = f(bbar[n].imag());
            l->cr[j] = f(ceff[n].real()); l->ci[j] = f(ceff[n].imag());
            finite = finite && std::isfinite(std::abs(abar[n])) && std::isfinite(std::abs(bbar[n])) && std::isfinite(std::abs(ceff[n]));
        }
        for (std::size_t r = 0; r < rk; ++r) {
            const auto weff = fold([&](std::size_t n) { return Wt(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(n)); });
            for (std::size_t n = 0; n < n2; ++n) {
                const std::size_t j = r * Pl + l->sidx(h, n);
                const cd u = U(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(r));
                l->ur[j] = f(u.real()); l->ui[j] = f(u.imag());
                l->wr[j] = f(weff[n].real()); l->wi[j] = f(weff[n].imag());
                finite = finite && std::isfinite(std::abs(u)) && std::isfinite(std::abs(weff[n]));
            }
        }
        if (!finite)
            throw ConfigError(lab + ": channel " + std::to_string(h) + ": inv_dt/A/B/C/P give a non-finite discretised system");
    }
    for (double d : Dv) l->D.push_back(static_cast<float>(d));

    if (l->final_kind != Final::none) {
        const std::size_t ow = l->final_kind == Final::glu ? 2 * l->H : l->H;
        l->out_w = ow;
        auto w = p.take(l->name + ".output_linear.0.weight", {static_cast<std::int64_t>(ow), H});
        auto b = p.take(l->name + ".output_linear.0.bias", {static_cast<std::int64_t>(ow)});
        l->wt.resize(ow * l->H);
        for (std::size_t o = 0; o < ow; ++o)
            for (std::size_t i = 0; i < l->H; ++i) l->wt[i * ow + o] = static_cast<float>(w[o * l->H + i]);
        for (double v : b) l->bias.push_back(static_cast<float>(v));
        l->params += w.size() + b.size();
    }
    return l;
}

}  // namespace ssm::detail
