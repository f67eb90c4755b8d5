// S4D — the diagonal state-space layer of state-spaces/s4 (`models/s4/s4d.py`; `SSMKernelDiag` of `s4.py` for
// the bilinear discretisation), inference only, per channel h and complex state n < N/2:
//   x_t = Ā x_{t-1} + B̄ u_t,  y_t = 2·Re(C·x_t) + D u_t,  then activation, then the output 1×1 conv (+ GLU).
// The conjugate half of each pair is implicit: the factor 2 is folded into C at load.
//
// Recurrent view: states as separate real/imag float arrays in lanes of 16 channels (see `scan`); a block keeps
// each group of states in registers across all its frames.
// Convolution view (Batch): y = K ∗ u + D u with K_k = 2·Re(Σ_n C_n B̄_n Ā_n^k), by FFTW overlap-save with the
// kernel truncated where its tail is below `kernel_tolerance` × (‖K‖₁ + |D|) (always decays: Re(A) < 0).
#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <map>

#include "layers/layer.hpp"
#include "ops/dense.hpp"
#include "ops/fft_conv.hpp"
#include "ops/math.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

using cd = std::complex<double>;

enum class S4Act { none, gelu, silu, tanh, relu };
enum class S4Out { none, linear, glu };

class S4D final : public Layer {
public:
    std::string name;
    std::size_t H = 0, N2 = 0;
    std::string disc_name, act_name, out_name;
    S4Act act = S4Act::gelu;
    S4Out out_kind = S4Out::glu;
    // discretised parameters, [h][n]
    std::vector<cd> dA, dB, C2;  // C2 = 2·C (the conjugate pair)
    std::vector<float> ar, ai, br, bi, cr, ci, D;
    std::vector<float> wt, bias;  // output 1×1 conv, transposed [H][out]
    std::size_t out_w = 0;
    std::size_t params = 0;

    std::size_t in_width() const noexcept override { return H; }
    std::size_t out_width() const noexcept override { return out_kind == S4Out::none ? H : H; }
    std::size_t max_width() const noexcept override { return out_kind == S4Out::glu ? 2 * H : H; }
    std::size_t state_size() const noexcept override { return 2 * plane(); }
    std::size_t scratch_size(std::size_t max_block) const noexcept override { return max_block * (H + out_w); }
    std::size_t param_count() const noexcept override { return params; }
    std::string describe() const override {
        return "s4d '" + name + "' H=" + std::to_string(H) + " N=" + std::to_string(2 * N2) + " disc=" + disc_name +
               " activation=" + act_name + " output=" + out_name;
    }

    // Lane layout of the float state and parameters: channels in groups of W lanes, [group][n][lane], so one
    // vector op updates one state index of W channels and no horizontal sum is ever needed. H is padded to a
    // multiple of W with inert lanes (zero parameters).
    static constexpr std::size_t W = 16;
    std::size_t groups() const noexcept { return (H + W - 1) / W; }
    std::size_t plane() const noexcept { return groups() * N2 * W; }
    std::size_t sidx(std::size_t h, std::size_t n) const noexcept { return (h / W) * N2 * W + n * W + h % W; }

    // The recurrence for channel groups [g0, g1): in rows of H → y rows of H (before activation). Each group keeps
    // G states of W channels in registers across the whole block; per frame only u and y touch memory. The sum
    // over n runs in the same order whatever the block size, so any blocking is bit-identical to stepping.
    void scan(std::size_t g0, std::size_t g1, const float* in, float* y, std::size_t frames, float* state) const noexcept {
        const std::size_t P = plane();
        for (std::size_t g = g0; g < g1; ++g) {
            const std::size_t hb = g * W, hw = std::min(W, H - hb);
            for (std::size_t t = 0; t < frames; ++t)
                for (std::size_t l = 0; l < hw; ++l) y[t * H + hb + l] = D[hb + l] * in[t * H + hb + l];
            std::size_t n = 0;
            for (; n + 2 <= N2; n += 2) run_group<2>(g, n, hb, hw, in, y, frames, state, P);
            for (; n < N2; ++n) run_group<1>(g, n, hb, hw, in, y, frames, state, P);
        }
    }

