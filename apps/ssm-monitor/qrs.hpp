#pragma once
// A causal QRS detector in the style of Pan & Tompkins (1985), run on the cleaned ECG channel, and a simple
// signal-quality index. Both allocate only in their constructors; `push` is real-time safe.
//
// QRS: band-pass 5–15 Hz (a 2nd-order Butterworth designed by ssm::design_sos, run in double) → five-point
// derivative → square → 150 ms moving-window integration. A peak of the integrated signal is a beat when it
// exceeds THR = NPK + 0.25·(SPK − NPK) and comes ≥ 200 ms after the previous beat; SPK and NPK are running
// estimates (1/8 update) of beat and noise peak heights, seeded from the first 2 s. A peak is taken when the
// integrated signal has fallen to half its running maximum. Heart rate = 60 / mean of the last 8 RR intervals
// that lie in 0.25–2.5 s. The beat time is the integrator's peak (about 75 ms + the band-pass delay late).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ssmstream/filters.hpp"

namespace ssm::monitor {

class QrsDetector {
public:
    explicit QrsDetector(double rate) : rate_(rate) {
        ssm::FilterSpec s;
        s.family = ssm::FilterFamily::butterworth;
        s.type = ssm::FilterType::bandpass;
        s.order = 2;
        s.sample_rate = rate;
        s.low = 5;
        s.high = std::min(15.0, 0.45 * rate);
        sos_ = ssm::design_sos(s);
        z_.assign(sos_.size(), {0, 0});
        win_.assign(std::max<std::size_t>(1, static_cast<std::size_t>(0.15 * rate)), 0.0);
        learn_ = static_cast<std::uint64_t>(2 * rate);
        refractory_ = static_cast<std::uint64_t>(0.2 * rate);
    }
    /** One sample at frame index `n` (consecutive unless a gap: call `gap()` then). Returns true on a beat. */
    bool push(float xf, std::uint64_t n) noexcept {
        double x = std::isfinite(xf) ? xf : 0.0;
        for (std::size_t k = 0; k < sos_.size(); ++k) {  // transposed direct form II
            const auto& c = sos_[k];
            const double y = c[0] * x + z_[k][0];
            z_[k][0] = c[1] * x - c[4] * y + z_[k][1];
            z_[k][1] = c[2] * x - c[5] * y;
            x = y;
        }
        const double d = (2 * x + d_[0] - d_[2] - 2 * d_[3]) * 0.125;
        d_[3] = d_[2]; d_[2] = d_[1]; d_[1] = d_[0]; d_[0] = x;
        const double sq = d * d;
        sum_ += sq - win_[wpos_];
        win_[wpos_] = sq;
        wpos_ = (wpos_ + 1) % win_.size();
        const double m = std::max(sum_, 0.0) / static_cast<double>(win_.size());
        ++seen_;
        if (seen_ <= learn_) {  // learning phase: seed the peak levels
            learn_max_ = std::max(learn_max_, m);
            learn_sum_ += m;
            if (seen_ == learn_) {
                spk_ = 0.5 * learn_max_;
                npk_ = 0.5 * learn_sum_ / static_cast<double>(learn_);
            }
            return false;
        }
        const double thr = npk_ + 0.25 * (spk_ - npk_);
        bool beat = false;
        if (m > cand_) { cand_ = m; cand_n_ = n; }
        if (cand_ > 0 && m < 0.5 * cand_) {  // the candidate peak is over
            if (cand_ > thr && (last_beat_ == UINT64_MAX || cand_n_ - last_beat_ >= refractory_)) {
                spk_ = 0.125 * cand_ + 0.875 * spk_;
                if (last_beat_ != UINT64_MAX) {
                    const double rr = static_cast<double>(cand_n_ - last_beat_) / rate_;
                    if (rr >= 0.25 && rr <= 2.5) {
                        rr_[rr_pos_ % rr_.size()] = rr;
                        ++rr_pos_;
                    }
                }
                last_beat_ = cand_n_;
                beat_n_ = cand_n_;
                beat = true;
            } else {
                npk_ = 0.125 * cand_ + 0.875 * npk_;
            }
            cand_ = 0;
        }
        return beat;
    }
    /** Frame index of the last beat found. */
    std::uint64_t last_beat() const noexcept { return beat_n_; }
    /** Beats per minute over the last 8 valid RR intervals; 0 until two exist or if the last beat is > 3 s old. */
    double heart_rate(std::uint64_t now_n) const noexcept {
        const std::size_t k = std::min<std::size_t>(rr_pos_, rr_.size());
        if (k < 2 || last_beat_ == UINT64_MAX || static_cast<double>(now_n - last_beat_) > 3 * rate_) return 0;
        double s = 0;
        for (std::size_t i = 0; i < k; ++i) s += rr_[i];
        return 60.0 * static_cast<double>(k) / s;
    }
    /** After a gap: restart the RR history (an interval across a gap is not an RR interval). */
    void gap() noexcept { last_beat_ = UINT64_MAX; cand_ = 0; }

private:
    double rate_;
    ssm::Sos sos_;
    std::vector<std::array<double, 2>> z_;
    double d_[4] = {0, 0, 0, 0};
    std::vector<double> win_;
    std::size_t wpos_ = 0;
    double sum_ = 0;
    std::uint64_t seen_ = 0, learn_ = 0, refractory_ = 0;
    double learn_max_ = 0, learn_sum_ = 0, spk_ = 0, npk_ = 0, cand_ = 0;
    std::uint64_t cand_n_ = 0, last_beat_ = UINT64_MAX, beat_n_ = UINT64_MAX;
    std::array<double, 8> rr_{};
    std::size_t rr_pos_ = 0;
};

/** Signal quality of one channel over 2 s windows: the share of the (mean-removed) raw power that the cleaning
 * chain keeps, clean_var / raw_var clamped to [0, 1]; 0 when the raw signal is flat (var < 1e-12) or had
 * non-finite samples in the window. Near 1: little was removed; low: mostly noise (or a chain that removes a lot). */
class QualityIndex {
public:
    explicit QualityIndex(double rate) : window_(std::max<std::uint64_t>(1, static_cast<std::uint64_t>(2 * rate))) {}
    void push(float raw, float clean) noexcept {
        if (!std::isfinite(raw)) bad_ = true;
        else { rs_ += raw; rss_ += double(raw) * raw; }
        if (std::isfinite(clean)) { cs_ += clean; css_ += double(clean) * clean; }
        if (++n_ == window_) {
            const double nn = static_cast<double>(n_);
            const double rv = rss_ / nn - (rs_ / nn) * (rs_ / nn), cv = css_ / nn - (cs_ / nn) * (cs_ / nn);
            value_ = (bad_ || rv < 1e-12) ? 0.0 : std::clamp(cv / rv, 0.0, 1.0);
            n_ = 0; rs_ = rss_ = cs_ = css_ = 0; bad_ = false;
        }
    }
    /** Last full window's index in [0, 1]; −1 before the first window completes. */
    double value() const noexcept { return value_; }

private:
    std::uint64_t window_, n_ = 0;
    double rs_ = 0, rss_ = 0, cs_ = 0, css_ = 0, value_ = -1;
    bool bad_ = false;
};

}  // namespace ssm::monitor
