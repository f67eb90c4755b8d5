#pragma once
/** @file The real-time core of ssm-denoise, apart from PortAudio so that tests can drive it.
 *
 * `Engine::process` is what the audio callback runs: it resamples the device's block to the model's rate (when the
 * two differ), runs the model's `ssm::Stream`, resamples back, meters both sides and hands both sides to the
 * recorder's rings. Like a PortAudio callback it does not allocate, lock, make a system call or throw: everything
 * is sized in the constructor. A model that is too slow for the device is suspended (the dry signal passes, with
 * the same latency) and retried later, so it never holds the device up; the status line reports it.
 */
#include <samplerate.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "ring.hpp"
#include "ssmstream/stream.hpp"

namespace ssm::denoise {

struct EngineConfig {
    double device_rate = 0;           ///< the device's rate (Hz)
    std::size_t block = 64;           ///< the most frames one `process` call passes
    std::size_t record_frames = 0;    ///< capacity of each recording ring (frames); 0 = no recording
    int converter = SRC_SINC_FASTEST; ///< libsamplerate converter when the model's rate differs
    double overload_load = 1.0;       ///< model time / block time above which a block counts as overloaded
    int overload_blocks = 8;          ///< consecutive overloaded blocks before the model is suspended
    double retry_seconds = 5.0;       ///< how long a suspended model stays suspended before it is retried
};

/** Device rate <-> model rate in real time: libsamplerate both ways and a primed FIFO so that every device block
 * gets exactly its frames back. Everything is preallocated; the latency it adds is measured at construction. */
class RateBridge {
public:
    RateBridge(double device_rate, double model_rate, std::size_t block, int converter, std::size_t prime);
    ~RateBridge();
    RateBridge(const RateBridge&) = delete;
    RateBridge& operator=(const RateBridge&) = delete;

    /** Device-rate block in, model-rate frames out (into `model_buf`, at least `model_capacity()`); returns their
     * count. */
    std::size_t to_model(const float* in, std::size_t frames, float* model_buf) noexcept;
    /** Model-rate frames back to the device rate, into the FIFO. */
    void from_model(const float* model_out, std::size_t n) noexcept;
    /** Takes `frames` device-rate frames from the FIFO; returns how many were missing (filled with zeros). */
    std::size_t take(float* out, std::size_t frames) noexcept;
    std::size_t model_capacity() const noexcept { return model_cap_; }
    std::size_t fifo_level() const noexcept { return fifo_w_ - fifo_r_; }
    void reset() noexcept;

private:
    double down_ratio_, up_ratio_;
    std::size_t prime_, model_cap_;
    SRC_STATE* down_ = nullptr;
    SRC_STATE* up_ = nullptr;
    std::vector<float> fifo_;
    std::size_t fifo_r_ = 0, fifo_w_ = 0;
};

class Engine {
public:
    /** Throws ssm::Error when the model cannot run here (channels, a rate libsamplerate cannot bridge). */
    Engine(std::shared_ptr<const Model> model, const EngineConfig& config);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    /** One device block: `in` mono (nullptr = silence), `out` mono, `frames <= block`. Real-time safe. */
    void process(const float* in, float* out, std::size_t frames) noexcept;

    /** Live control from any thread: the dry signal (delayed by the same latency, so A/B does not jump). */
    void set_bypass(bool on) noexcept { bypass_.store(on, std::memory_order_relaxed); }
    bool bypass() const noexcept { return bypass_.load(std::memory_order_relaxed); }

    // ---- what the status line reads (any thread) ----
    /** Peak |sample| since the last call (the meter's hold is the status line's refresh period). */
    float take_peak_in() noexcept { return peak_in_.exchange(0.0f, std::memory_order_relaxed); }
    float take_peak_out() noexcept { return peak_out_.exchange(0.0f, std::memory_order_relaxed); }
    /** Model CPU load (time in the model and resamplers / block duration): the mean and the maximum since the last
     * call. */
    void take_load(double& mean, double& max) noexcept;
    std::uint64_t overloaded_blocks() const noexcept { return overloaded_.load(std::memory_order_relaxed); }
    std::uint64_t suspensions() const noexcept { return suspensions_.load(std::memory_order_relaxed); }
    bool suspended() const noexcept { return suspended_.load(std::memory_order_relaxed); }
    std::uint64_t frames() const noexcept { return frames_.load(std::memory_order_relaxed); }
    std::uint64_t fifo_underruns() const noexcept { return fifo_underruns_.load(std::memory_order_relaxed); }
    std::uint64_t record_dropped() const noexcept { return record_dropped_.load(std::memory_order_relaxed); }

    // ---- latency accounting, in device frames ----
    bool resampling() const noexcept { return bridge_ != nullptr; }
    std::size_t resampler_latency() const noexcept { return resampler_latency_; }
    /** The model's declared algorithmic latency, converted to device frames. */
    std::size_t model_latency() const noexcept { return model_latency_; }
    std::size_t latency() const noexcept { return resampler_latency_ + model_latency_; }

    /** The recording rings (device rate, mono): what came in, what went out. Null without recording. */
    SpscRing* record_in() noexcept { return rec_in_.capacity() ? &rec_in_ : nullptr; }
    SpscRing* record_out() noexcept { return rec_out_.capacity() ? &rec_out_ : nullptr; }

    const EngineConfig& config() const noexcept { return cfg_; }
    const Model& model() const noexcept { return *model_; }

private:
    void run_model(const float* in, float* out, std::size_t frames) noexcept;

    std::shared_ptr<const Model> model_;
    EngineConfig cfg_;
    Stream stream_;
    std::unique_ptr<RateBridge> bridge_;
    std::vector<float> model_in_, model_out_, wet_, silence_, dry_line_;
    std::size_t dry_pos_ = 0;
    std::size_t resampler_latency_ = 0, model_latency_ = 0;
    double block_ns_per_frame_ = 0;
    int overload_run_ = 0;
    std::uint64_t suspended_until_ = 0;
    SpscRing rec_in_, rec_out_;

    std::atomic<bool> bypass_{false}, suspended_{false};
    std::atomic<float> peak_in_{0}, peak_out_{0};
    std::atomic<double> load_sum_{0}, load_max_{0};
    std::atomic<std::uint64_t> load_n_{0};
    std::atomic<std::uint64_t> overloaded_{0}, suspensions_{0}, frames_{0}, fifo_underruns_{0}, record_dropped_{0};
};

}  // namespace ssm::denoise