    template <std::size_t G>
    void run_group(std::size_t g, std::size_t n0, std::size_t hb, std::size_t hw, const float* in, float* y,
                   std::size_t frames, float* state, std::size_t P) const noexcept {
        const std::size_t base = g * N2 * W + n0 * W;
        alignas(64) float pr[G][W], pi[G][W], qr[G][W], qi[G][W], kr[G][W], ki[G][W], sr[G][W], si[G][W];
        for (std::size_t j = 0; j < G; ++j)
            for (std::size_t l = 0; l < W; ++l) {
                const std::size_t i = base + j * W + l;
                pr[j][l] = ar[i]; pi[j][l] = ai[i]; qr[j][l] = br[i]; qi[j][l] = bi[i];
                kr[j][l] = cr[i]; ki[j][l] = ci[i]; sr[j][l] = state[i]; si[j][l] = state[P + i];
            }
        alignas(64) float u[W] = {}, acc[W];
        for (std::size_t t = 0; t < frames; ++t) {
            const float* ut = in + t * H + hb;
            if (hw == W) {
                for (std::size_t l = 0; l < W; ++l) u[l] = ut[l];
            } else {
                for (std::size_t l = 0; l < hw; ++l) u[l] = ut[l];
            }
            for (std::size_t l = 0; l < W; ++l) acc[l] = 0.0f;
            for (std::size_t j = 0; j < G; ++j)
#pragma omp simd
                for (std::size_t l = 0; l < W; ++l) {
                    const float nr = pr[j][l] * sr[j][l] - pi[j][l] * si[j][l] + qr[j][l] * u[l];
                    const float ni = pr[j][l] * si[j][l] + pi[j][l] * sr[j][l] + qi[j][l] * u[l];
                    sr[j][l] = nr;
                    si[j][l] = ni;
                    acc[l] += kr[j][l] * nr - ki[j][l] * ni;
                }
            float* yt = y + t * H + hb;
            if (hw == W) {
                for (std::size_t l = 0; l < W; ++l) yt[l] += acc[l];
            } else {
                for (std::size_t l = 0; l < hw; ++l) yt[l] += acc[l];
            }
        }
        for (std::size_t j = 0; j < G; ++j)
            for (std::size_t l = 0; l < W; ++l) {
                state[base + j * W + l] = sr[j][l];
                state[P + base + j * W + l] = si[j][l];
            }
    }

    // Activation and output projection over rows of y (H wide) → out rows (H wide); z: rows × out_w scratch.
    void finish(float* y, float* out, std::size_t frames, float* z) const noexcept {
        const std::size_t n = frames * H;
        switch (act) {
            case S4Act::none: break;
            case S4Act::gelu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = gelu_erf(y[i]);
                break;
            case S4Act::silu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = silu(y[i]);
                break;
            case S4Act::tanh:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = fast_tanh(y[i]);
                break;
            case S4Act::relu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) y[i] = y[i] > 0 ? y[i] : 0.0f;
                break;
        }
        if (out_kind == S4Out::none) {
            std::copy(y, y + n, out);
            return;
        }
        if (out_kind == S4Out::linear) {
            dense_forward(y, out, frames, H, H, wt.data(), bias.data());
            return;
        }
        dense_glu(y, out, frames, H, wt.data(), bias.data(), z);
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        float* y = scratch;
        float* z = scratch + frames * H;
        scan(0, groups(), in, y, frames, state);
        finish(y, out, frames, z);
    }

    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

// ---- Batch view ------------------------------------------------------------------------------------------------

