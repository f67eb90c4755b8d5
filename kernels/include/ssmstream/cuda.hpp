#pragma once
/** @file The CUDA batch backend (target ssmstream::cuda, built only when nvcc is found; the library never needs it).
 *
 * `ssm::cuda::Batch` mirrors `ssm::Batch` over the same `ssm::Model`: the whole-sequence view, on one GPU. It reads
 * the weights from the model's own file (the `TensorFile` the Model was loaded from, checked to hold the same
 * config), discretises the time-invariant layers on the host in double as the CPU path does, and runs
 *   - S4D as FFT convolution through cuFFT (overlap-save, the kernel taps generated on the device in double, the
 *     input history of each channel carried across calls, so consecutive calls equal one call on the whole),
 *   - linear layers through cuBLAS (float32, no TF32), LayerNorm, RMSNorm, GLU, activations and residuals as small
 *     kernels,
 *   - Mamba / FalconMamba and Mamba-2 (n_groups 1) as cuBLAS projections, the causal conv and gated norm kernels and
 *     the `selective_scan` / `ssd_scan` kernels below, conv windows and scan states carried across calls.
 * Layer types without a GPU path (the other families, embedding, Mamba-2 with several groups) make the constructor
 * throw `ssm::UsageError` naming the layer; `unsupported_reason` says so beforehand without touching a GPU.
 *
 * The kernels of the selective families are exposed on their own below (`selective_scan`, `ssd_scan`): device
 * arrays in, device arrays out, for the benchmarks and for the engines that compose them.
 *
 * Nothing here is real-time safe: `process` allocates nothing after construction but synchronises with the GPU.
 * One Batch is used by one thread at a time.
 */
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ssmstream/batch.hpp"
#include "ssmstream/model.hpp"
#include "ssmstream/tensor_file.hpp"

namespace ssm::cuda {

/** Number of usable CUDA devices; 0 when there is no GPU or no driver (never throws). */
int device_count() noexcept;
/** "NVIDIA H100 80GB HBM3" for device `device`, or the CUDA error as text. */
std::string device_name(int device = 0);

struct BatchOptions {
    std::size_t chunk_frames = 1 << 20; ///< frames per internal chunk (device memory is sized for this once)
    double kernel_tolerance = 1e-7;     ///< S4D: kernel tail dropped ≤ this × (‖K‖₁ + |D|), as on the CPU
    std::size_t max_kernel = 1 << 22;   ///< S4D: longest kernel kept; a slower decay is refused with a message
    int device = 0;
};

/** Why the model in `weights` cannot run on the GPU backend, or "" when it can (parses the config only). */
std::string unsupported_reason(const TensorFile& weights);

class Batch {
public:
    /** `weights` must be the file `model` was loaded from (its config is compared); it is read once here and may be
     * closed afterwards. Throws UsageError (unsupported layer, no device) or Error (a CUDA failure, with its text). */
    Batch(std::shared_ptr<const Model> model, const TensorFile& weights, BatchOptions options = {});
    ~Batch();
    Batch(Batch&&) noexcept;
    Batch& operator=(Batch&&) noexcept;

    /** Host arrays: `frames` interleaved frames in → out, the state carried from the previous call (any `frames`).
     * Non-finite input samples are replaced by 0 and counted, as in ssm::Batch. */
    void process(const float* in, float* out, std::size_t frames);
    /** The same on device arrays (frames × in_channels → frames × out_channels), no host copies; `frames` ≤ chunk. */
    void process_device(const float* d_in, float* d_out, std::size_t frames);
    std::vector<float> run(std::span<const float> in);
    /** Zero state, as a fresh Stream. */
    void reset();

