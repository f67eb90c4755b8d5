#pragma once
// The batch view of a layer's linear time-invariant part, for any family: given the family's own recurrence over
// independent channels (its streaming code), `LtiConv` runs it either as that recurrence (channels split over
// threads; bit-identical to streaming) or as an FFT convolution with the recurrence's impulse response (FftConv),
// choosing by the cost model or as forced — and keeps states interchangeable with Stream in both:
//   kernel   the impulse response of the family's recurrence from a zero state (all channels at once), cut where the
//            rest is below `kernel_tolerance` × ‖K‖₁ — estimated from the decay of consecutive blocks of taps, as
//            b·r/(1 − r) for a block sum b and block-to-block ratio r — or exactly `fir_length` taps for a kernel
//            that is finite by construction (a truncated EMA or DSS);
//   save     the recurrence replayed over the last Lk inputs (the convolution's history) from a zero state, or from
//            a loaded state over the inputs since the load: the state streaming would hold, to the kernel tolerance;
//   load     the loaded state's free response (the recurrence run on zeros from it) added to the convolution's
//            output for the first Lk frames after the load; the history starts empty.
// A layer with several LTI parts (H3: a shift SSM and a diagonal SSM) holds one LtiConv per part, each with its
// own slice of the layer state.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "layers/layer.hpp"
#include "ops/fft_conv.hpp"

namespace ssm::detail {

struct LtiCore {
    std::size_t channels = 0;    ///< input channels (rows of `channels`)
    std::size_t fan = 1;         ///< outputs per input channel: y rows of channels·fan, j = c·fan + f
    std::size_t state_size = 0;  ///< floats of this part's state (a contiguous slice of the layer state)
    std::size_t fir_length = 0;  ///< > 0: the kernel has exactly this many taps
    double recurrence_ns = 0;    ///< the recurrence's cost per input sample per channel, ns (cost model)
    std::size_t group = 1;       ///< `scan` takes ranges of groups of this many channels (lane layouts)
    /** The recurrence over channels (or groups of `group` channels) [c0, c1): rows of `channels` → rows of channels·fan, linear in (state, input)
     * (the D·u skip included). Ranges of channels touch disjoint state, so they run in parallel. */
    std::function<void(std::size_t c0, std::size_t c1, const float* in, float* y, std::size_t frames, float* state)> scan;
    /** Called once after all channel ranges ran `frames` (a ring position shared by all channels), or empty. */
    std::function<void(float* state, std::size_t frames)> advance;
};

class LtiConv {
public:
    /** `what` names the layer in the plan. */
    LtiConv(BatchContext& ctx, LtiCore core, std::string what);
    /** y = the LTI part over `frames` rows of `in` (y distinct from in). */
    void run(const float* in, float* y, std::size_t frames);
    void reset();
    void save(float* dst) const;
    void load(const float* src);
    const LayerPlan& plan() const noexcept { return plan_; }
    bool fft() const noexcept { return conv_ != nullptr; }

private:
    void recur(const float* in, float* y, std::size_t frames, float* state) const;
    enum class Kernel { found, too_long, costlier };
    /** `break_even` > 0: stop (costlier) once the kernel is known to be longer than that (the FFT would cost more). */
    Kernel find_kernel(double tol, std::size_t cap, std::size_t break_even);
    double fft_cost(const FftConv::Choice& c) const noexcept;

    static constexpr std::size_t kBlock = 1024;  // frames per block of the impulse response, replay and free response
    ThreadPool& pool_;
    LtiCore core_;
    std::size_t Cout_ = 0, chunk_ = 0;
    LayerPlan plan_;
    std::vector<float> state_;  // the recurrence's state (recurrence backend)
    // FFT backend
    std::size_t Lk_ = 0;
    std::vector<float> taps_;  // [Cout][Lk] while planning, then released
    std::unique_ptr<FftConv> conv_;
    std::vector<float> loaded_;          // the state at the last load
    std::vector<float> free_;            // the loaded state run on zeros so far
    std::size_t since_load_ = 0;         // frames since the load
    bool has_load_ = false;
    mutable std::vector<float> rows_in_, rows_out_;  // kBlock rows of scratch (planning, replay, free response)
};

}  // namespace ssm::detail
