#pragma once
// The diagonal MIMO linear recurrence that LRU and S5 share (each family's file turns its parameters into this):
// a complex diagonal state of size P driven by dense complex input and output matrices over H channels,
//   x_t = Λ ⊙ x_{t−1} + B u_t,    y_t = Re(C x_t) + D ⊙ u_t
// (S5 with conj_sym folds its factor 2 into C).
//
// Recurrent view of a block: one dense product gives B u for every frame (real and imaginary halves side by side),
// the element-wise scan turns those rows into states in place, one dense product gives Re(C x). Each row is
// computed in the same order whatever the block size, so any blocking is bit-identical to stepping.
//
// Batch view (a chunked parallel scan): the chunk is cut into one segment per thread. Each thread computes B u and
// scans its segment from a zero state; the segments' true start states then follow serially in float64,
// s_{k+1} = Λ^{len_k} s_k + end_k; each thread adds Λ^{j+1} s_k (powers by running product in float64) to its
// local states and computes its outputs. Same maths as streaming, different rounding (≤ 1e-6 relative here).
#include <algorithm>
#include <complex>
#include <cstddef>
#include <vector>

#include "layers/layer.hpp"
#include "ops/dense.hpp"
#include "ops/math.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

struct DiagMimo {
    std::size_t H = 0, P = 0;
    std::vector<std::complex<double>> lambda;  // [P], for the batch view's carries
    std::vector<float> lr, li;                 // [P] Re Λ, Im Λ
    std::vector<float> wb;                     // [H][2P]: Bᵀ, real half then imaginary half
    std::vector<float> wc;                     // [2P][H]: (Re C)ᵀ over −(Im C)ᵀ, so Re(C x) = [Re x | Im x] · wc
    std::vector<float> d;                      // [H]

    /** Λ [P]; B [P][H] and C [H][P] complex (row-major), D [H]. */
    void set(const std::vector<std::complex<double>>& lam, const std::vector<std::complex<double>>& b,
             const std::vector<std::complex<double>>& c, const std::vector<double>& dv) {
        P = lam.size();
        H = dv.size();
        lambda = lam;
        lr.resize(P);
        li.resize(P);
        for (std::size_t p = 0; p < P; ++p) {
            lr[p] = static_cast<float>(lam[p].real());
            li[p] = static_cast<float>(lam[p].imag());
        }
        wb.assign(H * 2 * P, 0.0f);
        wc.assign(2 * P * H, 0.0f);
        for (std::size_t p = 0; p < P; ++p)
            for (std::size_t h = 0; h < H; ++h) {
                wb[h * 2 * P + p] = static_cast<float>(b[p * H + h].real());
                wb[h * 2 * P + P + p] = static_cast<float>(b[p * H + h].imag());
                wc[p * H + h] = static_cast<float>(c[h * P + p].real());
                wc[(P + p) * H + h] = static_cast<float>(-c[h * P + p].imag());
            }
        d.resize(H);
        for (std::size_t h = 0; h < H; ++h) d[h] = static_cast<float>(dv[h]);
    }

    std::size_t state_size() const noexcept { return 2 * P; }
    std::size_t scratch_size(std::size_t max_block) const noexcept { return max_block * 2 * P; }
    std::size_t param_floats() const noexcept { return 2 * P + 4 * P * H + H; }

    /** x rows (2P wide) = B u. */
    void input(const float* in, float* x, std::size_t frames) const noexcept {
        dense_forward(in, x, frames, H, 2 * P, wb.data(), nullptr);
    }

    /** Rows of B u → rows of states, in place, starting from and updating `state` ([Re | Im], 2P floats). */
    void scan(float* x, std::size_t frames, float* state) const noexcept {
        float* __restrict sr = state;
        float* __restrict si = state + P;
        const float* __restrict ar = lr.data();
        const float* __restrict ai = li.data();
        for (std::size_t t = 0; t < frames; ++t) {
            float* __restrict xr = x + t * 2 * P;
            float* __restrict xi = xr + P;
#pragma omp simd
            for (std::size_t p = 0; p < P; ++p) {
                const float nr = ar[p] * sr[p] - ai[p] * si[p] + xr[p];
                const float ni = ar[p] * si[p] + ai[p] * sr[p] + xi[p];
                sr[p] = nr;
                si[p] = ni;
                xr[p] = nr;
                xi[p] = ni;
            }
        }
    }