class S4DRunner final : public LayerRunner {
public:
    S4DRunner(const S4D& layer, BatchContext& ctx) : L_(layer), pool_(ctx.pool), chunk_(ctx.options.chunk_frames) {
        const std::size_t H = L_.H, N2 = L_.N2;
        y_ = ctx.reserve(chunk_ * H);
        z_ = ctx.reserve(chunk_ * L_.out_w);
        state_.assign(L_.state_size(), 0.0f);
        plan_.layer = L_.describe();

        // Kernel length needed per channel so the dropped tail ≤ tol × (‖K‖₁ + |D|).
        const double tol = ctx.options.kernel_tolerance;
        const std::size_t cap = ctx.options.max_kernel;
        std::size_t need = 1;
        bool decays = true;
        for (std::size_t h = 0; h < H && decays; ++h) {
            double ref = std::abs(static_cast<double>(L_.D[h]));
            {   // ‖K‖₁ over a prefix (cheap, in double)
                std::vector<cd> p(N2);
                for (std::size_t n = 0; n < N2; ++n) p[n] = L_.C2[h * N2 + n] * L_.dB[h * N2 + n];
                for (std::size_t k = 0; k < std::min<std::size_t>(cap, 2048); ++k) {
                    double s = 0;
                    for (std::size_t n = 0; n < N2; ++n) {
                        s += p[n].real();
                        p[n] *= L_.dA[h * N2 + n];
                    }
                    ref += std::abs(s);
                }
            }
            auto tail = [&](double len) {
                double s = 0;
                for (std::size_t n = 0; n < N2; ++n) {
                    const double r = std::abs(L_.dA[h * N2 + n]);
                    const double w = std::abs(L_.C2[h * N2 + n] * L_.dB[h * N2 + n]);
                    if (r >= 1.0) return std::numeric_limits<double>::infinity();
                    s += w * std::pow(r, len) / (1.0 - r);
                }
                return s;
            };
            const double target = tol * std::max(ref, 1e-30);
            if (tail(static_cast<double>(cap)) > target) {
                decays = false;
                break;
            }
            std::size_t lo = 1, hi = cap;
            while (lo < hi) {
                const std::size_t mid = (lo + hi) / 2;
                if (tail(static_cast<double>(mid)) <= target) hi = mid; else lo = mid + 1;
            }
            need = std::max(need, lo);
        }
        if (ctx.options.backend == Backend::recurrence) {
            plan_.backend = "recurrence";
            plan_.reason = "forced";
            return;
        }
        if (!decays) {
            plan_.backend = "recurrence";
            plan_.reason = "kernel decays slower than max_kernel=" + std::to_string(cap) +
                           " taps allow; the FFT view would truncate it";
            return;
        }
        Lk_ = need;
        const FftConv::Choice choice = FftConv::choose(Lk_, chunk_, H, ctx.options.fft_layer_bytes);
        // Cost model, in ns per sample per channel, fitted on this project's benchmark (bench/README.md, "Cost
        // model fit"): recurrence ≈ a·N/2 + b; FFT ≈ c·M·log2(M)/outputs per transform + d.
        const double rec_cost = kRecA * static_cast<double>(N2) + kRecB;
        const double fft_cost = choice.cost_ns();
        if (!choose_fft(plan_, ctx.options.backend, Lk_, choice, fft_cost, rec_cost)) return;
        // Taps in double; D is tap 0 (y = (K + Dδ) ∗ u), so the skip costs nothing.
        conv_ = std::make_unique<FftConv>(ctx, H, 1, choice, [&](std::size_t h, double* k) {
            std::vector<cd> p(N2);
            for (std::size_t n = 0; n < N2; ++n) p[n] = L_.C2[h * N2 + n] * L_.dB[h * N2 + n];
            for (std::size_t t = 0; t < Lk_; ++t) {
                double s = t == 0 ? static_cast<double>(L_.D[h]) : 0.0;
                for (std::size_t n = 0; n < N2; ++n) {
                    s += p[n].real();
                    p[n] *= L_.dA[h * N2 + n];
                }
                k[t] = s;
            }
        });
        free_.assign(H * N2, cd{});
    }

    // Constants of the cost model (ns per sample per channel, one core), fitted by least squares on the
    // BM_S4DConv sweep (bench/README.md, "Cost model fit"): recurrence = a·N/2 + b.
    static constexpr double kRecA = 0.29, kRecB = 1.8;
    // Recurrence: frames per tile, so a group's rows of input and output stay in cache across its state pairs.
    static constexpr std::size_t kTile = 1024;

    void run(const float* in, float* out, std::size_t frames) override {
        const std::size_t H = L_.H;
        if (!conv_) {
            pool_.parallel_for(L_.groups(), [&](std::size_t g0, std::size_t g1, std::size_t) {
                for (std::size_t t0 = 0; t0 < frames; t0 += kTile)
                    L_.scan(g0, g1, in + t0 * H, y_.get() + t0 * H, std::min(kTile, frames - t0), state_.data());
            }, 1);
        } else {
            conv_->run(in, H, y_.get(), H, frames);
            if (free_left_ > 0) {
                pool_.parallel_for(H, [&](std::size_t h0, std::size_t h1, std::size_t) { inject_free(h0, h1, frames); });
                free_left_ = free_left_ > frames ? free_left_ - frames : 0;
            }
        }
        // activation + output projection: pieces of frames, a few per thread so they balance
        const std::size_t piece = std::clamp<std::size_t>(frames / (4 * pool_.size()), 64, 2048);
        const std::size_t pieces = (frames + piece - 1) / piece;
        pool_.parallel_for(pieces, [&](std::size_t b, std::size_t e, std::size_t) {
            for (std::size_t p = b; p < e; ++p) {
                const std::size_t f0 = p * piece, f1 = std::min(frames, f0 + piece);
                L_.finish(y_.get() + f0 * H, out + f0 * H, f1 - f0, z_.get() + f0 * L_.out_w);
            }
        }, 1);
    }

