// H3 — the "Hungry Hungry Hippos" layer of HazyResearch/H3 (`src/models/ssm/h3.py`, class H3, head_dim = 1),
// inference only, tensor names as its state_dict. Per channel h of d_model H:
//   q, k, v = Wq u + bq, Wk u + bk, Wv u + bv
//   shift SSM (`SSKernelShift`): s ← shift(s) + B_h k, k' = C_h·s + D_k k — a causal FIR of N taps
//       K_j = Σ_m C_{m+j} B_m (its convolution view); kept here as the last N values of k
//   diagonal SSM (`SSKernelDiag`, S4D): x ← Ā x + B̄ (k'·v), y = 2 Re(C·x) + D (k'·v)
//   out = output_linear(q ⊙ y).
// Ā, B̄ as `SSKernelDiag._setup_step` (bilinear by default, or zoh), A = f(inv_A_real) + i·A_imag (f = −exp by
// default, `real_type`), dt = exp(log_dt); B, A repeated over H / n_ssm.
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>

#include "layers/layer.hpp"
#include "layers/lti_conv.hpp"
#include "ops/dense.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

using cd = std::complex<double>;

class H3 final : public Layer {
public:
    std::string name, disc, real_type;
    std::size_t H = 0, N = 0, N2 = 0;
    std::size_t params = 0;
    std::vector<float> wqkv, bqkv;  // [H][3H] transposed, [3H]
    std::vector<float> wo, bo;      // [H][H] transposed, [H]
    std::vector<float> K, Dk;       // shift FIR [H][N], [H]
    std::vector<float> ar, ai, br, bi, cr, ci, D;  // diagonal SSM [H][N2] (C doubled), D [H]

    std::size_t in_width() const noexcept override { return H; }
    std::size_t out_width() const noexcept override { return H; }
    std::size_t max_width() const noexcept override { return 3 * H; }
    // the last N values of k per channel (newest first) [H][N], then the diagonal state: real [H][N2], imaginary [H][N2]
    std::size_t shift_size() const noexcept { return H * N; }
    std::size_t diag_size() const noexcept { return 2 * H * N2; }
    std::size_t state_size() const noexcept override { return shift_size() + diag_size(); }
    // qkv (3H) | the diagonal SSM's output (H) | the shift SSM's output, then k'·v (H)
    std::size_t scratch_size(std::size_t max_block) const noexcept override { return max_block * 5 * H; }
    std::size_t param_count() const noexcept override { return params; }
    std::string describe() const override {
        return "h3 '" + name + "' d_model=" + std::to_string(H) + " d_state=" + std::to_string(N) + " disc=" + disc;
    }

    // Shift SSM for channels [h0, h1): k (rows `k_stride` apart) → rows of k' = K ∗ k + D_k k (the last N values of k
    // in `hist`).
    void shift_scan(std::size_t h0, std::size_t h1, const float* k, std::size_t k_stride, float* ks, std::size_t frames,
                    float* state) const noexcept {
        for (std::size_t h = h0; h < h1; ++h) {
            float* hist = state + h * N;
            const float* Kh = K.data() + h * N;
            for (std::size_t t = 0; t < frames; ++t) {
                const float kt = k[t * k_stride + h];
                std::memmove(hist + 1, hist, (N - 1) * sizeof(float));
                hist[0] = kt;
                float sk = 0.0f;
#pragma omp simd reduction(+ : sk)
                for (std::size_t j = 0; j < N; ++j) sk += Kh[j] * hist[j];
                ks[t * H + h] = sk + Dk[h] * kt;
            }
        }
    }

    // Diagonal SSM for channels [h0, h1): rows of kv → rows of 2 Re(C x) + D kv (state: real [H][N2], imag [H][N2]).
    void diag_scan(std::size_t h0, std::size_t h1, const float* kv, float* y, std::size_t frames, float* state) const noexcept {
        for (std::size_t h = h0; h < h1; ++h) {
            float* xr = state + h * N2;
            float* xi = state + H * N2 + h * N2;
            const float* a_r = ar.data() + h * N2; const float* a_i = ai.data() + h * N2;
            const float* b_r = br.data() + h * N2; const float* b_i = bi.data() + h * N2;
            const float* c_r = cr.data() + h * N2; const float* c_i = ci.data() + h * N2;
            for (std::size_t t = 0; t < frames; ++t) {
                const float u = kv[t * H + h];
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (std::size_t n = 0; n < N2; ++n) {
                    const float nr = a_r[n] * xr[n] - a_i[n] * xi[n] + b_r[n] * u;
                    const float ni = a_r[n] * xi[n] + a_i[n] * xr[n] + b_i[n] * u;
                    xr[n] = nr;
                    xi[n] = ni;
                    acc += c_r[n] * nr - c_i[n] * ni;
                }
                y[t * H + h] = acc + D[h] * u;
            }
        }
    }

