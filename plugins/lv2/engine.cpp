#include "engine.hpp"

#include <samplerate.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

namespace ssm::lv2 {

namespace {
std::string hz(double r) {
    char b[32];
    std::snprintf(b, sizeof b, "%g Hz", r);
    return b;
}
}  // namespace

// Host rate → model rate → model → host rate for one interleaved lane, exactly `n` frames out for `n` in.
// Everything is sized in the constructor; `process` only runs the two converters, the model and the FIFO.
class RateBridge {
public:
    static constexpr int quality = SRC_SINC_MEDIUM_QUALITY;  // the converter `ssm run` uses

    RateBridge(std::size_t width, double host_rate, double model_rate)
        : width_(width), up_ratio_(model_rate / host_rate), down_ratio_(host_rate / model_rate) {
        int err = 0;
        up_ = src_new(quality, static_cast<int>(width), &err);
        if (up_) down_ = src_new(quality, static_cast<int>(width), &err);
        if (!up_ || !down_) {
            release();
            throw Error(std::string("libsamplerate: ") + src_strerror(err));
        }
        model_cap_ = static_cast<std::size_t>(std::ceil(static_cast<double>(max_chunk) * up_ratio_)) + 32;
        host_cap_ = static_cast<std::size_t>(std::ceil(static_cast<double>(model_cap_) * down_ratio_)) + 32;
        model_in_.assign(model_cap_ * width_, 0.0f);
        model_out_.assign(model_cap_ * width_, 0.0f);
        host_tmp_.assign(host_cap_ * width_, 0.0f);
        prefill_ = worst_deficit() + 1;
        fifo_.assign((prefill_ + host_cap_ + max_chunk + 1) * width_, 0.0f);
        latency_ = measure_latency();
        reset();
    }
    ~RateBridge() { release(); }
    RateBridge(const RateBridge&) = delete;
    RateBridge& operator=(const RateBridge&) = delete;

    /** The most model-rate frames one call hands the model (the Stream's max_block). */
    std::size_t model_cap() const noexcept { return model_cap_; }
    std::size_t latency() const noexcept { return latency_; }
    std::uint64_t underruns() const noexcept { return underruns_; }

    /** `n` <= max_chunk interleaved host frames in, `n` out; `model` null = identity (used for measuring). */
    void process(const float* in, float* out, std::size_t n, Stream* model) noexcept {
        const std::size_t k = step(in, n, model);
        push(host_tmp_.data(), k);
        pop(out, n);
    }

    void reset() noexcept {
        src_reset(up_);
        src_reset(down_);
        std::fill(fifo_.begin(), fifo_.end(), 0.0f);
        head_ = 0;
        count_ = prefill_;  // zeros already in place
    }

private:
    // One pass through both converters and the model; returns the host-rate frames left in host_tmp_.
    std::size_t step(const float* in, std::size_t n, Stream* model) noexcept {
        SRC_DATA d{};
        d.data_in = in;
        d.input_frames = static_cast<long>(n);
        d.data_out = model_in_.data();
        d.output_frames = static_cast<long>(model_cap_);
        d.src_ratio = up_ratio_;
        if (src_process(up_, &d) != 0 || d.input_frames_used != static_cast<long>(n)) ++underruns_;  // cannot happen: sized above
        const auto m = static_cast<std::size_t>(d.output_frames_gen);
        if (m > 0) {
            if (model)
                model->process(model_in_.data(), model_out_.data(), m);
            else
                std::copy_n(model_in_.data(), m * width_, model_out_.data());
        }
        SRC_DATA e{};
        e.data_in = model_out_.data();
        e.input_frames = static_cast<long>(m);
        e.data_out = host_tmp_.data();
        e.output_frames = static_cast<long>(host_cap_);
        e.src_ratio = down_ratio_;
        if (src_process(down_, &e) != 0 || e.input_frames_used != static_cast<long>(m)) ++underruns_;
        return static_cast<std::size_t>(e.output_frames_gen);
    }

    void push(const float* src, std::size_t k) noexcept {
        const std::size_t cap = fifo_.size() / width_;
        k = std::min(k, cap - count_);
        std::size_t tail = (head_ + count_) % cap;
        for (std::size_t i = 0; i < k; ++i) {
            std::copy_n(src + i * width_, width_, fifo_.data() + tail * width_);
            tail = tail + 1 == cap ? 0 : tail + 1;
        }
        count_ += k;
    }

    void pop(float* dst, std::size_t n) noexcept {
        const std::size_t cap = fifo_.size() / width_;
        const std::size_t have = std::min(n, count_);
        for (std::size_t i = 0; i < have; ++i) {
            std::copy_n(fifo_.data() + head_ * width_, width_, dst + i * width_);
            head_ = head_ + 1 == cap ? 0 : head_ + 1;
        }
        count_ -= have;
        if (have < n) {
            ++underruns_;
            std::fill(dst + have * width_, dst + n * width_, 0.0f);
        }
    }