    /** out rows (H wide) = Re(C x) + D ⊙ u. */
    void output(const float* x, const float* in, float* out, std::size_t frames) const noexcept {
        dense_forward(x, out, frames, 2 * P, H, wc.data(), nullptr);
        for (std::size_t t = 0; t < frames; ++t) {
            float* __restrict o = out + t * H;
            const float* __restrict u = in + t * H;
#pragma omp simd
            for (std::size_t h = 0; h < H; ++h) o[h] += d[h] * u[h];
        }
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept {
        input(in, scratch, frames);
        scan(scratch, frames, state);
        output(scratch, in, out, frames);
    }
};


/** The activation of the flax sequence layers around LRU and S5, applied to the recurrence's output y:
 * `gelu`: gelu(y); `half_glu1`: g·σ(out2(g)); `half_glu2`: y·σ(out2(g)); `full_glu`: out1(g)·σ(out2(g)), with
 * g = gelu(y) (flax's default nn.gelu: the tanh approximation). out1/out2 are flax Dense modules, loaded as saved:
 * `<dense_prefix>.out1.kernel` [H, H] ([in, out]) and `.bias` [H]. minimal-LRU's SequenceLayer is `full_glu`; S5's
 * takes its `activation`. Dropout, norm and skip are the identity / native layers around it. */
struct SeqActivation {
    enum class Kind { none, gelu, full_glu, half_glu1, half_glu2 };
    Kind kind = Kind::none;
    std::string kind_name = "none";
    std::size_t H = 0;
    std::vector<float> k1, b1, k2, b2;

    void load(const nlohmann::json& c, Params& p, std::size_t width) {
        H = width;
        kind_name = get_string(c, "activation", "none");
        if (kind_name == "none") kind = Kind::none;
        else if (kind_name == "gelu") kind = Kind::gelu;
        else if (kind_name == "full_glu") kind = Kind::full_glu;
        else if (kind_name == "half_glu1") kind = Kind::half_glu1;
        else if (kind_name == "half_glu2") kind = Kind::half_glu2;
        else throw ConfigError("layer " + layer_label(c) + ": activation '" + kind_name +
                               "' is not supported (none, gelu, full_glu, half_glu1, half_glu2)");
        const bool dense = kind == Kind::full_glu || kind == Kind::half_glu1 || kind == Kind::half_glu2;
        if (!dense) {
            if (c.contains("dense_prefix"))
                throw ConfigError("layer " + layer_label(c) + ": dense_prefix is only used by the *_glu activations");
            return;
        }
        const auto pre = get_string(c, "dense_prefix", "", true);
        const auto h = static_cast<std::int64_t>(H);
        if (kind == Kind::full_glu) {
            k1 = p.take_floats(pre + ".out1.kernel", {h, h});
            b1 = p.take_floats(pre + ".out1.bias", {h});
        }
        k2 = p.take_floats(pre + ".out2.kernel", {h, h});
        b2 = p.take_floats(pre + ".out2.bias", {h});
    }
    std::size_t param_count() const noexcept { return k1.size() + b1.size() + k2.size() + b2.size(); }
    /** Scratch for `apply` over `frames` frames, in floats. */
    std::size_t scratch_size(std::size_t frames) const noexcept { return kind == Kind::none ? 0 : 2 * frames * H; }

    /** y rows → out rows (H wide, distinct buffers). */
    void apply(const float* y, float* out, std::size_t frames, float* scratch) const noexcept {
        const std::size_t n = frames * H;
        if (kind == Kind::none) {
            std::copy_n(y, n, out);
            return;
        }
        float* g = kind == Kind::gelu ? out : scratch;
#pragma omp simd
        for (std::size_t i = 0; i < n; ++i) g[i] = gelu_tanh(y[i]);
        if (kind == Kind::gelu) return;
        float* z = scratch + n;
        dense_forward(g, z, frames, H, H, k2.data(), b2.data());
        if (kind == Kind::full_glu) {
            dense_forward(g, out, frames, H, H, k1.data(), b1.data());
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) out[i] *= fast_sigmoid(z[i]);
        } else {
            const float* a = kind == Kind::half_glu1 ? g : y;
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) out[i] = a[i] * fast_sigmoid(z[i]);
        }
    }
};