    void reset() override {
        std::fill(state_.begin(), state_.end(), 0.0f);
        if (conv_) conv_->clear_history();
        std::fill(free_.begin(), free_.end(), cd{});
        free_left_ = 0;
    }

    void save(float* dst) const override {
        if (!conv_) {
            std::copy(state_.begin(), state_.end(), dst);
            return;
        }
        // The recurrent state is what the history of the last Lk−1 inputs (and any injected state) left behind.
        const std::size_t H = L_.H, N2 = L_.N2, hl = conv_->history_length();
        for (std::size_t h = 0; h < H; ++h) {
            const float* hist = conv_->history(h);
            for (std::size_t n = 0; n < N2; ++n) {
                const cd a = L_.dA[h * N2 + n], b = L_.dB[h * N2 + n];
                cd x = free_left_ > 0 ? free_[h * N2 + n] : cd{};
                cd acc{};
                for (std::size_t k = 0; k < hl; ++k) acc = acc * a + static_cast<double>(hist[k]);  // oldest first
                x += acc * b;
                dst[L_.sidx(h, n)] = static_cast<float>(x.real());
                dst[L_.plane() + L_.sidx(h, n)] = static_cast<float>(x.imag());
            }
        }
    }

    void load(const float* src) override {
        if (!conv_) {
            std::copy(src, src + state_.size(), state_.begin());
            return;
        }
        const std::size_t H = L_.H, N2 = L_.N2;
        conv_->clear_history();
        for (std::size_t h = 0; h < H; ++h)
            for (std::size_t n = 0; n < N2; ++n)
                free_[h * N2 + n] = cd(src[L_.sidx(h, n)], src[L_.plane() + L_.sidx(h, n)]);
        free_left_ = Lk_;
    }

    void collect_plans(std::vector<LayerPlan>& plans) const override { plans.push_back(plan_); }

private:
    // A loaded recurrent state decays through the first Lk outputs after the load.
    void inject_free(std::size_t h0, std::size_t h1, std::size_t frames) {
        const std::size_t H = L_.H, N2 = L_.N2, m = std::min(free_left_, frames);
        float* y = y_.get();
        for (std::size_t h = h0; h < h1; ++h)
            for (std::size_t n = 0; n < N2; ++n) {
                cd x = free_[h * N2 + n];
                const cd a = L_.dA[h * N2 + n], c = L_.C2[h * N2 + n];
                for (std::size_t t = 0; t < m; ++t) {
                    x *= a;
                    y[t * H + h] += static_cast<float>((c * x).real());
                }
                free_[h * N2 + n] = x;
            }
    }

    const S4D& L_;
    ThreadPool& pool_;
    std::size_t chunk_;
    Workspace::Slice y_, z_;
    std::vector<float> state_;
    LayerPlan plan_;
    std::size_t Lk_ = 0;
    std::unique_ptr<FftConv> conv_;  // null: the recurrence
    std::vector<cd> free_;           // an injected (loaded) state, decaying
    std::size_t free_left_ = 0;
};

std::unique_ptr<LayerRunner> S4D::make_runner(BatchContext& ctx) const { return std::make_unique<S4DRunner>(*this, ctx); }

}  // namespace

