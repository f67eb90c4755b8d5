#include "layers/lti_conv.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ops/thread_pool.hpp"

namespace ssm::detail {

LtiConv::LtiConv(BatchContext& ctx, LtiCore core, std::string what)
    : pool_(ctx.pool), core_(std::move(core)), Cout_(core_.channels * core_.fan), chunk_(ctx.options.chunk_frames) {
    plan_.layer = std::move(what);
    state_.assign(core_.state_size, 0.0f);
    rows_in_.assign(kBlock * core_.channels, 0.0f);
    rows_out_.assign(kBlock * Cout_, 0.0f);
    if (ctx.options.backend == Backend::recurrence) {
        plan_.backend = "recurrence";
        plan_.reason = "forced";
        return;
    }
    const std::size_t cap = ctx.options.max_kernel;
    const double budget = ctx.options.fft_layer_bytes, rec_cost = core_.recurrence_ns;
    // Automatic: the longest kernel whose FFT would still be cheaper than the recurrence (FFT cost grows with the
    // kernel), so that a recurrence that wins anyway is not first run through a long impulse response.
    std::size_t break_even = 0;
    if (ctx.options.backend == Backend::automatic) {
        std::size_t lo = 1, hi = cap + 1;
        while (lo < hi) {
            const std::size_t mid = lo + (hi - lo) / 2;
            const auto c = FftConv::choose(mid + 1, chunk_, Cout_, budget);
            if (c.fits && fft_cost(c) < rec_cost) lo = mid + 1; else hi = mid;
        }
        break_even = lo - 1;
    }
    const bool hopeless = ctx.options.backend == Backend::automatic &&
                          (break_even == 0 || (core_.fir_length > 0 && core_.fir_length > break_even));
    const Kernel k = hopeless ? Kernel::costlier : find_kernel(ctx.options.kernel_tolerance, cap, break_even);
    if (k != Kernel::found) {
        plan_.backend = "recurrence";
        plan_.reason = k == Kernel::too_long
                           ? "kernel decays slower than max_kernel=" + std::to_string(cap) + " taps allow; the FFT view would truncate it"
                           : "cost model: an FFT of a kernel longer than " + std::to_string(break_even) +
                                 " taps would cost more than the recurrence (" + fmt3(rec_cost) +
                                 " ns/sample/channel), and this kernel is longer";
        taps_ = {};
        return;
    }
    // One tap more than the kernel: the history then holds the Lk inputs a saved state is replayed from.
    const FftConv::Choice choice = FftConv::choose(Lk_ + 1, chunk_, Cout_, budget);
    const double fft_cost = this->fft_cost(choice);
    if (!choose_fft(plan_, ctx.options.backend, Lk_, choice, fft_cost, rec_cost)) {
        taps_ = {};
        return;
    }
    conv_ = std::make_unique<FftConv>(ctx, core_.channels, core_.fan, choice, [&](std::size_t j, double* k) {
        for (std::size_t t = 0; t < Lk_; ++t) k[t] = static_cast<double>(taps_[t * Cout_ + j]);
    });
    taps_ = {};
    loaded_.assign(core_.state_size, 0.0f);
    free_.assign(core_.state_size, 0.0f);
}

// Per input sample and channel: one forward transform serves `fan` products and inverse transforms.
double LtiConv::fft_cost(const FftConv::Choice& c) const noexcept {
    return c.cost_ns() * (1.0 + static_cast<double>(core_.fan)) / 2.0;
}

void LtiConv::recur(const float* in, float* y, std::size_t frames, float* state) const {
    const std::size_t units = (core_.channels + core_.group - 1) / core_.group;
    const std::size_t grain = std::max<std::size_t>(1, units / (4 * pool_.size()));
    pool_.parallel_for(units, [&](std::size_t c0, std::size_t c1, std::size_t) {
        core_.scan(c0, c1, in, y, frames, state);
    }, grain);
    if (core_.advance) core_.advance(state, frames);
}

// The impulse response of the recurrence, all channels at once, block by block, until every channel's estimated
// rest is below a quarter of its budget (rest ≈ b·r/(1 − r) from the last block's sum b and its ratio r to the one
// before, r < 0.9); then the shortest length whose dropped taps (computed and estimated) stay
// within `tol` × ‖K‖₁ for every channel.
LtiConv::Kernel LtiConv::find_kernel(double tol, std::size_t cap, std::size_t break_even) {
    const std::size_t C = core_.channels;
    const bool fir = core_.fir_length > 0;
    const std::size_t limit = fir ? core_.fir_length : cap;
    std::vector<float> st(core_.state_size, 0.0f);
    std::vector<double> l1(Cout_, 0.0), prev(Cout_, 0.0), cur(Cout_, 0.0), rest(Cout_, 0.0);
    taps_.clear();
    std::size_t len = 0, far = 0;  // far: consecutive blocks projected well past max_kernel
    bool converged = fir;
    while (len < limit) {
        const std::size_t n = std::min(kBlock, limit - len);
        std::fill(rows_in_.begin(), rows_in_.end(), 0.0f);
        if (len == 0) std::fill(rows_in_.begin(), rows_in_.begin() + static_cast<std::ptrdiff_t>(C), 1.0f);
        recur(rows_in_.data(), rows_out_.data(), n, st.data());
        taps_.insert(taps_.end(), rows_out_.begin(), rows_out_.begin() + static_cast<std::ptrdiff_t>(n * Cout_));
        std::fill(cur.begin(), cur.end(), 0.0);
        for (std::size_t t = 0; t < n; ++t)
            for (std::size_t j = 0; j < Cout_; ++j) cur[j] += std::abs(static_cast<double>(rows_out_[t * Cout_ + j]));
        bool finite = true;
        for (std::size_t j = 0; j < Cout_; ++j) {
            l1[j] += cur[j];
            finite = finite && std::isfinite(l1[j]);
        }
        len += n;
        if (!finite) return Kernel::too_long;
        if (fir) continue;
        bool ok = len >= 2 * kBlock || n < kBlock;
        for (std::size_t j = 0; j < Cout_ && ok; ++j) {
            if (cur[j] == 0.0) {
                rest[j] = 0.0;
                continue;
            }
            const double r = prev[j] > 0.0 ? cur[j] / prev[j] : 1.0;
            rest[j] = r < 0.9 ? cur[j] * r / (1.0 - r) : std::numeric_limits<double>::infinity();
            // A float32 impulse response ends in a floor of denormals that no longer decays: a block this far
            // below the budget counts as the end (its rest taken as ten such blocks).
            if (cur[j] <= 1e-5 * tol * l1[j]) rest[j] = std::min(rest[j], 10.0 * cur[j]);
            ok = rest[j] <= 0.25 * tol * l1[j];
        }
        // Where it is heading: blocks still needed at the slowest channel's ratio. Give up early when that passes
        // max_kernel (or, automatic, the break-even length) by far.
        double blocks = 0;
        for (std::size_t j = 0; j < Cout_ && !ok; ++j) {
            if (cur[j] == 0.0 || prev[j] == 0.0) continue;
            const double r = cur[j] / prev[j];
            if (r >= 1.0 || cur[j] <= 1e-2 * tol * l1[j]) continue;  // not decaying yet / nearly done
            blocks = std::max(blocks, std::log(0.25 * tol * l1[j] * (1.0 - r) / (cur[j] * r)) / std::log(r));
        }
        prev = cur;
        if (ok) {
            converged = true;
            break;
        }
        const double projected = static_cast<double>(len) + blocks * static_cast<double>(kBlock);
        far = projected > 4.0 * static_cast<double>(cap) ? far + 1 : 0;
        if (len >= 16 * kBlock && far >= 3) return Kernel::too_long;
        if (break_even > 0 && len > break_even + kBlock) return Kernel::costlier;
    }
    if (!converged) return Kernel::too_long;
    if (fir) {
        Lk_ = len;
        return break_even > 0 && Lk_ > break_even ? Kernel::costlier : Kernel::found;
    }
    std::size_t need = 1;
    for (std::size_t j = 0; j < Cout_; ++j) {
        double dropped = rest[j];
        std::size_t L = len;
        while (L > need) {
            const double d = dropped + std::abs(static_cast<double>(taps_[(L - 1) * Cout_ + j]));
            if (d > tol * l1[j]) break;
            dropped = d;
            --L;
        }
        need = std::max(need, L);
    }
    Lk_ = need;
    taps_.resize(Lk_ * Cout_);
    return break_even > 0 && Lk_ > break_even ? Kernel::costlier : Kernel::found;
}

void LtiConv::run(const float* in, float* y, std::size_t frames) {
    if (!conv_) {
        recur(in, y, frames, state_.data());
        return;
    }
    conv_->run(in, core_.channels, y, Cout_, frames);
    if (has_load_ && since_load_ < Lk_) {  // the loaded state's free response
        const std::size_t m = std::min(Lk_ - since_load_, frames);
        std::fill(rows_in_.begin(), rows_in_.end(), 0.0f);
        for (std::size_t t0 = 0; t0 < m; t0 += kBlock) {
            const std::size_t n = std::min(kBlock, m - t0);
            recur(rows_in_.data(), rows_out_.data(), n, free_.data());
            float* yy = y + t0 * Cout_;
            for (std::size_t i = 0; i < n * Cout_; ++i) yy[i] += rows_out_[i];
        }
    }
    since_load_ = std::min(since_load_ + frames, Lk_ + 1);
}

void LtiConv::reset() {
    std::fill(state_.begin(), state_.end(), 0.0f);
    if (conv_) conv_->clear_history();
    has_load_ = false;
    since_load_ = 0;
}

void LtiConv::save(float* dst) const {
    if (!conv_) {
        std::copy(state_.begin(), state_.end(), dst);
        return;
    }
    const std::size_t hl = conv_->history_length(), C = core_.channels;
    std::size_t m = hl;
    if (has_load_ && since_load_ < hl) {
        std::copy(loaded_.begin(), loaded_.end(), dst);
        m = since_load_;
    } else {
        std::fill(dst, dst + core_.state_size, 0.0f);
    }
    for (std::size_t t0 = 0; t0 < m; t0 += kBlock) {
        const std::size_t n = std::min(kBlock, m - t0);
        for (std::size_t c = 0; c < C; ++c) {
            const float* h = conv_->history(c) + (hl - m) + t0;
            for (std::size_t t = 0; t < n; ++t) rows_in_[t * C + c] = h[t];
        }
        recur(rows_in_.data(), rows_out_.data(), n, dst);
    }
}

void LtiConv::load(const float* src) {
    if (!conv_) {
        std::copy(src, src + state_.size(), state_.begin());
        return;
    }
    std::copy(src, src + core_.state_size, loaded_.begin());
    std::copy(src, src + core_.state_size, free_.begin());
    conv_->clear_history();
    has_load_ = true;
    since_load_ = 0;
}

}  // namespace ssm::detail
