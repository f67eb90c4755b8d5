#pragma once
/** @file ssm::Batch — the whole-sequence view for offline runs.
 *
 * Time-invariant layers (S4D) run as FFT convolution (FFTW, plans made once at construction) with overlap-save;
 * the input history carried between calls is the layer's state, so a signal of any length is processed in chunks
 * of bounded memory and the result equals streaming over the whole input (to float tolerance; the truncation of
 * the kernel is bounded at construction, see `plan()`). Other layers run blocked over a whole chunk, split across
 * threads. Backend choice is per layer by a cost model, or forced.
 */
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ssmstream/model.hpp"

namespace ssm {

enum class Backend {
    automatic,  ///< per layer, the cheaper of FFT and recurrence by the cost model
    recurrence, ///< the blocked recurrent view (the same maths as Stream)
    fft,        ///< FFT convolution for every layer that has a convolution view
};

/** "auto" | "stream" | "recurrence" | "fft" → Backend; throws UsageError otherwise. */
Backend backend_from_string(std::string_view name);

struct BatchOptions {
    Backend backend = Backend::automatic;
    std::size_t threads = 0;           ///< 0 = all hardware threads
    std::size_t chunk_frames = 1 << 15; ///< frames per internal chunk (memory bound)
    double kernel_tolerance = 1e-7;    ///< FFT view: kernel tail dropped ≤ this × ‖K‖₁
    std::size_t max_kernel = 1 << 17;  ///< FFT view: a layer whose kernel decays slower runs as recurrence
    double fft_layer_bytes = 24e6;     ///< FFT view: kernel spectra per layer above this run as recurrence (auto)
};

/** How one layer is run, and why (printed by `ssm run --json` and on a forced fallback). */
struct LayerPlan {
    std::string layer;
    std::string backend;   ///< "fft", "recurrence", "ssd" (Mamba-2's chunked matrix form) or "pointwise"
    std::string reason;
    std::size_t kernel_length = 0; ///< FFT: taps kept
    std::size_t fft_size = 0;
    std::size_t outputs_per_fft = 0;  ///< FFT: outputs per transform pair over a whole chunk (hop, or less)
};

class Batch {
public:
    explicit Batch(std::shared_ptr<const Model> model, BatchOptions options = {});
    ~Batch();
    Batch(Batch&&) noexcept;
    Batch& operator=(Batch&&) noexcept;

    /** Processes `frames` interleaved frames, carrying the state from the previous call: calling it on
     * consecutive pieces of a signal gives the same output as one call on the whole. Any `frames`. */
    void process(const float* in, float* out, std::size_t frames);
    /** Convenience: a whole in-memory signal (frames × in_channels) → frames × out_channels, from the current state. */
    std::vector<float> run(std::span<const float> in);
    /** Zero state, as a fresh Stream. */
    void reset();

    /** Saved states are interchangeable with Stream's: hand a live stream to batch and back. */
    std::size_t state_bytes() const noexcept;
    void save_state(std::span<std::byte> dst) const;
    void load_state(std::span<const std::byte> src);

    const std::vector<LayerPlan>& plan() const noexcept;
    std::size_t threads() const noexcept;
    const Model& model() const noexcept;
    /** Non-finite input samples replaced by 0 so far. */
    std::uint64_t nonfinite_count() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ssm