    // How far output production can fall behind consumption for a few block patterns (1 frame, odd sizes, the
    // largest chunk, a mix); the output count of the converters depends only on the input counts, so silence
    // through the identity measures it exactly for each pattern.
    std::size_t worst_deficit() {
        const std::vector<float> zeros(max_chunk * width_, 0.0f);
        const auto frames = static_cast<std::size_t>(std::max(down_ratio_, 1.0) * 1024 + 48000);
        const std::size_t mix[] = {1, max_chunk, 3, 128, 64, 17, max_chunk, 1, 100};
        std::size_t worst = 0;
        for (std::size_t pattern = 0; pattern < 6; ++pattern) {
            src_reset(up_);
            src_reset(down_);
            long long balance = 0;
            std::size_t t = 0;
            for (std::size_t i = 0; t < frames; ++i) {
                const std::size_t n = pattern == 0 ? 1 : pattern == 1 ? 7 : pattern == 2 ? 64 : pattern == 3 ? 100
                                    : pattern == 4 ? max_chunk : mix[i % std::size(mix)];
                balance += static_cast<long long>(step(zeros.data(), n, nullptr)) - static_cast<long long>(n);
                if (balance < 0) worst = std::max(worst, static_cast<std::size_t>(-balance));
                t += n;
            }
        }
        return worst;
    }

    // An impulse through the whole pipeline (identity model, FIFO prefilled): where its peak comes out is the latency.
    std::size_t measure_latency() {
        reset();
        const auto frames = prefill_ + static_cast<std::size_t>(std::max(down_ratio_, 1.0) * 1024 + 8192);
        std::vector<float> in(64 * width_, 0.0f), out(64 * width_);
        float best = -1;
        std::size_t at = 0;
        for (std::size_t t = 0; t < frames; t += 64) {
            std::fill(in.begin(), in.end(), 0.0f);
            if (t == 0) std::fill_n(in.begin(), width_, 1.0f);
            process(in.data(), out.data(), 64, nullptr);
            for (std::size_t i = 0; i < 64; ++i) {
                if (std::abs(out[i * width_]) > best) {
                    best = std::abs(out[i * width_]);
                    at = t + i;
                }
            }
        }
        underruns_ = 0;
        return at;
    }

    void release() noexcept {
        if (up_) src_delete(up_);
        if (down_) src_delete(down_);
        up_ = down_ = nullptr;
    }

