#include "ops/fft_conv.hpp"

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>

#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

std::mutex& fftw_planner_mutex() {
    static std::mutex m;
    return m;
}

namespace {

template <class T>
FftwBuf<T> fftw_buf(std::size_t n) {
    auto* p = static_cast<T*>(fftwf_malloc(sizeof(T) * std::max<std::size_t>(n, 1)));
    if (p == nullptr) throw std::bad_alloc();
    std::memset(static_cast<void*>(p), 0, sizeof(T) * std::max<std::size_t>(n, 1));
    return FftwBuf<T>(p);
}

// dst[j·ds + i] = src[i·ss + j] for i < rows, j < cols (at most 8 each).
void transpose_tile(const float* src, std::size_t ss, float* dst, std::size_t ds, std::size_t rows, std::size_t cols) noexcept {
#if defined(__AVX__)
    if (rows == 8 && cols == 8) {
        __m256 r[8], t[8];
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + static_cast<std::size_t>(i) * ss);
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {
            r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
            r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
            r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
            r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
        }
        for (int i = 0; i < 4; ++i) {
            _mm256_storeu_ps(dst + static_cast<std::size_t>(i) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
            _mm256_storeu_ps(dst + static_cast<std::size_t>(i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
        }
        return;
    }
#endif
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < cols; ++j) dst[j * ds + i] = src[i * ss + j];
}

}  // namespace

std::string fmt3(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.3g", v);
    return b;
}

bool choose_fft(LayerPlan& plan, Backend backend, std::size_t taps, const FftConv::Choice& c, double fft_ns, double rec_ns) {
    plan.kernel_length = taps;
    plan.fft_size = c.M;
    plan.outputs_per_fft = static_cast<std::size_t>(c.outputs);
    if (backend == Backend::automatic && (fft_ns >= rec_ns || !c.fits)) {
        plan.backend = "recurrence";
        plan.reason = "cost model: recurrence " + fmt3(rec_ns) + " ns/sample/channel vs FFT " + fmt3(fft_ns) +
                      (!c.fits ? " (and FFT kernel spectra would need " + fmt3(c.spectra_bytes / 1e6) + " MB)" : "");
        return false;
    }
    plan.backend = "fft";
    plan.reason = backend == Backend::fft ? "forced" : "cost model: FFT " + fmt3(fft_ns) + " ns/sample/channel vs recurrence " + fmt3(rec_ns);
    return true;
}

FftConv::Choice FftConv::choose(std::size_t taps, std::size_t chunk, std::size_t kernels, double budget) {
    Choice c;
    c.taps = std::max<std::size_t>(taps, 1);
    const std::size_t hl = c.taps - 1;
    auto spectra = [&](std::size_t m) { return static_cast<double>(kernels) * static_cast<double>(spec_stride(m)) * 8.0; };
    auto hop_of = [&](std::size_t m) {
        const std::size_t h = std::min(m - hl, chunk);
        return h > 16 ? h / 16 * 16 : h;  // windows start on 64-byte boundaries
    };
    // A chunk is cut into equal hops, so a hop just short of the chunk would cost two transforms.
    auto outputs = [&](std::size_t m) {
        const std::size_t h = hop_of(m);
        return static_cast<double>(chunk) / static_cast<double>((chunk + h - 1) / h);
    };
    // Beyond 2^14 floats a transform's buffers and twiddles no longer stay in L2 (measured: 16% slower per doubling).
    auto per_output = [&](std::size_t m) {
        const double mm = static_cast<double>(m);
        return mm * std::log2(mm) / outputs(m) * (1.0 + 0.16 * std::max(0.0, std::log2(mm / 16384.0)));
    };
    const std::size_t lo = c.taps + c.taps / 8 + 16, hi = 16 * (c.taps + chunk);  // a few outputs per transform at least
    std::vector<std::size_t> sizes;
    for (std::size_t p5 = 1; p5 <= 25; p5 *= 5)
        for (std::size_t p3 = 1; p3 <= 27; p3 *= 3)
            for (std::size_t m = 16 * p3 * p5; m <= hi; m *= 2)
                if (m >= lo) sizes.push_back(m);
    std::sort(sizes.begin(), sizes.end());
    std::size_t best = 0;
    for (std::size_t m : sizes)
        if (spectra(m) <= budget && (best == 0 || per_output(m) < per_output(best))) best = m;
    c.fits = best != 0;
    c.M = best != 0 ? best : sizes.front();
    c.hop = hop_of(c.M);
    c.outputs = outputs(c.M);
    c.per_output = per_output(c.M);
    c.spectra_bytes = spectra(c.M);
    return c;
}

FftConv::FftConv(BatchContext& ctx, std::size_t inputs, std::size_t fan, const Choice& choice,
                 const std::function<void(std::size_t, double*)>& kernel, const Workspace::Slice* yc)
    : pool_(ctx.pool), Cin_(inputs), fan_(fan), Cout_(inputs * fan), chunk_(ctx.options.chunk_frames), ch_(choice) {
    const std::size_t M = ch_.M;
    hl_ = ch_.taps - 1;
    hop_ = ch_.hop;
    // Each channel of xc_ is [pad | hl history | chunk]: the pad makes every full window of M inputs ending at a hop
    // boundary lie inside xc_, starting on a 64-byte boundary, so no window is copied (pad + hl = M − hop).
    pad_ = M - hop_ - hl_;
    xs_ = (pad_ + hl_ + chunk_ + 15) / 16 * 16 + 16;  // +16 floats: power-of-two strides alias in the caches
    xc_ = ctx.reserve(Cin_ * xs_);
    ys_ = chunk_ + 16;
    yc_ = yc != nullptr ? *yc : ctx.reserve(Cout_ * ys_);
    bufs_ = ctx.reserve(pool_.size() * buf_stride());
    hist_.assign(Cin_ * hl_, 0.0f);

    const std::size_t sb = spec_stride(M);
    kf_ = fftw_buf<fftwf_complex>(Cout_ * sb);
    auto tmp = fftw_buf<float>(buf_stride());
    auto* tmp_f = reinterpret_cast<fftwf_complex*>(tmp.get() + spec_offset());
    {
        std::lock_guard lock(fftw_planner_mutex());
        // Measured plans run faster, but measuring a 2^18 transform takes seconds: bound it (FFTW then keeps the best
        // plan found so far, and its wisdom makes the next Batch of the same size instant).
        fftwf_set_timelimit(0.25);
        fwd_ = fftwf_plan_dft_r2c_1d(static_cast<int>(M), tmp.get(), tmp_f, FFTW_MEASURE);
        inv_ = fftwf_plan_dft_c2r_1d(static_cast<int>(M), tmp_f, tmp.get(), FFTW_MEASURE);
    }
    if (fwd_ == nullptr || inv_ == nullptr) throw Error("FFTW could not plan a transform of size " + std::to_string(M));
    // Kernel spectra, scaled by 1/M so the inverse needs no pass of its own.
    std::vector<double> taps(ch_.taps);
    for (std::size_t j = 0; j < Cout_; ++j) {
        std::fill(taps.begin(), taps.end(), 0.0);
        kernel(j, taps.data());
        float* k = tmp.get();
        std::fill(k, k + M, 0.0f);
        for (std::size_t t = 0; t < ch_.taps; ++t) k[t] = static_cast<float>(taps[t] / static_cast<double>(M));
        fftwf_execute_dft_r2c(fwd_, k, tmp_f);
        std::memcpy(static_cast<void*>(kf_.get() + j * sb), tmp_f, sizeof(fftwf_complex) * (M / 2 + 1));
    }
}

FftConv::~FftConv() {
    std::lock_guard lock(fftw_planner_mutex());
    if (fwd_) fftwf_destroy_plan(fwd_);
    if (inv_) fftwf_destroy_plan(inv_);
}

void FftConv::run(const float* in, std::size_t in_stride, float* out, std::size_t out_stride, std::size_t frames) {
    const std::size_t hl = hl_;
    pool_.parallel_for(Cin_, [&](std::size_t c0, std::size_t c1, std::size_t) {
        for (std::size_t c = c0; c < c1; ++c) {
            // The pad only ever meets kernel taps beyond the kernel (zero), but must hold finite numbers: the
            // workspace is shared with other layers.
            std::fill_n(xc_.get() + c * xs_, pad_, 0.0f);
            std::copy_n(hist_.data() + c * hl, hl, xc_.get() + c * xs_ + pad_);
        }
    });
    const std::size_t tiles = (frames + 15) / 16;
    pool_.parallel_for(tiles, [&](std::size_t b, std::size_t e, std::size_t) { transpose_in(in, in_stride, frames, b, e); }, 64);
    // Overlap-save: segments of hop outputs × input channels, independent, handed out as threads come free.
    const std::size_t segs = (frames + hop_ - 1) / hop_, items = segs * Cin_;
    pool_.parallel_for(items, [&](std::size_t b, std::size_t e, std::size_t part) {
        for (std::size_t i = b; i < e; ++i) item(i / segs, i % segs, frames, part);
    }, 1);
    pool_.parallel_for(tiles, [&](std::size_t b, std::size_t e, std::size_t) { transpose_out(out, out_stride, frames, b, e); }, 64);
    pool_.parallel_for(Cin_, [&](std::size_t c0, std::size_t c1, std::size_t) {
        for (std::size_t c = c0; c < c1; ++c) {
            // the last hl inputs: from the chunk, or (a chunk shorter than hl) partly from the history before it
            std::copy_n(xc_.get() + c * xs_ + pad_ + frames, hl, hist_.data() + c * hl);
        }
    });
}

// Rows [16·b, 16·e) of the chunk, rows of `stride` → xc_ (channel c at c·xs_ + pad + hl + t), in 8×8 tiles.
void FftConv::transpose_in(const float* in, std::size_t stride, std::size_t frames, std::size_t b, std::size_t e) {
    float* xc = xc_.get() + pad_ + hl_;
    for (std::size_t t0 = b * 16; t0 < std::min(frames, e * 16); t0 += 8)
        for (std::size_t c0 = 0; c0 < Cin_; c0 += 8)
            transpose_tile(in + t0 * stride + c0, stride, xc + c0 * xs_ + t0, xs_, std::min<std::size_t>(8, frames - t0),
                           std::min<std::size_t>(8, Cin_ - c0));
}

// yc_ (channel j at j·ys_ + t) → rows of `stride`, in 8×8 tiles.
void FftConv::transpose_out(float* out, std::size_t stride, std::size_t frames, std::size_t b, std::size_t e) {
    for (std::size_t t0 = b * 16; t0 < std::min(frames, e * 16); t0 += 8)
        for (std::size_t j0 = 0; j0 < Cout_; j0 += 8)
            transpose_tile(yc_.get() + j0 * ys_ + t0, ys_, out + t0 * stride + j0, stride, std::min<std::size_t>(8, Cout_ - j0),
                           std::min<std::size_t>(8, frames - t0));
}

// Overlap-save for input channel c, outputs [s·hop, s·hop + hop) of this chunk: the window of M inputs ending there
// (history included) is transformed where it lies in xc_ (hop is a multiple of 16 floats, so the window is as
// aligned as the plan's arrays) or, for the last window of a chunk, from a zero-padded copy; times each of the
// channel's kernel spectra; transformed back.
void FftConv::item(std::size_t c, std::size_t s, std::size_t frames, std::size_t part) {
    const std::size_t M = ch_.M, hl = hl_, bins = M / 2 + 1, sb = spec_stride(M);
    const std::size_t t0 = s * hop_, cnt = std::min(hop_, frames - t0);
    float* buf = bufs_.get() + part * buf_stride();
    auto* spec = reinterpret_cast<fftwf_complex*>(buf + spec_offset());
    auto* prod = spec + sb;
    const float* chan = xc_.get() + c * xs_;
    const std::size_t end = pad_ + hl + t0 + cnt;  // the window of M inputs ending with this segment's last input
    std::size_t first;                            // where the outputs lie in the inverse transform
    if (end >= M && (end - M) % 16 == 0) {
        fftwf_execute_dft_r2c(fwd_, const_cast<float*>(chan + end - M), spec);  // out of place: input left intact
        first = M - cnt;
    } else {  // a short last segment: the window from its first output's history, zero-padded
        const float* src = chan + pad_ + t0;
        const std::size_t have = hl + frames - t0;
        std::copy_n(src, std::min(have, M), buf);
        if (have < M) std::fill(buf + have, buf + M, 0.0f);
        fftwf_execute_dft_r2c(fwd_, buf, spec);
        first = hl;
    }
    for (std::size_t f = 0; f < fan_; ++f) {
        const std::size_t j = c * fan_ + f;
        const float* kf = reinterpret_cast<const float*>(kf_.get() + j * sb);
        const float* sp = reinterpret_cast<const float*>(spec);
        // one kernel: multiply in place (c2r may overwrite its input); several: into a second spectrum. Each bin is
        // read before it is written, so the loop is safe to vectorise either way.
        float* pr = fan_ == 1 ? reinterpret_cast<float*>(spec) : reinterpret_cast<float*>(prod);
#pragma omp simd
        for (std::size_t b = 0; b < bins; ++b) {
            const float xr = sp[2 * b], xi = sp[2 * b + 1], kr = kf[2 * b], ki = kf[2 * b + 1];
            pr[2 * b] = xr * kr - xi * ki;
            pr[2 * b + 1] = xr * ki + xi * kr;
        }
        fftwf_execute_dft_c2r(inv_, reinterpret_cast<fftwf_complex*>(pr), buf);
        std::copy_n(buf + first, cnt, yc_.get() + j * ys_ + t0);
    }
}

}  // namespace ssm::detail