/** A layer made of the diagonal MIMO recurrence followed by a sequence-layer activation (LRU, S5). */
class DiagMimoLayer : public Layer {
public:
    std::string name;
    DiagMimo m;
    SeqActivation act;

    std::size_t in_width() const noexcept override { return m.H; }
    std::size_t out_width() const noexcept override { return m.H; }
    std::size_t state_size() const noexcept override { return m.state_size(); }
    std::size_t scratch_size(std::size_t max_block) const noexcept override {
        return m.scratch_size(max_block) + (act.kind == SeqActivation::Kind::none ? 0 : max_block * m.H + act.scratch_size(max_block));
    }
    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        if (act.kind == SeqActivation::Kind::none) {
            m.step(in, out, frames, state, scratch);
            return;
        }
        float* y = scratch + m.scratch_size(frames);
        m.step(in, y, frames, state, scratch);
        act.apply(y, out, frames, y + frames * m.H);
    }
    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

/** The batch view of a DiagMimoLayer (see the file comment). */
class DiagMimoRunner final : public LayerRunner {
public:
    DiagMimoRunner(const DiagMimoLayer& layer, BatchContext& ctx)
        : m_(layer.m), act_(layer.act), pool_(ctx.pool), chunk_(ctx.options.chunk_frames) {
        x_ = ctx.reserve(chunk_ * 2 * m_.P);
        if (act_.kind != SeqActivation::Kind::none) {
            y_ = ctx.reserve(chunk_ * m_.H);
            act_scratch_ = ctx.reserve(pool_.size() * act_.scratch_size(kActRows));
        }
        state_.assign(m_.state_size(), 0.0f);
        const std::size_t segs = pool_.size();
        local_.assign(segs * 2 * m_.P, 0.0f);
        starts_.assign(segs * m_.P, {});
        powers_.assign(segs * 2 * m_.P, 0.0);
        for (const auto& l : m_.lambda) {
            lam_re_.push_back(l.real());
            lam_im_.push_back(l.imag());
        }
        plan_.layer = layer.describe();
        plan_.backend = "scan";
        plan_.reason = "diagonal MIMO state: chunked parallel scan over " + std::to_string(segs) +
                       " thread(s), state carried across segment and chunk edges";
    }

    void run(const float* in, float* out, std::size_t frames) override {
        const std::size_t H = m_.H, P = m_.P, P2 = 2 * P;
        // Segments of at least kMinSeg frames: below that the carry pass costs more than it saves.
        const std::size_t segs = std::clamp<std::size_t>(frames / kMinSeg, 1, pool_.size());
        float* x = x_.get();
        float* y = act_.kind == SeqActivation::Kind::none ? out : y_.get();
        if (segs == 1) {
            m_.step(in, y, frames, state_.data(), x);
            finish(y, out, 0, frames, 0);
            return;
        }
        const std::size_t len = (frames + segs - 1) / segs;
        auto seg_begin = [&](std::size_t k) { return std::min(frames, k * len); };
        // 1: B u and a local scan per segment (segment 0 from the true state, the others from zero)
        pool_.parallel_for(segs, [&](std::size_t b, std::size_t e, std::size_t) {
            for (std::size_t k = b; k < e; ++k) {
                const std::size_t t0 = seg_begin(k), t1 = seg_begin(k + 1);
                float* st = k == 0 ? state_.data() : local_.data() + k * P2;
                if (k != 0) std::fill_n(st, P2, 0.0f);
                m_.input(in + t0 * H, x + t0 * P2, t1 - t0);
                m_.scan(x + t0 * P2, t1 - t0, st);
            }
        }, 1);
        // 2: true start of every segment, serially (segment 0's local end is already true)
        for (std::size_t p = 0; p < P; ++p) starts_[1 * P + p] = {state_[p], state_[P + p]};
        for (std::size_t k = 1; k + 1 < segs; ++k) {
            const auto n = static_cast<double>(seg_begin(k + 1) - seg_begin(k));
            for (std::size_t p = 0; p < P; ++p)
                starts_[(k + 1) * P + p] = std::pow(m_.lambda[p], n) * starts_[k * P + p] +
                                           std::complex<double>(local_[k * P2 + p], local_[k * P2 + P + p]);
        }
        {   // the state after the chunk
            const std::size_t k = segs - 1;
            const auto n = static_cast<double>(frames - seg_begin(k));
            for (std::size_t p = 0; p < P; ++p) {
                const auto s = std::pow(m_.lambda[p], n) * starts_[k * P + p] +
                               std::complex<double>(local_[k * P2 + p], local_[k * P2 + P + p]);
                state_[p] = static_cast<float>(s.real());
                state_[P + p] = static_cast<float>(s.imag());
            }
        }
        // 3: add the carried start's free response, then the outputs
        pool_.parallel_for(segs, [&](std::size_t b, std::size_t e, std::size_t part) {
            for (std::size_t k = b; k < e; ++k) {
                const std::size_t t0 = seg_begin(k), t1 = seg_begin(k + 1);
                if (k != 0) carry(x + t0 * P2, t1 - t0, starts_.data() + k * P, powers_.data() + k * P2);
                m_.output(x + t0 * P2, in + t0 * H, y + t0 * H, t1 - t0);
                finish(y, out, t0, t1, part);
            }
        }, 1);
    }