std::unique_ptr<Layer> make_s4d(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "d_state", "disc", "activation", "output"});
    auto l = std::make_unique<S4D>();
    l->name = get_string(c, "name", "", true);
    l->H = get_size(c, "d_model", in_width, false);
    const std::size_t N = get_size(c, "d_state", 64, false);
    if (N % 2 != 0) throw ConfigError("layer " + layer_label(c) + ": d_state must be even (conjugate pairs), got " + std::to_string(N));
    l->N2 = N / 2;
    l->disc_name = get_string(c, "disc", "zoh");
    l->act_name = get_string(c, "activation", "gelu");
    l->out_name = get_string(c, "output", "glu");
    if (l->disc_name != "zoh" && l->disc_name != "bilinear")
        throw ConfigError("layer " + layer_label(c) + ": disc '" + l->disc_name + "' is not supported (zoh, bilinear)");
    const std::map<std::string, S4Act> acts = {{"none", S4Act::none}, {"id", S4Act::none}, {"identity", S4Act::none},
                                               {"gelu", S4Act::gelu}, {"silu", S4Act::silu}, {"swish", S4Act::silu},
                                               {"tanh", S4Act::tanh}, {"relu", S4Act::relu}};
    if (!acts.count(l->act_name)) throw ConfigError("layer " + layer_label(c) + ": activation '" + l->act_name + "' is not supported");
    l->act = acts.at(l->act_name);
    if (l->out_name == "glu") l->out_kind = S4Out::glu;
    else if (l->out_name == "linear") l->out_kind = S4Out::linear;
    else if (l->out_name == "none") l->out_kind = S4Out::none;
    else throw ConfigError("layer " + layer_label(c) + ": output '" + l->out_name + "' is not supported (glu, linear, none)");

    const auto H = static_cast<std::int64_t>(l->H), N2 = static_cast<std::int64_t>(l->N2);
    const std::string& nm = l->name;
    auto log_dt = p.take(nm + ".kernel.log_dt", {H});
    auto log_A_real = p.take(nm + ".kernel.log_A_real", {H, N2});
    auto A_imag = p.take(nm + ".kernel.A_imag", {H, N2});
    auto Cv = p.take(nm + ".kernel.C", {H, N2, 2});
    std::vector<double> Bv;
    if (p.has(nm + ".kernel.B")) Bv = p.take(nm + ".kernel.B", {H, N2, 2});
    auto Dv = p.take(nm + ".D", {H});
    l->params = static_cast<std::size_t>(H + 4 * H * N2 + H + (Bv.empty() ? 0 : 2 * H * N2));

    const std::size_t n = l->H * l->N2;
    l->dA.resize(n);
    l->dB.resize(n);
    l->C2.resize(n);
    for (std::size_t h = 0; h < l->H; ++h) {
        const double dt = std::exp(log_dt[h]);
        for (std::size_t k = 0; k < l->N2; ++k) {
            const std::size_t i = h * l->N2 + k;
            const cd A(-std::exp(log_A_real[i]), A_imag[i]);
            const cd B = Bv.empty() ? cd(1.0, 0.0) : cd(Bv[2 * i], Bv[2 * i + 1]);
            const cd dtA = dt * A;
            if (l->disc_name == "zoh") {
                l->dA[i] = std::exp(dtA);
                l->dB[i] = (l->dA[i] - 1.0) / A * B;
            } else {
                l->dA[i] = (1.0 + dtA / 2.0) / (1.0 - dtA / 2.0);
                l->dB[i] = dt / (1.0 - dtA / 2.0) * B;
            }
            l->C2[i] = 2.0 * cd(Cv[2 * i], Cv[2 * i + 1]);
            const bool finite = std::isfinite(std::abs(l->dA[i])) && std::isfinite(std::abs(l->dB[i])) &&
                                std::isfinite(std::abs(l->C2[i]));
            // |Ā| ≤ 1 always holds mathematically (Re A < 0, dt > 0); it fails only when float range is exceeded.
            if (!finite || !(std::abs(l->dA[i]) <= 1.0))
                throw ConfigError("layer " + layer_label(c) + ": channel " + std::to_string(h) + ", state " + std::to_string(k) +
                                  ": log_dt/log_A_real/A_imag/B/C give a non-finite or non-decaying discretised system "
                                  "(values beyond double range)");
        }
    }
    auto f = [](double v) { return static_cast<float>(v); };
    const std::size_t P = l->plane();
    for (auto* v : {&l->ar, &l->ai, &l->br, &l->bi, &l->cr, &l->ci}) v->assign(P, 0.0f);  // padded lanes stay inert
    for (std::size_t h = 0; h < l->H; ++h)
        for (std::size_t k = 0; k < l->N2; ++k) {
            const std::size_t i = h * l->N2 + k, j = l->sidx(h, k);
            l->ar[j] = f(l->dA[i].real()); l->ai[j] = f(l->dA[i].imag());
            l->br[j] = f(l->dB[i].real()); l->bi[j] = f(l->dB[i].imag());
            l->cr[j] = f(l->C2[i].real()); l->ci[j] = f(l->C2[i].imag());
        }
    for (double d : Dv) l->D.push_back(f(d));

    if (l->out_kind != S4Out::none) {
        const std::size_t ow = l->out_kind == S4Out::glu ? 2 * l->H : l->H;
        l->out_w = ow;
        auto w = p.take(nm + ".output_linear.0.weight", {static_cast<std::int64_t>(ow), H}, true);
        auto b = p.take(nm + ".output_linear.0.bias", {static_cast<std::int64_t>(ow)});
        l->wt.resize(ow * l->H);
        for (std::size_t o = 0; o < ow; ++o)
            for (std::size_t i = 0; i < l->H; ++i) l->wt[i * ow + o] = f(w[o * l->H + i]);
        for (double v : b) l->bias.push_back(f(v));
        l->params += w.size() + b.size();
    }
    return l;
}

}  // namespace ssm::detail
