#pragma once
// Overlap-save FFT convolution of H channels through cuFFT (fft_conv.cu), the engine under ssm::cuda::FftConv and
// the S4D layer. Per call of T frames and per channel: the window of M inputs ending at each hop of outputs (the hl =
// taps − 1 inputs before the call come from the carried history) is transformed, multiplied by the kernel's
// spectrum (scaled by 1/M so the inverse needs no pass of its own), transformed back, and its last hop outputs kept.
// All windows of all channels are one batched transform each way. Where cuFFT accepts LTO callbacks (libnvJitLink
// found at run time), the gather, multiply and scatter passes are callbacks inside cuFFT's own kernels
// (fft_callbacks.cu), so a call moves no more bytes than its two transforms; otherwise they run as kernels of their own.
#include <cufft.h>

#include <cstddef>
#include <map>

#include "common.hpp"
#include "ops.hpp"

namespace ssm::cuda::detail {

class OverlapSave {
public:
    /** `fft_size` 0: a power of two ≥ 4 × taps, at least 4096, at most what a call of `max_frames` can use.
     * `callbacks`: use the fused cuFFT callbacks for transforms of 2^16 and more (faster per call, but each plan is
     * JIT-linked when first needed, a cost of the order of 0.1 s: worth it for long convolutions run many times, not
     * for the per-chunk plans of a Batch, which keeps the separate kernels). */
    OverlapSave(std::size_t channels, std::size_t taps, std::size_t max_frames, std::size_t fft_size = 0, bool callbacks = false);
    ~OverlapSave();
    OverlapSave(const OverlapSave&) = delete;
    OverlapSave& operator=(const OverlapSave&) = delete;

    /** Kernel taps: device array [channels][taps] float32. */
    void set_kernel(const float* d_taps);
    /** x: channel-major [channels][x_stride] (T new samples each) → y: channel-major [channels][y_stride], act applied. */
    void run(const float* x, std::size_t x_stride, float* y, std::size_t y_stride, std::size_t frames, Act act = Act::none);
    void reset();

    std::size_t channels() const noexcept { return H_; }
    std::size_t taps() const noexcept { return taps_; }
    std::size_t fft_size() const noexcept { return M_; }
    std::size_t hop() const noexcept { return hop_; }
    /** Whether the transforms carry the fused callbacks (false: separate gather/multiply/scatter kernels). */
    bool fused() const noexcept { return fused_; }

private:
    struct Plans {
        cufftHandle fwd = 0, inv = 0;
        void* info = nullptr;  // FftCallbackInfo in device memory (fused plans only)
    };
    bool make_fused(Plans& p, std::size_t windows);
    Plans& plans_for(std::size_t windows);

    std::size_t H_, taps_, hl_, M_, hop_, max_frames_, max_windows_;
    bool fused_ = true;
    cufftHandle kplan_ = 0;            // plain R2C of H rows, for the kernel spectra
    DeviceArray<float> seg_;       // [H·S][M + 2]: windows, transformed in place
    DeviceArray<float> kf_;        // [H][M/2 + 1] complex: kernel spectra / M
    DeviceArray<float> hist_, hist2_;  // [H][hl]: the last hl inputs of each channel, oldest first
    std::map<std::size_t, Plans> plans_;  // by windows per channel; made once per distinct call length class
};

/** Taps of S4D kernels in double on the device: K[h][t] = (t == 0 ? D[h] : 0) + Σ_n Re(CB[h][n] · A[h][n]^t), written
 * as float to out[h][taps]. A, CB: [H][N2] complex as (re, im) pairs. */
void s4d_taps(const double* A, const double* CB, const double* D, std::size_t H, std::size_t N2, std::size_t taps, float* out);

}  // namespace ssm::cuda::detail