    void reset() override { std::fill(state_.begin(), state_.end(), 0.0f); }
    void save(float* dst) const override { std::copy(state_.begin(), state_.end(), dst); }
    void load(const float* src) override { std::copy(src, src + state_.size(), state_.begin()); }
    void collect_plans(std::vector<LayerPlan>& plans) const override { plans.push_back(plan_); }

private:
    // The activation over rows [t0, t1) of y → out, in pieces of kActRows (per-thread scratch).
    void finish(const float* y, float* out, std::size_t t0, std::size_t t1, std::size_t part) noexcept {
        if (act_.kind == SeqActivation::Kind::none) return;
        const std::size_t H = m_.H;
        float* sc = act_scratch_.get() + part * act_.scratch_size(kActRows);
        for (std::size_t t = t0; t < t1; t += kActRows) {
            const std::size_t n = std::min(kActRows, t1 - t);
            act_.apply(y + t * H, out + t * H, n, sc);
        }
    }

    // x_j += Λ^{j+1} s for the rows of one segment; the powers by running product in float64 (`m`: 2P doubles).
    void carry(float* x, std::size_t frames, const std::complex<double>* s, double* m) const noexcept {
        const std::size_t P = m_.P, P2 = 2 * P;
        double* __restrict mr = m;
        double* __restrict mi = m + P;
        const double* __restrict ar = lam_re_.data();
        const double* __restrict ai = lam_im_.data();
        for (std::size_t p = 0; p < P; ++p) {
            mr[p] = s[p].real();
            mi[p] = s[p].imag();
        }
        for (std::size_t j = 0; j < frames; ++j) {
            float* __restrict xr = x + j * P2;
            float* __restrict xi = xr + P;
#pragma omp simd
            for (std::size_t p = 0; p < P; ++p) {
                const double nr = ar[p] * mr[p] - ai[p] * mi[p], ni = ar[p] * mi[p] + ai[p] * mr[p];
                mr[p] = nr;
                mi[p] = ni;
                xr[p] += static_cast<float>(nr);
                xi[p] += static_cast<float>(ni);
            }
        }
    }

    static constexpr std::size_t kMinSeg = 512, kActRows = 256;
    const DiagMimo& m_;
    const SeqActivation& act_;
    ThreadPool& pool_;
    std::size_t chunk_;
    Workspace::Slice x_, y_, act_scratch_;
    std::vector<float> state_, local_;
    std::vector<std::complex<double>> starts_;
    std::vector<double> powers_, lam_re_, lam_im_;
    LayerPlan plan_;
};

inline std::unique_ptr<LayerRunner> DiagMimoLayer::make_runner(BatchContext& ctx) const {
    return std::make_unique<DiagMimoRunner>(*this, ctx);
}

}  // namespace ssm::detail