    std::size_t width_;
    double up_ratio_, down_ratio_;
    SRC_STATE* up_ = nullptr;
    SRC_STATE* down_ = nullptr;
    std::size_t model_cap_ = 0, host_cap_ = 0, prefill_ = 0, latency_ = 0;
    std::vector<float> model_in_, model_out_, host_tmp_, fifo_;
    std::size_t head_ = 0, count_ = 0;
    std::uint64_t underruns_ = 0;
};

struct Engine::Lane {
    std::size_t first = 0, width = 1;
    std::optional<Stream> stream;
    std::unique_ptr<RateBridge> bridge;
    std::vector<float> in, out;  // interleaved scratch
};

Engine::Engine(double host_rate, std::size_t channels) : host_rate_(host_rate), channels_(channels) {
    allocate_io(0);
}

Engine::Engine(const std::string& path, double host_rate, std::size_t channels)
    : host_rate_(host_rate), channels_(channels), path_(path) {
    if (path.empty()) throw UsageError("empty model path");
    model_ = Model::load(path);
    const auto& info = model_->info();
    if (info.in_channels != info.out_channels)
        throw ConfigError(path + ": model '" + info.name + "' has " + std::to_string(info.in_channels) + " input and " +
                          std::to_string(info.out_channels) + " output channels; the plugin runs models with as many outputs as inputs");
    std::size_t width = 0, lanes = 0;
    if (info.in_channels == 1) {
        width = 1;
        lanes = channels;
    } else if (info.in_channels == channels) {
        width = channels;
        lanes = 1;
    } else {
        throw ConfigError(path + ": model '" + info.name + "' takes " + std::to_string(info.in_channels) +
                          " channels; this plugin instance has " + std::to_string(channels) +
                          " (use the variant with as many channels, or a 1-channel model, which runs once per channel)");
    }
    const double model_rate = info.sample_rate > 0 ? info.sample_rate : host_rate;
    const bool resample = std::abs(model_rate - host_rate) > 1e-6;
    if (resample && (!src_is_valid_ratio(model_rate / host_rate) || !src_is_valid_ratio(host_rate / model_rate)))
        throw ConfigError(path + ": model '" + info.name + "' runs at " + hz(model_rate) + " and the host at " + hz(host_rate) +
                          "; libsamplerate converts only up to 256x either way, so the plugin refuses this model at this rate");
    std::size_t bridge_latency = 0;
    for (std::size_t l = 0; l < lanes; ++l) {
        auto lane = std::make_unique<Lane>();
        lane->first = l * width;
        lane->width = width;
        lane->stream.emplace(model_);
        std::size_t block = max_chunk;
        if (resample) {
            lane->bridge = std::make_unique<RateBridge>(width, host_rate, model_rate);
            block = lane->bridge->model_cap();
            bridge_latency = lane->bridge->latency();
        }
        lane->stream->prepare({.sample_rate = model_rate, .max_block = block, .channels = 0});
        lane->in.assign(max_chunk * width, 0.0f);
        lane->out.assign(max_chunk * width, 0.0f);
        lanes_.push_back(std::move(lane));
    }
    const auto model_latency = static_cast<std::size_t>(std::lround(static_cast<double>(info.latency_samples) * host_rate / model_rate));
    allocate_io(bridge_latency + model_latency);
}

Engine::~Engine() = default;

void Engine::allocate_io(std::size_t delay) {
    latency_ = delay;
    wet_.assign(channels_, std::vector<float>(max_chunk, 0.0f));
    dry_.assign(channels_, std::vector<float>(max_chunk, 0.0f));
    delay_.assign(channels_, std::vector<float>(delay + max_chunk, 0.0f));
    delay_pos_ = 0;
}

bool Engine::resampling() const noexcept {
    return !lanes_.empty() && lanes_.front()->bridge != nullptr;
}

std::uint64_t Engine::underruns() const noexcept {
    std::uint64_t n = 0;
    for (const auto& l : lanes_)
        if (l->bridge) n += l->bridge->underruns();
    return n;
}

void Engine::reset() noexcept {
    for (auto& l : lanes_) {
        l->stream->reset();
        if (l->bridge) l->bridge->reset();
    }
    for (auto& d : delay_) std::fill(d.begin(), d.end(), 0.0f);
    delay_pos_ = 0;
}

void Engine::process(const float* const* in, std::size_t frames) noexcept {
    frames = std::min(frames, max_chunk);
    // Dry path: the input delayed by the latency, through one ring per channel.
    const std::size_t size = channels_ ? delay_[0].size() : 0;
    for (std::size_t c = 0; c < channels_; ++c) {
        auto& ring = delay_[c];
        std::size_t w = delay_pos_;
        std::size_t r = (delay_pos_ + size - latency_) % size;
        for (std::size_t i = 0; i < frames; ++i) {
            ring[w] = in[c][i];
            dry_[c][i] = ring[r];
            w = w + 1 == size ? 0 : w + 1;
            r = r + 1 == size ? 0 : r + 1;
        }
    }
    delay_pos_ = size ? (delay_pos_ + frames) % size : 0;
    if (lanes_.empty()) {
        for (std::size_t c = 0; c < channels_; ++c) std::copy_n(dry_[c].data(), frames, wet_[c].data());
        return;
    }
    for (auto& lane : lanes_) {
        const std::size_t w = lane->width;
        const float* src = in[lane->first];
        float* dst = wet_[lane->first].data();
        if (w > 1) {
            for (std::size_t i = 0; i < frames; ++i)
                for (std::size_t c = 0; c < w; ++c) lane->in[i * w + c] = in[lane->first + c][i];
            src = lane->in.data();
            dst = lane->out.data();
        }
        if (lane->bridge)
            lane->bridge->process(src, dst, frames, &*lane->stream);
        else
            lane->stream->process(src, dst, frames);
        if (w > 1) {
            for (std::size_t i = 0; i < frames; ++i)
                for (std::size_t c = 0; c < w; ++c) wet_[lane->first + c][i] = lane->out[i * w + c];
        }
    }
}

std::string Engine::describe() const {
    if (!model_) return "no model (passthrough)";
    const auto& info = model_->info();
    std::string s = "model '" + info.name + "' from " + path_ + ": " + std::to_string(info.in_channels) + " channel(s)";
    if (lanes_.size() > 1) s += ", one stream per channel";
    const double model_rate = info.sample_rate > 0 ? info.sample_rate : host_rate_;
    if (resampling())
        s += "; model at " + hz(model_rate) + ", host at " + hz(host_rate_) + ": resampled inside (libsamplerate)";
    else
        s += "; at " + hz(host_rate_);
    s += "; latency " + std::to_string(latency_) + " frames";
    return s;
}

}  // namespace ssm::lv2