    // The pointwise parts over rows [0, frames): q, k, v = projections of `in`; for the batch view (whose convolution
    // reads rows of H) k is also copied out to `k` when given.
    void project(const float* in, float* qkv, float* k, std::size_t frames) const noexcept {
        dense_forward(in, qkv, frames, H, 3 * H, wqkv.data(), bqkv.data());
        if (k != nullptr)
            for (std::size_t t = 0; t < frames; ++t) std::copy_n(qkv + t * 3 * H + H, H, k + t * H);
    }
    // k' ← k' ⊙ v (in place)
    void gate_v(const float* qkv, float* ks, std::size_t frames) const noexcept {
        for (std::size_t t = 0; t < frames; ++t) {
            const float* v = qkv + t * 3 * H + 2 * H;
            float* r = ks + t * H;
#pragma omp simd
            for (std::size_t h = 0; h < H; ++h) r[h] *= v[h];
        }
    }
    // out = output_linear(q ⊙ y) (y overwritten)
    void output(const float* qkv, float* y, float* out, std::size_t frames) const noexcept {
        for (std::size_t t = 0; t < frames; ++t) {
            const float* q = qkv + t * 3 * H;
            float* r = y + t * H;
#pragma omp simd
            for (std::size_t h = 0; h < H; ++h) r[h] *= q[h];
        }
        dense_forward(y, out, frames, H, H, wo.data(), bo.data());
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        float* qkv = scratch;                  // frames × 3H
        float* a = scratch + frames * 3 * H;   // y
        float* b = a + frames * H;             // k', then k'·v
        project(in, qkv, nullptr, frames);
        shift_scan(0, H, qkv + H, 3 * H, b, frames, state);  // k read in place from the qkv rows
        gate_v(qkv, b, frames);
        diag_scan(0, H, b, a, frames, state + shift_size());
        output(qkv, a, out, frames);
    }

    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

// Batch view: both SSMs through LtiConv (FFT convolution or their recurrences, by the cost model), the projections
// and gates split over pieces of frames.
class H3Runner final : public LayerRunner {
public:
    H3Runner(const H3& l, BatchContext& ctx)
        : L_(l), pool_(ctx.pool), shift_(ctx, shift_core(l), l.describe() + " (shift SSM)"),
          diag_(ctx, diag_core(l), l.describe() + " (diagonal SSM)") {
        const std::size_t chunk = ctx.options.chunk_frames;
        qkv_ = ctx.reserve(chunk * 3 * l.H);
        a_ = ctx.reserve(chunk * l.H);
        b_ = ctx.reserve(chunk * l.H);
    }
    static LtiCore shift_core(const H3& l) {
        LtiCore c;
        c.channels = l.H;
        c.state_size = l.shift_size();
        c.fir_length = l.N;
        c.recurrence_ns = 0.3 * static_cast<double>(l.N) + 2.0;
        c.scan = [&l](std::size_t h0, std::size_t h1, const float* in, float* y, std::size_t f, float* st) {
            l.shift_scan(h0, h1, in, l.H, y, f, st);
        };
        return c;
    }
    static LtiCore diag_core(const H3& l) {
        LtiCore c;
        c.channels = l.H;
        c.state_size = l.diag_size();
        c.recurrence_ns = 0.9 * static_cast<double>(l.N2) + 2.0;
        c.scan = [&l](std::size_t h0, std::size_t h1, const float* in, float* y, std::size_t f, float* st) { l.diag_scan(h0, h1, in, y, f, st); };
        return c;
    }
    void run(const float* in, float* out, std::size_t frames) override {
        const std::size_t H = L_.H;
        float *qkv = qkv_.get(), *a = a_.get(), *b = b_.get();
        for_pieces(pool_, frames, 256, [&](std::size_t f0, std::size_t n) { L_.project(in + f0 * H, qkv + f0 * 3 * H, a + f0 * H, n); });
        shift_.run(a, b, frames);
        for_pieces(pool_, frames, 256, [&](std::size_t f0, std::size_t n) { L_.gate_v(qkv + f0 * 3 * H, b + f0 * H, n); });
        diag_.run(b, a, frames);
        for_pieces(pool_, frames, 256, [&](std::size_t f0, std::size_t n) { L_.output(qkv + f0 * 3 * H, a + f0 * H, out + f0 * H, n); });
    }
    void reset() override {
        shift_.reset();
        diag_.reset();
    }
    void save(float* dst) const override {
        shift_.save(dst);
        diag_.save(dst + L_.shift_size());
    }
    void load(const float* src) override {
        shift_.load(src);
        diag_.load(src + L_.shift_size());
    }
    void collect_plans(std::vector<LayerPlan>& plans) const override {
        plans.push_back(shift_.plan());
        plans.push_back(diag_.plan());
    }

private:
    const H3& L_;
    ThreadPool& pool_;
    LtiConv shift_, diag_;
    Workspace::Slice qkv_, a_, b_;
};

std::unique_ptr<LayerRunner> H3::make_runner(BatchContext& ctx) const { return std::make_unique<H3Runner>(*this, ctx); }

double real_part(double v, const std::string& type) {
    if (type == "exp") return -std::exp(v);
    if (type == "none") return -v;
    if (type == "relu") return -std::max(v, 0.0) - 1e-4;
    if (type == "sigmoid") return -1.0 / (1.0 + std::exp(-v));
    if (type == "softplus") return -(v > 30 ? v : std::log1p(std::exp(v)));
    return std::nan("");
}

}  // namespace

