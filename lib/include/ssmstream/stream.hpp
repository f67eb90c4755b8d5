#pragma once
/** @file ssm::Stream — one live signal's recurrent state, run sample by sample (the recurrent view).
 *
 * Lifecycle as in audio frameworks: `prepare` (may allocate) → `process` many times (real-time safe) → `reset`.
 *
 * The `process` contract, like a PortAudio callback: it does not allocate or free memory, take a lock, make a
 * system call, log, or throw, and its work is bounded by `frames`. Every check it would need happened in
 * `prepare`. One Stream is used by one thread at a time.
 */
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ssmstream/model.hpp"

namespace ssm {

/** What `prepare` sizes for (names as in JUCE's dsp::ProcessSpec). */
struct ProcessSpec {
    double sample_rate = 0;     ///< the signal's rate; must equal the model's (unless the model's is 0)
    std::size_t max_block = 512; ///< the most frames one `process` call will pass
    std::size_t channels = 0;   ///< interleaved input channels; 0 = the model's input width
};

/** What to do with a NaN or ±Inf input sample, so a glitch never poisons a stream forever. */
enum class NonFinitePolicy {
    zero_sample, ///< replace the sample by 0 and go on (default)
    reset_state, ///< replace by 0 and zero the recurrent state
};

class Stream {
public:
    explicit Stream(std::shared_ptr<const Model> model, NonFinitePolicy policy = NonFinitePolicy::zero_sample);
    ~Stream();
    Stream(Stream&&) noexcept;
    Stream& operator=(Stream&&) noexcept;

    /** Allocates state and scratch for `spec`. Throws UsageError on a sample-rate or channel mismatch. */
    void prepare(const ProcessSpec& spec);
    /** Zeroes the recurrent state; keeps the buffers. Real-time safe. */
    void reset() noexcept;

    /** Runs `frames` frames of interleaved input (frames × in_channels) into `out` (frames × out_channels).
     * Real-time safe (see file comment). `in` and `out` may alias only if the widths are equal. Blocks longer than
     * `max_block` are split internally. Output sample t depends only on inputs up to t. Before `prepare` it writes
     * zeros. */
    void process(const float* in, float* out, std::size_t frames) noexcept;

    /** Size of a saved state in bytes (a small header + the state floats). */
    std::size_t state_bytes() const noexcept;
    /** Copies the state into `dst` (at least `state_bytes()`); throws UsageError if too small or not prepared. */
    void save_state(std::span<std::byte> dst) const;
    /** Restores a state saved from a Stream or Batch of the same model; throws UsageError on a mismatch. */
    void load_state(std::span<const std::byte> src);

    /** Non-finite input samples seen since prepare (read from any thread). */
    std::uint64_t nonfinite_count() const noexcept { return nonfinite_.load(std::memory_order_relaxed); }
    /** Frames processed since prepare or reset. */
    std::uint64_t frames_processed() const noexcept { return frames_; }

    const Model& model() const noexcept { return *model_; }
    const ProcessSpec& spec() const noexcept { return spec_; }
    bool prepared() const noexcept { return prepared_; }

private:
    std::shared_ptr<const Model> model_;
    NonFinitePolicy policy_;
    ProcessSpec spec_{};
    bool prepared_ = false;
    std::vector<float> state_;   // all layers' states, back to back
    std::vector<float> scratch_; // ping-pong activations + per-layer scratch
    std::vector<std::size_t> state_offset_, scratch_offset_;
    std::size_t act_size_ = 0;
    std::atomic<std::uint64_t> nonfinite_{0};
    std::uint64_t frames_ = 0;
};

/** Header and layout of saved states, shared by Stream and Batch. */
namespace state_format {
inline constexpr std::uint32_t magic = 0x53534d53;  // "SSMS"
inline constexpr std::uint32_t version = 1;
struct Header {
    std::uint32_t magic;
    std::uint32_t version;
    std::uint64_t model_fingerprint;
    std::uint64_t floats;
    std::uint64_t frames;
};
}  // namespace state_format

}  // namespace ssm
