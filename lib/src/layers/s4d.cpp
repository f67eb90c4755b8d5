// S4D — the diagonal state-space layer of state-spaces/s4 (`models/s4/s4d.py`; `SSMKernelDiag` of `s4.py` for
// the bilinear discretisation), inference only, per channel h and complex state n < N/2:
//   x_t = Ā x_{t-1} + B̄ u_t,  y_t = 2·Re(C·x_t) + D u_t,  then activation, then the output 1×1 conv (+ GLU).
// The conjugate half of each pair is implicit: the factor 2 is folded into C at load.
//
// Recurrent view: states as separate real/imag float arrays in lanes of 16 channels (see `scan`); a block keeps
// each group of states in registers across all its frames.
// Convolution view (Batch): y = K ∗ u + D u with K_k = 2·Re(Σ_n C_n B̄_n Ā_n^k), by FFTW overlap-save with the
// kernel truncated where its tail is below `kernel_tolerance` × (‖K‖₁ + |D|) (always decays: Re(A) < 0).
#include <fftw3.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <map>
#include <mutex>

#include "layers/layer.hpp"
#include "ops/dense.hpp"
#include "ops/math.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

using cd = std::complex<double>;

enum class S4Act { none, gelu, silu, tanh, relu };
enum class S4Out { none, linear, glu };

std::mutex& fftw_planner_mutex() {
    static std::mutex m;  // FFTW's planner is not thread-safe; execution is.
    return m;
}

