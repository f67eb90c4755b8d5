#include "engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

#include "ssmstream/error.hpp"

namespace ssm::denoise {

namespace {

SRC_STATE* new_src(int converter) {
    int err = 0;
    SRC_STATE* s = src_new(converter, 1, &err);
    if (!s) throw Error(std::string("libsamplerate: ") + src_strerror(err));
    return s;
}

std::string rate_str(double r) {
    char b[32];
    std::snprintf(b, sizeof b, "%g Hz", r);
    return b;
}

}  // namespace

// ---- RateBridge -------------------------------------------------------------------------------------------------

RateBridge::RateBridge(double device_rate, double model_rate, std::size_t block, int converter, std::size_t prime)
    : down_ratio_(model_rate / device_rate), up_ratio_(device_rate / model_rate), prime_(prime) {
    if (!src_is_valid_ratio(down_ratio_) || !src_is_valid_ratio(up_ratio_))
        throw Error("cannot resample between the device's " + rate_str(device_rate) + " and the model's " +
                    rate_str(model_rate) + " (libsamplerate bridges ratios up to 256)");
    model_cap_ = static_cast<std::size_t>(std::ceil(static_cast<double>(block) * down_ratio_)) + 64;
    const std::size_t up_max = static_cast<std::size_t>(std::ceil(static_cast<double>(model_cap_) * up_ratio_)) + 64;
    fifo_.assign(prime_ + 4 * block + 2 * up_max + 1024, 0.0f);
    down_ = new_src(converter);
    try {
        up_ = new_src(converter);
    } catch (...) {
        src_delete(down_);
        throw;
    }
    reset();
}

RateBridge::~RateBridge() {
    src_delete(down_);
    src_delete(up_);
}

void RateBridge::reset() noexcept {
    src_reset(down_);
    src_reset(up_);
    std::fill(fifo_.begin(), fifo_.end(), 0.0f);
    fifo_r_ = 0;
    fifo_w_ = prime_;
}

std::size_t RateBridge::to_model(const float* in, std::size_t frames, float* model_buf) noexcept {
    SRC_DATA d{};
    d.data_in = in;
    d.input_frames = static_cast<long>(frames);
    d.data_out = model_buf;
    d.output_frames = static_cast<long>(model_cap_);
    d.src_ratio = down_ratio_;
    if (src_process(down_, &d) != 0) return 0;
    return static_cast<std::size_t>(d.output_frames_gen);
}

void RateBridge::from_model(const float* model_out, std::size_t n) noexcept {
    if (fifo_r_ > 0) {  // keep the FIFO's unread part at the front: at most a few blocks move
        const std::size_t level = fifo_w_ - fifo_r_;
        std::memmove(fifo_.data(), fifo_.data() + fifo_r_, level * sizeof(float));
        fifo_r_ = 0;
        fifo_w_ = level;
    }
    SRC_DATA d{};
    d.data_in = model_out;
    d.input_frames = static_cast<long>(n);
    d.data_out = fifo_.data() + fifo_w_;
    d.output_frames = static_cast<long>(fifo_.size() - fifo_w_);
    d.src_ratio = up_ratio_;
    if (src_process(up_, &d) != 0) return;
    fifo_w_ += static_cast<std::size_t>(d.output_frames_gen);
}

std::size_t RateBridge::take(float* out, std::size_t frames) noexcept {
    const std::size_t have = std::min(frames, fifo_w_ - fifo_r_);
    std::memcpy(out, fifo_.data() + fifo_r_, have * sizeof(float));
    std::fill(out + have, out + frames, 0.0f);
    fifo_r_ += have;
    return frames - have;
}

// ---- Engine -----------------------------------------------------------------------------------------------------

Engine::Engine(std::shared_ptr<const Model> model, const EngineConfig& config)
    : model_(std::move(model)), cfg_(config), stream_(model_) {
    const auto& mi = model_->info();
    if (mi.in_channels != 1 || mi.out_channels != 1)
        throw Error("the model has " + std::to_string(mi.in_channels) + " input and " + std::to_string(mi.out_channels) +
                    " output channels; ssm-denoise runs mono models (1 in, 1 out)");
    if (!(cfg_.device_rate > 0)) throw Error("the device's sample rate is unknown");
    if (cfg_.block == 0) throw Error("the block size must be at least 1 frame");
    const double mrate = mi.sample_rate > 0 ? mi.sample_rate : cfg_.device_rate;
    const bool resample = std::abs(mrate - cfg_.device_rate) > 1e-6;

    std::size_t model_block = cfg_.block;
    if (resample) {
        // How much the FIFO must be primed so that no block ever finds it short, found by running the bridge over
        // silence (the counts libsamplerate produces do not depend on the values), and the latency the bridge
        // adds, found by sending an impulse through it. Both for exactly this block size.
        std::size_t prime = 0;
        {
            RateBridge probe(cfg_.device_rate, mrate, cfg_.block, cfg_.converter, 0);
            std::vector<float> in(cfg_.block, 0.0f), mid(probe.model_capacity()), out(cfg_.block);
            // the most the frames produced so far ever fall behind the frames the device asked for
            long worst = 0, produced = 0, needed = 0;
            // ~2^18 frames (4000 blocks of 64), at least 64 blocks: the pattern of counts repeats far sooner
            const std::size_t blocks = std::clamp<std::size_t>((std::size_t{1} << 18) / cfg_.block, 64, 4000);
            for (std::size_t b = 0; b < blocks; ++b) {
                const std::size_t before = probe.fifo_level();
                const std::size_t n = probe.to_model(in.data(), cfg_.block, mid.data());
                probe.from_model(mid.data(), n);
                produced += static_cast<long>(probe.fifo_level() - before);
                needed += static_cast<long>(cfg_.block);
                worst = std::max(worst, needed - produced);
                probe.take(out.data(), std::min(cfg_.block, probe.fifo_level()));
            }
            prime = static_cast<std::size_t>(worst) + 2;
        }
        {
            RateBridge probe(cfg_.device_rate, mrate, cfg_.block, cfg_.converter, prime);
            std::vector<float> mid(probe.model_capacity()), in(cfg_.block), out(cfg_.block);
            const std::size_t at = 4 * cfg_.block + 7, total = at + 16384;
            std::size_t best = 0;
            float best_v = -1;
            for (std::size_t t = 0; t < total; t += cfg_.block) {
                for (std::size_t i = 0; i < cfg_.block; ++i) in[i] = (t + i == at) ? 1.0f : 0.0f;
                const std::size_t n = probe.to_model(in.data(), cfg_.block, mid.data());
                probe.from_model(mid.data(), n);
                probe.take(out.data(), cfg_.block);
                for (std::size_t i = 0; i < cfg_.block; ++i)
                    if (std::abs(out[i]) > best_v) best_v = std::abs(out[i]), best = t + i;
            }
            resampler_latency_ = best >= at ? best - at : 0;
        }
        bridge_ = std::make_unique<RateBridge>(cfg_.device_rate, mrate, cfg_.block, cfg_.converter, prime);
        model_block = bridge_->model_capacity();
    }
    model_latency_ = static_cast<std::size_t>(
        std::llround(static_cast<double>(mi.latency_samples) * cfg_.device_rate / mrate));
    stream_.prepare({.sample_rate = mi.sample_rate > 0 ? mrate : 0, .max_block = model_block, .channels = 1});
    model_in_.assign(model_block, 0.0f);
    model_out_.assign(model_block, 0.0f);
    wet_.assign(cfg_.block, 0.0f);
    silence_.assign(cfg_.block, 0.0f);
    dry_line_.assign(latency() + cfg_.block, 0.0f);
    block_ns_per_frame_ = 1e9 / cfg_.device_rate;
    if (cfg_.record_frames) {
        rec_in_.reset_capacity(cfg_.record_frames);
        rec_out_.reset_capacity(cfg_.record_frames);
    }
}

Engine::~Engine() = default;

void Engine::take_load(double& mean, double& max) noexcept {
    const std::uint64_t n = load_n_.exchange(0, std::memory_order_relaxed);
    const double s = load_sum_.exchange(0.0, std::memory_order_relaxed);
    max = load_max_.exchange(0.0, std::memory_order_relaxed);
    mean = n ? s / static_cast<double>(n) : 0.0;
}

void Engine::run_model(const float* in, float* out, std::size_t frames) noexcept {
    if (!bridge_) {
        stream_.process(in, out, frames);
        return;
    }
    const std::size_t n = bridge_->to_model(in, frames, model_in_.data());
    stream_.process(model_in_.data(), model_out_.data(), n);
    bridge_->from_model(model_out_.data(), n);
    if (bridge_->take(out, frames)) fifo_underruns_.fetch_add(1, std::memory_order_relaxed);
}

void Engine::process(const float* in, float* out, std::size_t frames) noexcept {
    if (frames > cfg_.block) {  // never expected from a fixed-size stream; stay safe rather than overrun
        for (std::size_t done = 0; done < frames; done += cfg_.block)
            process(in ? in + done : nullptr, out + done, std::min(cfg_.block, frames - done));
        return;
    }
    const float* src = in;
    if (!src) src = silence_.data();
    float pin = 0.0f;
    for (std::size_t i = 0; i < frames; ++i) pin = std::max(pin, std::abs(src[i]));

    const std::size_t L = dry_line_.size();  // the dry path: the input delayed by the wet path's latency
    const std::size_t lat = latency();

    const std::uint64_t now_frames = frames_.load(std::memory_order_relaxed);
    bool suspended = suspended_.load(std::memory_order_relaxed);
    if (suspended && now_frames >= suspended_until_) {  // retry a suspended model from a clean state
        stream_.reset();
        if (bridge_) bridge_->reset();
        overload_run_ = 0;
        suspended = false;
        suspended_.store(false, std::memory_order_relaxed);
    }

    // the wet path into `out` (unless suspended); the dry sample is read from the delay line as the line is fed
    if (!suspended) {
        const auto t0 = std::chrono::steady_clock::now();
        run_model(src, wet_.data(), frames);
        const auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        const double load = ns / (static_cast<double>(frames) * block_ns_per_frame_);
        load_sum_.store(load_sum_.load(std::memory_order_relaxed) + load, std::memory_order_relaxed);
        load_n_.store(load_n_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        if (load > load_max_.load(std::memory_order_relaxed)) load_max_.store(load, std::memory_order_relaxed);
        if (load > cfg_.overload_load) {
            overloaded_.fetch_add(1, std::memory_order_relaxed);
            if (++overload_run_ >= cfg_.overload_blocks) {
                suspended_.store(true, std::memory_order_relaxed);
                suspensions_.fetch_add(1, std::memory_order_relaxed);
                suspended_until_ = now_frames + frames +
                                   static_cast<std::uint64_t>(cfg_.retry_seconds * cfg_.device_rate);
            }
        } else {
            overload_run_ = 0;
        }
    }
    const bool use_dry = suspended || bypass_.load(std::memory_order_relaxed);
    float pout = 0.0f;
    for (std::size_t i = 0; i < frames; ++i) {
        dry_line_[(dry_pos_ + lat) % L] = src[i];
        const float d = dry_line_[dry_pos_];
        dry_pos_ = (dry_pos_ + 1) % L;
        out[i] = use_dry ? d : wet_[i];
        pout = std::max(pout, std::abs(out[i]));
    }

    if (pin > peak_in_.load(std::memory_order_relaxed)) peak_in_.store(pin, std::memory_order_relaxed);
    if (pout > peak_out_.load(std::memory_order_relaxed)) peak_out_.store(pout, std::memory_order_relaxed);
    if (rec_in_.capacity()) {
        const std::size_t a = rec_in_.push(src, frames);
        const std::size_t b = rec_out_.push(out, frames);
        if (a < frames || b < frames)
            record_dropped_.fetch_add(frames - std::min(a, b), std::memory_order_relaxed);
    }
    frames_.store(now_frames + frames, std::memory_order_relaxed);
}

}  // namespace ssm::denoise
