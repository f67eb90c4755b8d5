// Overlap-save FFT convolution through cuFFT (see fft_conv.hpp), ssm::cuda::FftConv, and the S4D kernel taps.
#include <cufftXt.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fft_callbacks.hpp"
#include "fft_conv.hpp"
#include "ssmstream/cuda.hpp"

// The LTO-IR of fft_callbacks.cu, embedded at build time (kernels/CMakeLists.txt).
extern "C" const unsigned char ssm_fft_callbacks_fatbin[];
extern "C" const unsigned long long ssm_fft_callbacks_fatbin_size;

namespace ssm::cuda::detail {

namespace {

void check_fft(cufftResult r, const char* what, const char* file, int line) {
    if (r != CUFFT_SUCCESS) throw_cuda(what, static_cast<int>(r), "cuFFT error", file, line);
}
#define SSM_CUFFT_CHECK(expr) check_fft((expr), #expr, __FILE__, __LINE__)

std::size_t next_pow2(std::size_t n) {
    std::size_t p = 1;
    while (p < n) p *= 2;
    return p;
}

// seg[(h·S + s)·ld + i] = the (s·hop + i)-th sample of history ++ x for channel h (0 past the end), i < M.
__global__ void gather_k(const float* x, std::size_t xs, const float* hist, std::size_t hl, std::size_t T, float* seg,
                         std::size_t S, std::size_t M, std::size_t hop, std::size_t ld) {
    const std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
    const std::size_t s = blockIdx.y, h = blockIdx.z;
    if (i >= M) return;
    const std::size_t q = s * hop + i;
    float v = 0.0f;
    if (q < hl) v = hist[h * hl + q];
    else if (q - hl < T) v = x[h * xs + (q - hl)];
    seg[(h * S + s) * ld + i] = v;
}

__global__ void multiply_k(float2* spec, const float2* kf, std::size_t S, std::size_t bins) {
    const std::size_t k = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
    const std::size_t s = blockIdx.y, h = blockIdx.z;
    if (k >= bins) return;
    float2& a = spec[(h * S + s) * bins + k];
    const float2 b = kf[h * bins + k];
    const float2 r = make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
    a = r;
}

__device__ __forceinline__ float act_apply(float x, Act act) {
    switch (act) {
        case Act::none: return x;
        case Act::gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case Act::gelu_tanh: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        case Act::silu: return x / (1.0f + __expf(-x));
        case Act::tanh: return tanhf(x);
        case Act::relu: return x > 0.0f ? x : 0.0f;
        case Act::sigmoid: return 1.0f / (1.0f + __expf(-x));
    }
    return x;
}

// y[h·ys + t] = act(window (t / hop) of channel h at hl + t % hop).
__global__ void scatter_k(const float* seg, std::size_t S, std::size_t ld, std::size_t hl, std::size_t hop, std::size_t T,
                          float* y, std::size_t ys, Act act) {
    const std::size_t t = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
    const std::size_t h = blockIdx.y;
    if (t >= T) return;
    const std::size_t s = t / hop, i = t % hop;
    y[h * ys + t] = act_apply(seg[(h * S + s) * ld + hl + i], act);
}

// dst[h][j] = sample T + j of history ++ x (the last hl inputs after this call).
__global__ void history_k(const float* hist, const float* x, std::size_t xs, std::size_t hl, std::size_t T, float* dst) {
    const std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
    const std::size_t h = blockIdx.y;
    if (j >= hl) return;
    const std::size_t q = T + j;
    dst[h * hl + j] = q < hl ? hist[h * hl + q] : x[h * xs + (q - hl)];
}

// Kernel taps padded to M and scaled by 1/M, into rows of seg.
__global__ void pad_taps_k(const float* taps, std::size_t n, float* seg, std::size_t M, std::size_t ld, float scale) {
    const std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
    const std::size_t h = blockIdx.y;
    if (i >= M) return;
    seg[h * ld + i] = i < n ? taps[h * n + i] * scale : 0.0f;
}

__global__ void s4d_taps_k(const double2* A, const double2* CB, const double* D, std::size_t N2, std::size_t taps, float* out) {
    const std::size_t t = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
    const std::size_t h = blockIdx.y;
    if (t >= taps) return;
    double s = t == 0 ? D[h] : 0.0;
    const double td = static_cast<double>(t);
    for (std::size_t n = 0; n < N2; ++n) {
        const double2 a = A[h * N2 + n], cb = CB[h * N2 + n];
        // a^t = |a|^t · e^{i t arg a}, in double (the CPU path multiplies t times; both far below float rounding).
        const double mag = exp(td * log(hypot(a.x, a.y)));
        double sn, cs;
        sincos(td * atan2(a.y, a.x), &sn, &cs);
        s += mag * (cb.x * cs - cb.y * sn);
    }
    out[h * taps + t] = static_cast<float>(s);
}

constexpr unsigned kThreads = 256;
unsigned tiles(std::size_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

OverlapSave::OverlapSave(std::size_t channels, std::size_t taps, std::size_t max_frames, std::size_t fft_size, bool callbacks)
    : H_(channels), taps_(taps), hl_(taps - 1), max_frames_(max_frames) {
    if (channels == 0 || taps == 0 || max_frames == 0) throw UsageError("FftConv: channels, taps and frames must be > 0");
    if (channels > 65535) throw UsageError("FftConv: at most 65535 channels per convolution");
    if (fft_size == 0) {
        M_ = std::max<std::size_t>(4096, next_pow2(4 * taps));
        M_ = std::min(M_, std::max(next_pow2(hl_ + max_frames), next_pow2(2 * taps)));
    } else {
        M_ = fft_size;
    }
    if (M_ <= hl_) throw UsageError("FftConv: transform size " + std::to_string(M_) + " must exceed taps − 1");
    hop_ = M_ - hl_;
    max_windows_ = (max_frames + hop_ - 1) / hop_;
    const std::size_t ld = M_ + 2;
    seg_ = DeviceArray<float>(std::max(max_windows_, std::size_t{1}) * H_ * ld);
    kf_ = DeviceArray<float>(H_ * (M_ + 2));
    hist_ = DeviceArray<float>(H_ * hl_);
    hist2_ = DeviceArray<float>(H_ * hl_);
    reset();
    // The fused callbacks pay off for long transforms only (H100: 1.3x faster from M = 2^16 on, 10-20% slower at
    // M ≤ 2^15, where cuFFT's callback kernels lose more than the passes they save). SSM_CUFFT_CALLBACKS=0 / =1
    // forces either pipeline (for comparison); the separate one is also the fallback when the callbacks fail.
    fused_ = callbacks && M_ >= (std::size_t{1} << 16);
    if (const char* e = std::getenv("SSM_CUFFT_CALLBACKS"); e && std::strcmp(e, "1") == 0) fused_ = true;
    if (const char* e = std::getenv("SSM_CUFFT_CALLBACKS"); e && std::strcmp(e, "0") == 0) fused_ = false;
    long long n[1] = {static_cast<long long>(M_)};
    long long real_embed[1] = {static_cast<long long>(M_ + 2)}, cplx_embed[1] = {static_cast<long long>(M_ / 2 + 1)};
    std::size_t work = 0;
    SSM_CUFFT_CHECK(cufftCreate(&kplan_));
    SSM_CUFFT_CHECK(cufftMakePlanMany64(kplan_, 1, n, real_embed, 1, real_embed[0], cplx_embed, 1, cplx_embed[0], CUFFT_R2C,
                                        static_cast<long long>(H_), &work));
}

OverlapSave::~OverlapSave() {
    if (kplan_) cufftDestroy(kplan_);
    for (auto& [s, p] : plans_) {
        cufftDestroy(p.fwd);
        cufftDestroy(p.inv);
        if (p.info) cudaFree(p.info);
    }
}

bool OverlapSave::make_fused([[maybe_unused]] Plans& p, [[maybe_unused]] std::size_t windows) {
#if CUFFT_VERSION < 12000
    return false;  // cufftXtSetJITCallback with a symbol name is CUDA 13's (cuFFT 12); older toolkits: separate kernels
#else
    long long n[1] = {static_cast<long long>(M_)};
    long long real_embed[1] = {static_cast<long long>(M_ + 2)}, cplx_embed[1] = {static_cast<long long>(M_ / 2 + 1)};
    const long long batch = static_cast<long long>(windows * H_);
    std::size_t work = 0;
    if (cudaMalloc(&p.info, sizeof(FftCallbackInfo)) != cudaSuccess) return false;
    void* fb = const_cast<unsigned char*>(ssm_fft_callbacks_fatbin);
    const std::size_t fbn = static_cast<std::size_t>(ssm_fft_callbacks_fatbin_size);
    int step = 0;
    cufftResult r = CUFFT_SUCCESS;
    auto ok_at = [&](cufftResult res) {
        if (r == CUFFT_SUCCESS) {
            r = res;
            ++step;
        }
        return r == CUFFT_SUCCESS;
    };
    ok_at(cufftCreate(&p.fwd)) && ok_at(cufftCreate(&p.inv)) &&
        ok_at(cufftXtSetJITCallback(p.fwd, "ssm_os_load", fb, fbn, CUFFT_CB_LD_REAL, &p.info)) &&
        ok_at(cufftXtSetJITCallback(p.fwd, "ssm_os_multiply", fb, fbn, CUFFT_CB_ST_COMPLEX, &p.info)) &&
        ok_at(cufftXtSetJITCallback(p.inv, "ssm_os_scatter", fb, fbn, CUFFT_CB_ST_REAL, &p.info)) &&
        ok_at(cufftMakePlanMany64(p.fwd, 1, n, real_embed, 1, real_embed[0], cplx_embed, 1, cplx_embed[0], CUFFT_R2C, batch, &work)) &&
        ok_at(cufftMakePlanMany64(p.inv, 1, n, cplx_embed, 1, cplx_embed[0], real_embed, 1, real_embed[0], CUFFT_C2R, batch, &work));
    const bool ok = r == CUFFT_SUCCESS;
    if (!ok && std::getenv("SSM_CUDA_VERBOSE")) {  // diagnosis: which callback / which planner cuFFT refuses
        int n32[1] = {static_cast<int>(M_)}, re32[1] = {static_cast<int>(M_ + 2)}, ce32[1] = {static_cast<int>(M_ / 2 + 1)};
        for (int variant = 0; variant < 6; ++variant) {
            cufftHandle h = 0;
            cufftCreate(&h);
            cufftResult e = CUFFT_SUCCESS;
            const bool fwd = variant < 4;
            if (variant == 0 || variant == 2) e = cufftXtSetJITCallback(h, "ssm_os_load", fb, fbn, CUFFT_CB_LD_REAL, &p.info);
            if (variant == 1 || variant == 3) e = cufftXtSetJITCallback(h, "ssm_os_multiply", fb, fbn, CUFFT_CB_ST_COMPLEX, &p.info);
            if (variant >= 4) e = cufftXtSetJITCallback(h, "ssm_os_scatter", fb, fbn, CUFFT_CB_ST_REAL, &p.info);
            cufftResult m = CUFFT_SUCCESS;
            if (variant == 2 || variant == 3 || variant == 5)
                m = fwd ? cufftMakePlanMany(h, 1, n32, re32, 1, re32[0], ce32, 1, ce32[0], CUFFT_R2C, static_cast<int>(batch), &work)
                        : cufftMakePlanMany(h, 1, n32, ce32, 1, ce32[0], re32, 1, re32[0], CUFFT_C2R, static_cast<int>(batch), &work);
            else
                m = fwd ? cufftMakePlanMany64(h, 1, n, real_embed, 1, real_embed[0], cplx_embed, 1, cplx_embed[0], CUFFT_R2C, batch, &work)
                        : cufftMakePlanMany64(h, 1, n, cplx_embed, 1, cplx_embed[0], real_embed, 1, real_embed[0], CUFFT_C2R, batch, &work);
            std::fprintf(stderr, "ssmstream: cuFFT callback probe %d (M %zu, batch %lld): set %d, plan %d\n", variant, M_, batch,
                         static_cast<int>(e), static_cast<int>(m));
            cufftDestroy(h);
        }
    }
    if (!ok && std::getenv("SSM_CUDA_VERBOSE"))
        std::fprintf(stderr, "ssmstream: cuFFT callbacks unavailable (step %d, cufftResult %d); separate kernels instead\n", step,
                     static_cast<int>(r));
    if (!ok) {  // no nvJitLink, or cuFFT refused: plain plans from here on
        if (p.fwd) cufftDestroy(p.fwd);
        if (p.inv) cufftDestroy(p.inv);
        cudaFree(p.info);
        p = Plans{};
        cudaGetLastError();
    }
    return ok;
#endif
}

void OverlapSave::reset() { hist_.zero(); }

OverlapSave::Plans& OverlapSave::plans_for(std::size_t windows) {
    auto it = plans_.find(windows);
    if (it != plans_.end()) return it->second;
    Plans p;
    if (fused_) {
        if (make_fused(p, windows)) return plans_.emplace(windows, p).first->second;
        fused_ = false;
    }
    long long n[1] = {static_cast<long long>(M_)};
    long long real_embed[1] = {static_cast<long long>(M_ + 2)}, cplx_embed[1] = {static_cast<long long>(M_ / 2 + 1)};
    const long long batch = static_cast<long long>(windows * H_);
    std::size_t work = 0;
    SSM_CUFFT_CHECK(cufftCreate(&p.fwd));
    SSM_CUFFT_CHECK(cufftMakePlanMany64(p.fwd, 1, n, real_embed, 1, real_embed[0], cplx_embed, 1, cplx_embed[0], CUFFT_R2C, batch, &work));
    SSM_CUFFT_CHECK(cufftCreate(&p.inv));
    SSM_CUFFT_CHECK(cufftMakePlanMany64(p.inv, 1, n, cplx_embed, 1, cplx_embed[0], real_embed, 1, real_embed[0], CUFFT_C2R, batch, &work));
    return plans_.emplace(windows, p).first->second;
}

void OverlapSave::set_kernel(const float* d_taps) {
    const std::size_t ld = M_ + 2;
    // The first H windows of seg serve as the staging rows; a one-window plan transforms exactly H rows.
    pad_taps_k<<<dim3(tiles(M_), static_cast<unsigned>(H_)), kThreads>>>(d_taps, taps_, seg_.get(), M_, ld,
                                                                         1.0f / static_cast<float>(M_));
    SSM_CUDA_LAUNCHED("pad_taps");
    SSM_CUFFT_CHECK(cufftExecR2C(kplan_, seg_.get(), reinterpret_cast<cufftComplex*>(seg_.get())));
    SSM_CUDA_CHECK(cudaMemcpy(kf_.get(), seg_.get(), H_ * ld * sizeof(float), cudaMemcpyDeviceToDevice));
}

void OverlapSave::run(const float* x, std::size_t x_stride, float* y, std::size_t y_stride, std::size_t frames, Act act) {
    if (frames == 0) return;
    if (frames > max_frames_) throw UsageError("FftConv: " + std::to_string(frames) + " frames exceed the planned " + std::to_string(max_frames_));
    // Windows per channel rounded up to a power of two (the extra ones transform zeros), so calls of any length
    // share a handful of plans; planning happens on the first call of each class, never per call.
    const std::size_t needed = (frames + hop_ - 1) / hop_, ld = M_ + 2, bins = M_ / 2 + 1;
    const std::size_t S = std::min(next_pow2(needed), max_windows_);
    auto& p = plans_for(S);
    auto* spec = reinterpret_cast<cufftComplex*>(seg_.get());
    if (p.info) {
        const FftCallbackInfo ci{x, hist_.get(), hist2_.get(), kf_.get(), y, x_stride, y_stride, hl_, frames, hop_,
                                 static_cast<unsigned>(S), static_cast<unsigned>(ld), static_cast<unsigned>(bins), static_cast<int>(act),
                                 FastDiv(static_cast<unsigned>(ld)), FastDiv(static_cast<unsigned>(bins)), FastDiv(static_cast<unsigned>(S))};
        SSM_CUDA_CHECK(cudaMemcpyAsync(p.info, &ci, sizeof ci, cudaMemcpyHostToDevice));
        SSM_CUFFT_CHECK(cufftExecR2C(p.fwd, seg_.get(), spec));
        SSM_CUFFT_CHECK(cufftExecC2R(p.inv, spec, seg_.get()));
        if (hl_ > 0) std::swap(hist_, hist2_);
        return;
    }
    gather_k<<<dim3(tiles(M_), static_cast<unsigned>(S), static_cast<unsigned>(H_)), kThreads>>>(
        x, x_stride, hist_.get(), hl_, frames, seg_.get(), S, M_, hop_, ld);
    SSM_CUDA_LAUNCHED("gather");
    if (hl_ > 0) {
        history_k<<<dim3(tiles(hl_), static_cast<unsigned>(H_)), kThreads>>>(hist_.get(), x, x_stride, hl_, frames, hist2_.get());
        SSM_CUDA_LAUNCHED("history");
        std::swap(hist_, hist2_);
    }
    SSM_CUFFT_CHECK(cufftExecR2C(p.fwd, seg_.get(), spec));
    multiply_k<<<dim3(tiles(bins), static_cast<unsigned>(S), static_cast<unsigned>(H_)), kThreads>>>(
        reinterpret_cast<float2*>(spec), reinterpret_cast<const float2*>(kf_.get()), S, bins);
    SSM_CUDA_LAUNCHED("multiply");
    SSM_CUFFT_CHECK(cufftExecC2R(p.inv, spec, seg_.get()));
    scatter_k<<<dim3(tiles(frames), static_cast<unsigned>(H_)), kThreads>>>(seg_.get(), S, ld, hl_, hop_, frames, y, y_stride, act);
    SSM_CUDA_LAUNCHED("scatter");
}

void s4d_taps(const double* A, const double* CB, const double* D, std::size_t H, std::size_t N2, std::size_t taps, float* out) {
    s4d_taps_k<<<dim3(tiles(taps), static_cast<unsigned>(H)), kThreads>>>(reinterpret_cast<const double2*>(A),
                                                                          reinterpret_cast<const double2*>(CB), D, N2, taps, out);
    SSM_CUDA_LAUNCHED("s4d_taps");
}

[[noreturn]] void throw_cuda(const char* what, int code, const char* text, const char* file, int line) {
    std::string f = file;
    const auto slash = f.find_last_of('/');
    if (slash != std::string::npos) f = f.substr(slash + 1);
    throw Error(std::string("CUDA: ") + what + " failed: " + text + " (code " + std::to_string(code) + ", " + f + ":" +
                std::to_string(line) + ")");
}

}  // namespace ssm::cuda::detail

namespace ssm::cuda {

struct FftConv::Impl {
    detail::OverlapSave os;
    Impl(std::size_t c, std::size_t t, std::size_t f) : os(c, t, f, 0, true) {}
};

FftConv::FftConv(std::size_t channels, std::size_t taps, std::size_t max_frames)
    : impl_(std::make_unique<Impl>(channels, taps, max_frames)) {}
FftConv::~FftConv() = default;
FftConv::FftConv(FftConv&&) noexcept = default;
FftConv& FftConv::operator=(FftConv&&) noexcept = default;
void FftConv::set_kernel(const float* d_taps) { impl_->os.set_kernel(d_taps); }
void FftConv::run(const float* d_x, std::size_t x_stride, float* d_y, std::size_t y_stride, std::size_t frames) {
    impl_->os.run(d_x, x_stride, d_y, y_stride, frames);
}
void FftConv::reset() { impl_->os.reset(); }
std::size_t FftConv::fft_size() const noexcept { return impl_->os.fft_size(); }
std::size_t FftConv::hop() const noexcept { return impl_->os.hop(); }
bool FftConv::fused() const noexcept { return impl_->os.fused(); }

}  // namespace ssm::cuda