std::unique_ptr<Layer> make_h3(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "d_state", "head_dim", "disc", "real_type"});
    auto l = std::make_unique<H3>();
    const std::string lab = "layer " + layer_label(c);
    l->name = get_string(c, "name", "", true);
    l->H = get_size(c, "d_model", in_width, false);
    l->N = get_size(c, "d_state", 64, false);
    if (l->N % 2 != 0) throw ConfigError(lab + ": d_state must be even, got " + std::to_string(l->N));
    l->N2 = l->N / 2;
    if (get_size(c, "head_dim", 1, false) != 1) throw ConfigError(lab + ": only head_dim 1 is supported");
    l->disc = get_string(c, "disc", "bilinear");
    l->real_type = get_string(c, "real_type", "exp");
    if (l->disc != "bilinear" && l->disc != "zoh") throw ConfigError(lab + ": disc '" + l->disc + "' is not bilinear or zoh");
    if (std::isnan(real_part(0.5, l->real_type))) throw ConfigError(lab + ": real_type '" + l->real_type + "' is not supported");
    const std::string& nm = l->name;
    const auto H = static_cast<std::int64_t>(l->H), N = static_cast<std::int64_t>(l->N), N2 = static_cast<std::int64_t>(l->N2);
    auto f = [](double v) { return static_cast<float>(v); };

    l->wqkv.assign(l->H * 3 * l->H, 0.0f);
    l->bqkv.assign(3 * l->H, 0.0f);
    const char* proj[] = {"q_proj", "k_proj", "v_proj"};
    for (std::size_t pi = 0; pi < 3; ++pi) {
        auto w = p.take(nm + "." + proj[pi] + ".weight", {H, H});
        auto b = p.take(nm + "." + proj[pi] + ".bias", {H});
        for (std::size_t o = 0; o < l->H; ++o) {
            for (std::size_t i = 0; i < l->H; ++i) l->wqkv[i * 3 * l->H + pi * l->H + o] = f(w[o * l->H + i]);
            l->bqkv[pi * l->H + o] = f(b[o]);
        }
        l->params += w.size() + b.size();
    }
    auto wo = p.take(nm + ".output_linear.weight", {H, H});
    auto bo = p.take(nm + ".output_linear.bias", {H});
    l->wo.resize(l->H * l->H);
    for (std::size_t o = 0; o < l->H; ++o)
        for (std::size_t i = 0; i < l->H; ++i) l->wo[i * l->H + o] = f(wo[o * l->H + i]);
    for (double v : bo) l->bo.push_back(f(v));
    l->params += wo.size() + bo.size();

    // Shift SSM: its FIR taps K_j = Σ_m C_{m+j} B_m (the reference's irfft(conj(B_f)·C_f) over N taps).
    auto sB = p.take(nm + ".ssm_k_kernel.kernel.B", {H, N});
    auto sC = p.take(nm + ".ssm_k_kernel.kernel.C", {1, H, N});
    auto sD = p.take(nm + ".ssm_k_D", {H});
    l->K.assign(l->H * l->N, 0.0f);
    for (std::size_t h = 0; h < l->H; ++h)
        for (std::size_t j = 0; j < l->N; ++j) {
            double s = 0;
            for (std::size_t m = 0; m + j < l->N; ++m) s += sC[h * l->N + m + j] * sB[h * l->N + m];
            l->K[h * l->N + j] = f(s);
        }
    for (double v : sD) l->Dk.push_back(f(v));
    l->params += sB.size() + sC.size() + sD.size();

    // Diagonal SSM (S4D kernel of the H3 repository).
    const auto& av = p.view(nm + ".kernel.kernel.inv_A_real");
    if (av.shape.size() != 2 || av.shape[1] != N2 || av.shape[0] < 1 || H % av.shape[0] != 0)
        throw FormatError(p.label() + ": tensor '" + nm + ".kernel.kernel.inv_A_real': shape must be [n_ssm, " +
                          std::to_string(N2) + "] with n_ssm dividing d_model=" + std::to_string(H));
    const std::int64_t S = av.shape[0];
    auto log_dt = p.take(nm + ".kernel.kernel.log_dt", {H});
    auto Ar = p.take(nm + ".kernel.kernel.inv_A_real", {S, N2});
    auto Ai = p.take(nm + ".kernel.kernel.A_imag", {S, N2});
    auto Bv = p.take(nm + ".kernel.kernel.B", {S, N2, 2});
    auto Cv = p.take(nm + ".kernel.kernel.C", {1, H, N2, 2});
    auto Dv = p.take(nm + ".D", {H});
    l->params += log_dt.size() + Ar.size() + Ai.size() + Bv.size() + Cv.size() + Dv.size();
    for (auto* v : {&l->ar, &l->ai, &l->br, &l->bi, &l->cr, &l->ci}) v->assign(l->H * l->N2, 0.0f);
    for (std::size_t h = 0; h < l->H; ++h) {
        const std::size_t t = h % static_cast<std::size_t>(S);
        const double dt = std::exp(log_dt[h]);
        for (std::size_t n = 0; n < l->N2; ++n) {
            const std::size_t i = t * l->N2 + n, j = h * l->N2 + n;
            const cd A(real_part(Ar[i], l->real_type), Ai[i]);
            const cd B(Bv[2 * i], Bv[2 * i + 1]);
            const cd dtA = dt * A;
            cd dA, dB;
            if (l->disc == "zoh") {
                dA = std::exp(dtA);
                dB = B * (dA - 1.0) / A;
            } else {
                dA = (1.0 + dtA / 2.0) / (1.0 - dtA / 2.0);
                dB = B / (1.0 - dtA / 2.0) * dt;
            }
            const cd C2 = 2.0 * cd(Cv[2 * j], Cv[2 * j + 1]);
            if (!std::isfinite(std::abs(dA)) || !std::isfinite(std::abs(dB)) || !(std::abs(dA) <= 1.0))
                throw ConfigError(lab + ": channel " + std::to_string(h) + ", state " + std::to_string(n) +
                                  ": log_dt/inv_A_real/A_imag/B give a non-finite or non-decaying discretised system");
            l->ar[j] = f(dA.real()); l->ai[j] = f(dA.imag());
            l->br[j] = f(dB.real()); l->bi[j] = f(dB.imag());
            l->cr[j] = f(C2.real()); l->ci[j] = f(C2.imag());
        }
    }
    for (double v : Dv) l->D.push_back(f(v));
    return l;
}

}  // namespace ssm::detail