struct FftwFree {
    void operator()(void* p) const noexcept { fftwf_free(p); }
};
template <class T>
using FftwBuf = std::unique_ptr<T[], FftwFree>;
template <class T>
FftwBuf<T> fftw_buf(std::size_t n) {
    auto* p = static_cast<T*>(fftwf_malloc(sizeof(T) * std::max<std::size_t>(n, 1)));
    if (p == nullptr) throw std::bad_alloc();
    std::memset(static_cast<void*>(p), 0, sizeof(T) * std::max<std::size_t>(n, 1));
    return FftwBuf<T>(p);
}

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
        hl_ = Lk_ - 1;
        // FFT size: the cheapest per output sample (M·log2 M / outputs per transform) among sizes 2^a·3^b·5^c above
        // the kernel (FFTW is as fast on those as on powers of two), within the kernel-spectra memory budget (forced
        // fft: the cheapest of the smallest few when none fits). A chunk is cut into equal hops, so a hop just short
        // of the chunk would cost two transforms: outputs per transform = chunk / ⌈chunk / hop⌉.
        const double budget = ctx.options.fft_layer_bytes;
        auto spectra_bytes = [&](std::size_t m) { return static_cast<double>(H) * static_cast<double>(spec_stride(m)) * 8.0; };
        auto hop_of = [&](std::size_t m) {
            const std::size_t h = std::min(m - hl_, chunk_);
            return h > 16 ? h / 16 * 16 : h;  // windows start on 64-byte boundaries
        };
        auto outputs = [&](std::size_t m) {
            const std::size_t h = hop_of(m);
            return static_cast<double>(chunk_) / static_cast<double>((chunk_ + h - 1) / h);
        };
        // Work units per output: M·log2 M per transform pair, times a cache factor — beyond 2^14 floats a
        // transform's buffers and twiddles no longer stay in L2 (measured: 16% slower per doubling).
        auto per_output = [&](std::size_t m) {
            const double mm = static_cast<double>(m);
            return mm * std::log2(mm) / outputs(m) * (1.0 + 0.16 * std::max(0.0, std::log2(mm / 16384.0)));
        };
        const std::size_t lo = Lk_ + Lk_ / 8 + 16, hi = 16 * (Lk_ + chunk_);  // at least a few outputs per transform
        std::vector<std::size_t> sizes;
        for (std::size_t p5 = 1; p5 <= 25; p5 *= 5)
            for (std::size_t p3 = 1; p3 <= 27; p3 *= 3)
                for (std::size_t m = 16 * p3 * p5; m <= hi; m *= 2)
                    if (m >= lo) sizes.push_back(m);
        std::sort(sizes.begin(), sizes.end());
        std::size_t best = 0;
        for (std::size_t m : sizes)
            if (spectra_bytes(m) <= budget && (best == 0 || per_output(m) < per_output(best))) best = m;
        M_ = best != 0 ? best : sizes.front();
        hop_ = hop_of(M_);
        // Cost model, in ns per sample per channel, fitted on this project's benchmark (bench/README.md, "Cost
        // model fit"): recurrence ≈ a·N/2 + b; FFT ≈ c·M·log2(M)/outputs per transform + d.
        const double rec_cost = kRecA * static_cast<double>(N2) + kRecB;
        const double fft_cost = kFftC * per_output(M_) + kFftD;
        const double mem = spectra_bytes(M_);
        if (ctx.options.backend == Backend::automatic && (fft_cost >= rec_cost || mem > budget)) {
            plan_.backend = "recurrence";
            plan_.reason = "cost model: recurrence " + fmt(rec_cost) + " ns/sample/channel vs FFT " + fmt(fft_cost) +
                           (mem > budget ? " (and FFT kernel spectra would need " + fmt(mem / 1e6) + " MB)" : "");
            plan_.kernel_length = Lk_;
            plan_.fft_size = M_;
            plan_.outputs_per_fft = static_cast<std::size_t>(outputs(M_));
            return;
        }
        use_fft_ = true;
        plan_.backend = "fft";
        plan_.reason = ctx.options.backend == Backend::fft ? "forced" : "cost model: FFT " + fmt(fft_cost) +
                       " ns/sample/channel vs recurrence " + fmt(rec_cost);
        plan_.kernel_length = Lk_;
        plan_.fft_size = M_;
        plan_.outputs_per_fft = static_cast<std::size_t>(outputs(M_));
        // Each channel of xc_ is [pad | hl history | chunk]: the pad makes every full window of M inputs ending at a
        // hop boundary lie inside xc_, starting on a 64-byte boundary, so no window is copied (pad + hl = M − hop).
        pad_ = M_ - hop_ - hl_;
        xs_ = (pad_ + hl_ + chunk_ + 15) / 16 * 16 + 16;  // +16 floats: power-of-two strides alias in the caches
        xc_ = ctx.reserve(H * xs_);
        // channel-major outputs: in the GLU's scratch when it is wide enough (free until `finish`), else their own
        ys_ = chunk_ + 16;
        yc_ = L_.out_w * chunk_ >= H * ys_ ? z_ : ctx.reserve(H * ys_);
        bufs_ = ctx.reserve(pool_.size() * buf_stride());
        build_fft();
    }

    // Constants of the cost model (ns per sample per channel, one core), fitted by least squares on the
    // BM_S4DConv sweep (bench/README.md, "Cost model fit"): recurrence = a·N/2 + b, FFT = c·units + d.
    static constexpr double kRecA = 0.29, kRecB = 1.8, kFftC = 0.27, kFftD = 3.5;
    // Recurrence: frames per tile, so a group's rows of input and output stay in cache across its state pairs.
    static constexpr std::size_t kTile = 1024;

    void run(const float* in, float* out, std::size_t frames) override {
        const std::size_t H = L_.H;
        if (!use_fft_) {
            pool_.parallel_for(L_.groups(), [&](std::size_t g0, std::size_t g1, std::size_t) {
                for (std::size_t t0 = 0; t0 < frames; t0 += kTile)
                    L_.scan(g0, g1, in + t0 * H, y_.get() + t0 * H, std::min(kTile, frames - t0), state_.data());
            }, 1);
        } else {
            // Channel-major: history + chunk per channel, so every transform reads one contiguous window.
            const std::size_t tiles = (frames + 15) / 16;
            pool_.parallel_for(H, [&](std::size_t h0, std::size_t h1, std::size_t) {
                for (std::size_t h = h0; h < h1; ++h) {
                    // The pad only ever meets kernel taps beyond the kernel (zero), but must hold finite numbers: the
                    // workspace is shared with other layers.
                    std::fill_n(xc_.get() + h * xs_, pad_, 0.0f);
                    std::copy_n(hist_.data() + h * hl_, hl_, xc_.get() + h * xs_ + pad_);
                }
            });
            pool_.parallel_for(tiles, [&](std::size_t b, std::size_t e, std::size_t) { transpose_in(in, frames, b, e); }, 64);
            // Overlap-save: segments of hop outputs × channels, independent, handed out as threads come free.
            const std::size_t segs = (frames + hop_ - 1) / hop_, items = segs * H;
            pool_.parallel_for(items, [&](std::size_t b, std::size_t e, std::size_t part) {
                for (std::size_t i = b; i < e; ++i) fft_item(i / segs, i % segs, frames, part);
            }, 1);
            pool_.parallel_for(tiles, [&](std::size_t b, std::size_t e, std::size_t) { transpose_out(frames, b, e); }, 64);
            pool_.parallel_for(H, [&](std::size_t h0, std::size_t h1, std::size_t) {
                for (std::size_t h = h0; h < h1; ++h) std::copy_n(xc_.get() + h * xs_ + pad_ + frames, hl_, hist_.data() + h * hl_);
            });
            if (free_left_ > 0)
                pool_.parallel_for(H, [&](std::size_t h0, std::size_t h1, std::size_t) { inject_free(h0, h1, frames); });
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
        std::fill(hist_.begin(), hist_.end(), 0.0f);
        std::fill(free_.begin(), free_.end(), cd{});
        free_left_ = 0;
    }

    void save(float* dst) const override {
        if (!use_fft_) {
            std::copy(state_.begin(), state_.end(), dst);
            return;
        }
        // The recurrent state is what the history of the last Lk−1 inputs (and any injected state) left behind.
        const std::size_t H = L_.H, N2 = L_.N2, hl = hl_;
        for (std::size_t h = 0; h < H; ++h) {
            for (std::size_t n = 0; n < N2; ++n) {
                const cd a = L_.dA[h * N2 + n], b = L_.dB[h * N2 + n];
                cd x = free_left_ > 0 ? free_[h * N2 + n] : cd{};
                cd acc{};
                for (std::size_t k = 0; k < hl; ++k) acc = acc * a + static_cast<double>(hist_[h * hl + k]);  // oldest first
                x += acc * b;
                dst[L_.sidx(h, n)] = static_cast<float>(x.real());
                dst[L_.plane() + L_.sidx(h, n)] = static_cast<float>(x.imag());
            }
        }
    }

    void load(const float* src) override {
        if (!use_fft_) {
            std::copy(src, src + state_.size(), state_.begin());
            return;
        }
        const std::size_t H = L_.H, N2 = L_.N2;
        std::fill(hist_.begin(), hist_.end(), 0.0f);
        for (std::size_t h = 0; h < H; ++h)
            for (std::size_t n = 0; n < N2; ++n)
                free_[h * N2 + n] = cd(src[L_.sidx(h, n)], src[L_.plane() + L_.sidx(h, n)]);
        free_left_ = Lk_;
    }

    void collect_plans(std::vector<LayerPlan>& plans) const override { plans.push_back(plan_); }

private:
    static std::string fmt(double v) {
        char b[32];
        std::snprintf(b, sizeof b, "%.3g", v);
        return b;
    }

    // Per-channel spectrum stride, rounded so every channel's spectrum starts on a 64-byte boundary: FFTW's
    // new-array execute needs the alignment the plan was made with.
    static std::size_t spec_stride(std::size_t m) { return (m / 2 + 1 + 7) / 8 * 8; }
    // Per thread: a real buffer of M floats and a spectrum, both aligned. Transforms run out of place, straight from
    // the window in xc_ (measured at 46080 and 69120: out of place from xc_ 3–15% faster than copy + in place).
    std::size_t spec_offset() const { return (M_ + 15) / 16 * 16; }
    std::size_t buf_stride() const { return spec_offset() + 2 * spec_stride(M_); }

    void build_fft() {
        const std::size_t H = L_.H, N2 = L_.N2, sb = spec_stride(M_);
        kf_ = fftw_buf<fftwf_complex>(H * sb);
        hist_.assign(hl_ * H, 0.0f);
        free_.assign(H * N2, cd{});
        auto tmp = fftw_buf<float>(buf_stride());
        auto* tmp_f = reinterpret_cast<fftwf_complex*>(tmp.get() + spec_offset());
        {
            std::lock_guard lock(fftw_planner_mutex());
            // Measured plans run faster, but measuring a 2^18 transform takes seconds: bound it (FFTW then keeps the
            // best plan found so far, and its wisdom makes the next Batch of the same size instant).
            fftwf_set_timelimit(0.25);
            fwd_ = fftwf_plan_dft_r2c_1d(static_cast<int>(M_), tmp.get(), tmp_f, FFTW_MEASURE);
            inv_ = fftwf_plan_dft_c2r_1d(static_cast<int>(M_), tmp_f, tmp.get(), FFTW_MEASURE);
        }
        if (fwd_ == nullptr || inv_ == nullptr) throw Error("FFTW could not plan a transform of size " + std::to_string(M_));
        // Kernel spectra, scaled by 1/M so the inverse needs no pass of its own; D is tap 0 (y = (K + Dδ) ∗ u), so
        // the skip costs nothing. Kernel taps in double.
        for (std::size_t h = 0; h < H; ++h) {
            std::vector<cd> p(N2);
            for (std::size_t n = 0; n < N2; ++n) p[n] = L_.C2[h * N2 + n] * L_.dB[h * N2 + n];
            float* k = tmp.get();
            std::fill(k, k + M_, 0.0f);
            for (std::size_t t = 0; t < Lk_; ++t) {
                double s = t == 0 ? static_cast<double>(L_.D[h]) : 0.0;
                for (std::size_t n = 0; n < N2; ++n) {
                    s += p[n].real();
                    p[n] *= L_.dA[h * N2 + n];
                }
                k[t] = static_cast<float>(s / static_cast<double>(M_));
            }
            fftwf_execute_dft_r2c(fwd_, k, tmp_f);
            std::memcpy(static_cast<void*>(kf_.get() + h * sb), tmp_f, sizeof(fftwf_complex) * (M_ / 2 + 1));
        }
    }

    // Rows [16·b, 16·e) of the chunk, rows of H → xc_ (channel h at h·xs_ + hl + t), in 8×8 tiles.
    void transpose_in(const float* in, std::size_t frames, std::size_t b, std::size_t e) {
        const std::size_t H = L_.H;
        float* xc = xc_.get() + pad_ + hl_;
        for (std::size_t t0 = b * 16; t0 < std::min(frames, e * 16); t0 += 8)
            for (std::size_t h0 = 0; h0 < H; h0 += 8)
                transpose_tile(in + t0 * H + h0, H, xc + h0 * xs_ + t0, xs_, std::min<std::size_t>(8, frames - t0),
                               std::min<std::size_t>(8, H - h0));
    }

    // yc_ (channel h at h·ys_ + t) → rows of H in y_, in 8×8 tiles.
    void transpose_out(std::size_t frames, std::size_t b, std::size_t e) {
        const std::size_t H = L_.H;
        for (std::size_t t0 = b * 16; t0 < std::min(frames, e * 16); t0 += 8)
            for (std::size_t h0 = 0; h0 < H; h0 += 8)
                transpose_tile(yc_.get() + h0 * ys_ + t0, ys_, y_.get() + t0 * H + h0, H, std::min<std::size_t>(8, H - h0),
                               std::min<std::size_t>(8, frames - t0));
    }

    // dst[j·ds + i] = src[i·ss + j] for i < rows, j < cols (at most 8 each).
    static void transpose_tile(const float* src, std::size_t ss, float* dst, std::size_t ds, std::size_t rows,
                               std::size_t cols) noexcept {
#if defined(__AVX__)
        if (rows == 8 && cols == 8) {
            __m256 r[8], t[8];
            for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + static_cast<std::size_t>(i) * ss);
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
                r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
            }
            for (int i = 0; i < 4; ++i) {
                _mm256_storeu_ps(dst + static_cast<std::size_t>(i) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
                _mm256_storeu_ps(dst + static_cast<std::size_t>(i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
            }
            return;
        }
#endif
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t j = 0; j < cols; ++j) dst[j * ds + i] = src[i * ss + j];
    }

    // Overlap-save for channel h, outputs [s·hop, s·hop + hop) of this chunk: the window of M inputs ending there
    // (history included) is transformed where it lies in xc_ (hop is a multiple of 16 floats, so the window is as
    // aligned as the plan's arrays) or, for the last window of a chunk, from a zero-padded copy; times the kernel
    // spectrum; transformed back.
    void fft_item(std::size_t h, std::size_t s, std::size_t frames, std::size_t part) {
        const std::size_t hl = hl_, bins = M_ / 2 + 1;
        const std::size_t t0 = s * hop_, cnt = std::min(hop_, frames - t0);
        float* buf = bufs_.get() + part * buf_stride();
        auto* spec = reinterpret_cast<fftwf_complex*>(buf + spec_offset());
        const float* chan = xc_.get() + h * xs_;
        const std::size_t end = pad_ + hl + t0 + cnt;  // the window of M inputs ending with this segment's last input
        std::size_t first;                            // where the outputs lie in the inverse transform
        if (end >= M_ && (end - M_) % 16 == 0) {
            fftwf_execute_dft_r2c(fwd_, const_cast<float*>(chan + end - M_), spec);  // out of place: input left intact
            first = M_ - cnt;
        } else {  // a short last segment: the window from its first output's history, zero-padded
            const float* src = chan + pad_ + t0;
            const std::size_t have = hl + frames - t0;
            std::copy_n(src, std::min(have, M_), buf);
            if (have < M_) std::fill(buf + have, buf + M_, 0.0f);
            fftwf_execute_dft_r2c(fwd_, buf, spec);
            first = hl;
        }
        const float* __restrict kf = reinterpret_cast<const float*>(kf_.get() + h * spec_stride(M_));
        float* __restrict sp = reinterpret_cast<float*>(spec);
#pragma omp simd
        for (std::size_t b = 0; b < bins; ++b) {
            const float xr = sp[2 * b], xi = sp[2 * b + 1], kr = kf[2 * b], ki = kf[2 * b + 1];
            sp[2 * b] = xr * kr - xi * ki;
            sp[2 * b + 1] = xr * ki + xi * kr;
        }
        fftwf_execute_dft_c2r(inv_, spec, buf);
        std::copy_n(buf + first, cnt, yc_.get() + h * ys_ + t0);
    }

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

public:
    void after_chunk(std::size_t frames) { free_left_ = free_left_ > frames ? free_left_ - frames : 0; }

private:
    const S4D& L_;
    ThreadPool& pool_;
    std::size_t chunk_;
    Workspace::Slice y_, z_;
    std::vector<float> state_;
    LayerPlan plan_;
    bool use_fft_ = false;
    std::size_t Lk_ = 0, M_ = 0, hl_ = 0, hop_ = 0, pad_ = 0;
    FftwBuf<fftwf_complex> kf_;
    std::size_t xs_ = 0, ys_ = 0;  // xc_, yc_ strides per channel
    Workspace::Slice xc_;      // [H][xs_]: a zero pad, the hl inputs before the chunk, then the chunk (channel-major)
    Workspace::Slice yc_;      // [H][ys_]: outputs, channel-major
    Workspace::Slice bufs_;    // per thread: a transform buffer and a spectrum
    fftwf_plan fwd_ = nullptr, inv_ = nullptr;
    std::vector<float> hist_;  // [H][hl]: the last hl inputs, oldest first (the layer's state in this view)
    std::vector<cd> free_;
    std::size_t free_left_ = 0;

public:
    ~S4DRunner() override {
        std::lock_guard lock(fftw_planner_mutex());
        if (fwd_) fftwf_destroy_plan(fwd_);
        if (inv_) fftwf_destroy_plan(inv_);
    }
};

// The runner above advances the injected-state counter after each chunk.
class S4DRunnerWrap final : public LayerRunner {
public:
    S4DRunnerWrap(const S4D& l, BatchContext& c) : r_(l, c) {}
    void run(const float* in, float* out, std::size_t frames) override {
        r_.run(in, out, frames);
        r_.after_chunk(frames);
    }
    void reset() override { r_.reset(); }
    void save(float* dst) const override { r_.save(dst); }
    void load(const float* src) override { r_.load(src); }
    void collect_plans(std::vector<LayerPlan>& p) const override { r_.collect_plans(p); }

private:
    S4DRunner r_;
};

std::unique_ptr<LayerRunner> S4D::make_runner(BatchContext& ctx) const { return std::make_unique<S4DRunnerWrap>(*this, ctx); }

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
