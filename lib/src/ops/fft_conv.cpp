#include "ops/fft_conv.hpp"

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
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

// dst[j·ds + i] = src[i·ss + j] for i < rows, j < cols (at most 8 each). `stream`: a full tile into 32-byte aligned
// rows bypasses the caches.
void transpose_tile(const float* src, std::size_t ss, float* dst, std::size_t ds, std::size_t rows, std::size_t cols,
                    [[maybe_unused]] bool stream = false) noexcept {
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
        if (stream && (reinterpret_cast<std::uintptr_t>(dst) | ds * sizeof(float)) % 32 == 0) {
            for (int i = 0; i < 4; ++i) {
                _mm256_stream_ps(dst + static_cast<std::size_t>(i) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
                _mm256_stream_ps(dst + static_cast<std::size_t>(i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
            }
            return;
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
        return h > 16 ? h / 16 * 16 : h;  // whole 8-row transpose tiles
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
                 const std::function<void(std::size_t, double*)>& kernel)
    : pool_(ctx.pool), Cin_(inputs), fan_(fan), Cout_(inputs * fan), ch_(choice) {
    const std::size_t M = ch_.M;
    hl_ = ch_.taps - 1;
    hop_ = ch_.hop;
    bufs_ = ctx.reserve(pool_.size() * buf_stride());
    hist_.assign(Cin_ * hl_, 0.0f);

    const std::size_t sb = spec_stride(M);
    kf_ = fftw_buf<fftwf_complex>(Cout_ * sb);
    auto tmp = fftw_buf<float>(win_stride() + 2 * sb);
    auto* tmp_f = reinterpret_cast<fftwf_complex*>(tmp.get() + win_stride());
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
    // Overlap-save: groups of input channels × segments of hop outputs, independent (they only read the history),
    // handed out as threads come free; a group's segments are neighbours, so its kernel spectra are read from memory
    // about once.
    // (The jobs capture two pointers, small enough for std::function to hold without allocating.)
    const struct {
        const float* in;
        std::size_t in_stride;
        float* out;
        std::size_t out_stride, frames, groups, segs;
    } a{in, in_stride, out, out_stride, frames, (Cin_ + kGroup - 1) / kGroup, (frames + hop_ - 1) / hop_};
    pool_.parallel_for(a.groups * a.segs, [this, &a](std::size_t b, std::size_t e, std::size_t part) {
        for (std::size_t i = b; i < e; ++i) item(a.in, a.in_stride, a.out, a.out_stride, i / a.segs, i % a.segs, a.frames, part);
    }, 1);
    pool_.parallel_for(a.groups, [this, &a](std::size_t b, std::size_t e, std::size_t) {
        keep_history(a.in, a.in_stride, a.frames, b * kGroup, std::min(Cin_, e * kGroup));
    }, 1);
}

// The last hl inputs of channels [c0, c1): from the chunk, or (a chunk shorter than hl) partly from the history.
void FftConv::keep_history(const float* in, std::size_t in_stride, std::size_t frames, std::size_t c0, std::size_t c1) {
    const std::size_t hl = hl_, n = std::min(hl, frames), keep = hl - n;
    float* h = hist_.data();
    if (keep > 0)
        for (std::size_t c = c0; c < c1; ++c) std::memmove(h + c * hl, h + c * hl + n, keep * sizeof(float));
    for (std::size_t i = 0; i < n; i += 8)
        for (std::size_t k = c0; k < c1; k += 8)
            transpose_tile(in + (frames - n + i) * in_stride + k, in_stride, h + k * hl + keep + i, hl,
                           std::min<std::size_t>(8, n - i), std::min<std::size_t>(8, c1 - k));
}

// Overlap-save for input channels [g·kGroup, +kGroup), outputs [s·hop, s·hop + hop) of this chunk. Each channel's
// window holds its hl inputs before the segment's first output (from the history where they precede the chunk), the
// segment's inputs, then zeros (they only reach outputs that are dropped); transformed; times each of the channel's
// kernel spectra; transformed back, where the outputs then lie at [hl, hl + cnt).
void FftConv::item(const float* in, std::size_t in_stride, float* out, std::size_t out_stride, std::size_t g, std::size_t s,
                   std::size_t frames, std::size_t part) {
    const std::size_t M = ch_.M, hl = hl_, bins = M / 2 + 1, sb = spec_stride(M), W = win_stride();
    const std::size_t c0 = g * kGroup, gc = std::min(kGroup, Cin_ - c0);
    const std::size_t t0 = s * hop_, cnt = std::min(hop_, frames - t0);
    float* win = bufs_.get() + part * buf_stride();
    float* res = fan_ > 1 ? win + kGroup * W : win;  // one kernel: the outputs replace the inputs
    auto* spec = reinterpret_cast<fftwf_complex*>(win + (fan_ > 1 ? 2 : 1) * kGroup * W);
    auto* prod = spec + sb;

    // window position p holds time t0 − hl + p
    const std::size_t from_hist = t0 < hl ? hl - t0 : 0, r0 = t0 + from_hist - hl, r1 = t0 + cnt;
    for (std::size_t k = 0; k < gc; ++k) {
        std::copy_n(hist_.data() + (c0 + k) * hl + t0, from_hist, win + k * W);
        std::fill(win + k * W + hl + cnt, win + k * W + M, 0.0f);
    }
    for (std::size_t t = r0; t < r1; t += 8) {
        // The rows are a long stride apart (few to a page), so the hardware prefetcher falls behind: fetch ahead.
        for (std::size_t r = t + kAhead; r < std::min(t + kAhead + 8, r1); ++r)
            for (std::size_t k = 0; k < gc; k += 16) __builtin_prefetch(in + r * in_stride + c0 + k);
        for (std::size_t k = 0; k < gc; k += 8)
            transpose_tile(in + t * in_stride + c0 + k, in_stride, win + k * W + (t + hl - t0), W,
                           std::min<std::size_t>(8, r1 - t), std::min<std::size_t>(8, gc - k));
    }

    // outputs of kGroup consecutive output channels at a time, transposed into the rows
    const bool stream = frames * Cout_ >= kStreamFloats;
    std::size_t filled = 0;
    auto flush = [&](std::size_t j_end) {
        for (std::size_t i = 0; i < cnt; i += 8) {
            for (std::size_t k = 0; k < filled; k += 8)
                transpose_tile(res + k * W + hl + i, W, out + (t0 + i) * out_stride + (j_end - filled + k), out_stride,
                               std::min<std::size_t>(8, filled - k), std::min<std::size_t>(8, cnt - i), stream);
        }
        filled = 0;
    };
    for (std::size_t k = 0; k < gc; ++k) {
        fftwf_execute_dft_r2c(fwd_, win + k * W, spec);
        for (std::size_t f = 0; f < fan_; ++f) {
            const std::size_t j = (c0 + k) * fan_ + f;
            const float* kf = reinterpret_cast<const float*>(kf_.get() + j * sb);
            const float* sp = reinterpret_cast<const float*>(spec);
            // one kernel: multiply in place (c2r may overwrite its input); several: into a second spectrum. Each bin
            // is read before it is written, so the loop is safe to vectorise either way.
            float* pr = fan_ == 1 ? reinterpret_cast<float*>(spec) : reinterpret_cast<float*>(prod);
#pragma omp simd
            for (std::size_t b = 0; b < bins; ++b) {
                const float xr = sp[2 * b], xi = sp[2 * b + 1], kr = kf[2 * b], ki = kf[2 * b + 1];
                pr[2 * b] = xr * kr - xi * ki;
                pr[2 * b + 1] = xr * ki + xi * kr;
            }
            fftwf_execute_dft_c2r(inv_, reinterpret_cast<fftwf_complex*>(pr), res + filled * W);
            if (++filled == kGroup) flush(j + 1);
        }
    }
    if (filled > 0) flush((c0 + gc) * fan_);
#if defined(__AVX__)
    if (stream) _mm_sfence();  // the streamed outputs are visible before the item counts as done
#endif
}

}  // namespace ssm::detail
