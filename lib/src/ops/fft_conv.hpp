#pragma once
// Causal FFT convolution of many channels with fixed real kernels, by FFTW overlap-save, for a Batch: the engine
// behind every time-invariant layer's convolution view (S4D, S4, DSS, GSS, H3, MEGA's EMA, HiPPO).
//
// `inputs` channels come in as rows (frames × stride); each feeds `fan` kernels (HiPPO: the N coefficients of one
// input; everything else: 1), so output channel j = c·fan + f is K_j ∗ u_c, written as rows of inputs·fan. The last
// Lk−1 inputs of each channel are kept between chunks (the history: this view's state), so a signal of any length
// runs in chunks of bounded memory. Work is cut into items of a few channels × one segment of outputs: an item
// transposes its windows straight from the input rows (and the history) into per-thread buffers, transforms them
// there and transposes the outputs straight into the output rows, so no channel-major copy of the chunk is made.
// One forward transform per input window serves its `fan` kernels. Plans are made once (FFTW_MEASURE,
// time-limited); `run` allocates nothing.
#include <fftw3.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "layers/layer.hpp"

namespace ssm::detail {

/** FFTW's planner is not thread-safe (execution is): every plan and destroy in the library holds this. */
std::mutex& fftw_planner_mutex();

struct FftwFree {
    void operator()(void* p) const noexcept { fftwf_free(p); }
};
template <class T>
using FftwBuf = std::unique_ptr<T[], FftwFree>;

class FftConv {
public:
    /** The transform size chosen for kernels of `taps` taps, and what it costs. */
    struct Choice {
        std::size_t taps = 0, M = 0, hop = 0;
        double outputs = 0;     ///< outputs per transform pair over a whole chunk
        double per_output = 0;  ///< work units per output (M·log2 M per transform, with a cache factor)
        double spectra_bytes = 0;
        bool fits = false;      ///< the kernel spectra fit `budget`
        /** Estimated ns per output sample per kernel, one core (constants fitted on BM_S4DConv, bench/README.md). */
        double cost_ns() const noexcept { return kFftC * per_output + kFftD; }
    };
    static constexpr double kFftC = 0.27, kFftD = 3.5;

    /** The cheapest size 2^a·3^b·5^c per output within `budget` bytes of spectra for `kernels` kernels (or the
     * smallest few when none fits). */
    static Choice choose(std::size_t taps, std::size_t chunk, std::size_t kernels, double budget);

    /** Reserves its buffers in `ctx` and plans. `kernel(j, taps)` fills output channel j's `choice.taps` taps
     * (float64, unscaled). */
    FftConv(BatchContext& ctx, std::size_t inputs, std::size_t fan, const Choice& choice,
            const std::function<void(std::size_t, double*)>& kernel);
    ~FftConv();
    FftConv(const FftConv&) = delete;
    FftConv& operator=(const FftConv&) = delete;

    /** out[t·out_stride + j] = Σ_k K_j[k] u_c[t − k] for t < frames (j = c·fan + f), with the history before. */
    void run(const float* in, std::size_t in_stride, float* out, std::size_t out_stride, std::size_t frames);

    /** The last `history_length()` inputs of channel c, oldest first. */
    const float* history(std::size_t c) const noexcept { return hist_.data() + c * hl_; }
    std::size_t history_length() const noexcept { return hl_; }
    void clear_history() noexcept { std::fill(hist_.begin(), hist_.end(), 0.0f); }
    const Choice& choice() const noexcept { return ch_; }

private:
    /** Input channels per item: two 8×8 transpose tiles, a whole 64-byte line of each row read and written (8 read
     * and wrote half lines, each line twice from memory: measured slower). */
    static constexpr std::size_t kGroup = 16;
    /** Rows the input transposes prefetch ahead. */
    static constexpr std::size_t kAhead = 64;
    /** Chunks of at least this many output floats are written past the caches: they would leave them before being
     * read again, and a streamed store needs no read of the line first. */
    static constexpr std::size_t kStreamFloats = std::size_t{1} << 20;
    static std::size_t spec_stride(std::size_t m) { return (m / 2 + 1 + 7) / 8 * 8; }
    // A window's stride in the per-thread buffer: 64-byte aligned as the plans' arrays, +16 floats so that windows a
    // power of two apart do not alias in the caches.
    std::size_t win_stride() const { return (ch_.M + 15) / 16 * 16 + 16; }
    // per thread: kGroup input windows, (fan > 1) kGroup output windows, an input spectrum and a product spectrum
    std::size_t buf_stride() const { return (fan_ > 1 ? 2 : 1) * kGroup * win_stride() + 4 * spec_stride(ch_.M); }
    void item(const float* in, std::size_t in_stride, float* out, std::size_t out_stride, std::size_t g, std::size_t s,
              std::size_t frames, std::size_t part);
    void keep_history(const float* in, std::size_t in_stride, std::size_t frames, std::size_t c0, std::size_t c1);

    ThreadPool& pool_;
    std::size_t Cin_, fan_, Cout_;
    Choice ch_;
    std::size_t hl_ = 0, hop_ = 0;
    FftwBuf<fftwf_complex> kf_;
    Workspace::Slice bufs_;  // per-thread buffers
    fftwf_plan fwd_ = nullptr, inv_ = nullptr;
    std::vector<float> hist_;  // [Cin][hl_]
};

/** Fills `plan`'s kernel length, FFT size, outputs, backend and reason for a layer whose kernel of `taps` taps would
 * run as `c` at `fft_ns`, or as its recurrence at `rec_ns` (ns per sample per channel); true: use the FFT. Forced
 * FFT always takes it; automatic takes the cheaper one within the spectra budget. */
bool choose_fft(LayerPlan& plan, Backend backend, std::size_t taps, const FftConv::Choice& c, double fft_ns, double rec_ns);

/** "%.3g" of v (plans' reasons). */
std::string fmt3(double v);

}  // namespace ssm::detail