    const std::vector<LayerPlan>& plan() const noexcept;
    const Model& model() const noexcept;
    std::uint64_t nonfinite_count() const noexcept;
    std::size_t chunk_frames() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/** Causal FFT convolution of H channel-major signals with H kernels, by overlap-save through cuFFT, the input
 * history carried across calls: y[h][t] = Σ_k K[h][k] · x[h][t − k] over all inputs so far. Device arrays. */
class FftConv {
public:
    /** Plans for `channels` kernels of `taps` taps and calls of up to `max_frames` frames (transform size chosen
     * here: a power of two ≥ 4 × taps, at least 4096). */
    FftConv(std::size_t channels, std::size_t taps, std::size_t max_frames);
    ~FftConv();
    FftConv(FftConv&&) noexcept;
    FftConv& operator=(FftConv&&) noexcept;
    /** Kernels from a device array [channels][taps], float32. */
    void set_kernel(const float* d_taps);
    /** x: [channels][x_stride] device array holding `frames` new samples per channel; y likewise [channels][y_stride]. */
    void run(const float* d_x, std::size_t x_stride, float* d_y, std::size_t y_stride, std::size_t frames);
    void reset();
    std::size_t fft_size() const noexcept;
    std::size_t hop() const noexcept;
    /** True when the gather, spectrum multiply and scatter run as cuFFT callbacks inside the transforms, false when
     * they are kernels of their own. Callbacks are used for transforms of 2^16 and more, where they are faster (each
     * plan is JIT-linked through libnvJitLink when first needed, about 0.1 s; without it the separate kernels run);
     * SSM_CUFFT_CALLBACKS=0 / =1 forces either pipeline. ssm::cuda::Batch keeps the separate kernels. */
    bool fused() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/** Mamba's selective scan (S6), as transformers' slow path and mamba_ssm's `selective_scan_fn` compute it, for
 * `batch` sequences of `dim` channels and `length` steps, state size `dstate`; every array on the device,
 * row-major:
 *   u, delta, z: [batch][length][dim] (z may be null: no gate);  A: [dim][dstate];  B, C: [batch][length][dstate];
 *   D, delta_bias: [dim] (either may be null);  y: [batch][length][dim];
 *   state: [batch][dim][dstate], read as the initial state and written with the final one (may be null: zero in,
 *   nothing out).
 *   Δ = softplus(delta + delta_bias) if `delta_softplus`, else delta + delta_bias;
 *   h_t = exp(Δ_t·A) ⊙ h_{t−1} + Δ_t·B_t·u_t;  y_t = C_t·h_t + D·u_t;  y_t ·= silu(z_t).
 * The discretisation is fused, and the state lives in registers: it is never written to global memory except at the
 * edges of time chunks (used only when batch × dim channels are too few to fill the GPU) and as the final state.
 * `chunk`: steps per time chunk, 0 = chosen here (one chunk per sequence when the channels fill the GPU). */
struct SelectiveScanArgs {
    const float *u = nullptr, *delta = nullptr, *A = nullptr, *B = nullptr, *C = nullptr, *D = nullptr,
                *z = nullptr, *delta_bias = nullptr;
    float* y = nullptr;
    float* state = nullptr;
    std::size_t batch = 1, length = 0, dim = 0, dstate = 16;
    bool delta_softplus = true;
    std::size_t chunk = 0;
};
void selective_scan(const SelectiveScanArgs& args);

/** Mamba-2's SSD (scalar-A state-space duality) by the chunked algorithm of the paper: `heads` heads of `headdim`
 * channels, one group of B/C shared by all heads (ngroups = 1), state size `dstate`, chunks of `chunk` steps.
 *   x: [batch][length][heads][headdim];  dt: [batch][length][heads] (after softplus and bias: Δ);  A: [heads];
 *   B, C: [batch][length][dstate];  D: [heads] (may be null);  y: [batch][length][heads][headdim];
 *   state: [batch][heads][headdim][dstate] in and out (may be null).
 *   h_t = exp(Δ_t·A)·h_{t−1} + Δ_t·x_t ⊗ B_t;  y_t = h_t·C_t + D·x_t. */
struct SsdArgs {
    const float *x = nullptr, *dt = nullptr, *A = nullptr, *B = nullptr, *C = nullptr, *D = nullptr;
    float* y = nullptr;
    float* state = nullptr;
    std::size_t batch = 1, length = 0, heads = 0, headdim = 64, dstate = 64, chunk = 64;
};
void ssd_scan(const SsdArgs& args);

/** Waits for the device and throws ssm::Error with CUDA's text if any launch failed. */
void synchronize();

}  // namespace ssm::cuda
