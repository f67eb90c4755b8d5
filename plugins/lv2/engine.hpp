#pragma once
/** @file ssm::lv2::Engine — one loaded model ready to run at the host's rate, inside the LV2 plugin.
 *
 * Built off the audio thread (the constructor loads, validates, allocates every buffer and may throw ssm::Error
 * with a message for the host's log); run on the audio thread (`process` and `reset` are real-time safe: no
 * allocation, lock, system call or exception).
 *
 * When the model's sample rate differs from the host's, the engine resamples inside with libsamplerate: host rate
 * → model rate → model → host rate, with a FIFO on the way out so that every call returns exactly as many frames as
 * it was given. The FIFO's prefill and the converters' delay are measured when the engine is built (an impulse
 * through the same pipeline with the model replaced by identity) and reported as latency. The dry signal is
 * delayed by the same latency so that dry/wet and bypass stay aligned with the wet path.
 */
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ssmstream/ssmstream.hpp"

namespace ssm::lv2 {

/** The most host frames one `Engine::process` call takes; the plugin splits longer blocks. */
inline constexpr std::size_t max_chunk = 256;

class RateBridge;

class Engine {
public:
    /** A passthrough engine (no model): wet = dry = input, latency 0. */
    Engine(double host_rate, std::size_t channels);
    /** Loads `path` for a host running at `host_rate` with `channels` audio channels (1 or 2). Throws ssm::Error
     * naming the file and the fault: unreadable or malformed model, a channel layout the variant cannot run, or a
     * sample rate too far from the host's for libsamplerate (ratio beyond 1/256..256). */
    Engine(const std::string& path, double host_rate, std::size_t channels);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    /** Runs `frames` <= max_chunk frames of `in[c]` (one pointer per channel). Afterwards `wet(c)` holds the model's
     * output and `dry(c)` the input delayed by `latency()`. Real-time safe. */
    void process(const float* const* in, std::size_t frames) noexcept;
    const float* wet(std::size_t c) const noexcept { return wet_[c].data(); }
    const float* dry(std::size_t c) const noexcept { return dry_[c].data(); }

    /** Zeroes the model's state, the converters and the delay lines (the FIFO gets its prefill back). Real-time safe. */
    void reset() noexcept;

    /** Total latency in host frames: resampling pipeline + the model's declared latency. */
    std::size_t latency() const noexcept { return latency_; }
    /** The model file this engine runs ("" for passthrough). */
    const std::string& path() const noexcept { return path_; }
    bool has_model() const noexcept { return !path_.empty(); }
    bool resampling() const noexcept;
    /** FIFO underruns since construction (0 unless the latency measurement was wrong; tests assert it). */
    std::uint64_t underruns() const noexcept;
    /** One line for the host's log: model, rates, channels, latency. */
    std::string describe() const;

private:
    struct Lane;  // one Stream (width 1 or 2 interleaved) and, when resampling, its RateBridge
    void allocate_io(std::size_t delay);
    double host_rate_;
    std::size_t channels_;
    std::string path_;
    std::shared_ptr<const Model> model_;
    std::vector<std::unique_ptr<Lane>> lanes_;
    std::vector<std::vector<float>> wet_, dry_;
    std::vector<std::vector<float>> delay_;  // per channel ring of the dry input
    std::size_t delay_pos_ = 0;
    std::size_t latency_ = 0;
};

}  // namespace ssm::lv2
