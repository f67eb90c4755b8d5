// GPU kernel benchmark (method: /work/.library/device/METHOD.md): per size, fresh random inputs, warm-up, then
// CUDA-event timings of several repetitions, median reported. Prints one CSV row per measurement:
//   kernel,L,channels,taps_or_state,median_ms,samples_per_s,bytes,GBps,pct_copy
// bytes = the fewest bytes the operation must move (each input read once, each output written once); pct_copy =
// achieved bandwidth over the measured device-to-device copy (read + write), printed first as kernel "copy".
// usage: bench_cuda [quick] [fft] [scan] [ssd]   (naming none of fft/scan/ssd runs all three)
#include <cuda_runtime.h>
#include <cufft.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ssmstream/cuda.hpp"

namespace {

void ck(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(e));
        std::exit(1);
    }
}
void ckf(cufftResult r, const char* what) {
    if (r != CUFFT_SUCCESS) {
        std::fprintf(stderr, "cuFFT error %d in %s\n", static_cast<int>(r), what);
        std::exit(1);
    }
}

struct Buf {
    float* p = nullptr;
    std::size_t n = 0;
    explicit Buf(std::size_t count) : n(count) { ck(cudaMalloc(&p, std::max<std::size_t>(n, 1) * sizeof(float)), "cudaMalloc"); }
    ~Buf() { cudaFree(p); }
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
};

// Fresh inputs per size: a device-side fill from a host seed (cheap, not timed).
void fill(Buf& b, unsigned seed, float scale, float offset = 0.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const std::size_t block = 1 << 20;
    std::vector<float> h(block + 7);
    for (auto& v : h) v = offset + scale * nd(rng);
    for (std::size_t i = 0; i < b.n; i += block)  // tile a random block, shifted per tile so that tiles differ
        ck(cudaMemcpy(b.p + i, h.data() + (i / block) % 7, std::min(block, b.n - i) * sizeof(float), cudaMemcpyHostToDevice), "fill");
}

double median_ms(const std::function<void()>& f, int warm = 3, int reps = 10) {
    for (int i = 0; i < warm; ++i) f();
    ck(cudaDeviceSynchronize(), "warm-up");
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        cudaEventRecord(a);
        f();
        cudaEventRecord(b);
        ck(cudaEventSynchronize(b), "timed run");
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

double copy_gbps = 0;

void row(const char* kernel, std::size_t L, std::size_t ch, std::size_t extra, double ms, double samples, double bytes) {
    const double gbps = bytes / (ms * 1e-3) / 1e9;
    std::printf("%s,%zu,%zu,%zu,%.4f,%.4g,%.4g,%.1f,%.1f\n", kernel, L, ch, extra, ms, samples / (ms * 1e-3), bytes, gbps,
                copy_gbps > 0 ? 100.0 * gbps / copy_gbps : 100.0);
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = false, want_fft = false, want_scan = false, want_ssd = false;
    for (int i = 1; i < argc; ++i) {
        quick |= std::strcmp(argv[i], "quick") == 0;
        want_fft |= std::strcmp(argv[i], "fft") == 0;
        want_scan |= std::strcmp(argv[i], "scan") == 0;
        want_ssd |= std::strcmp(argv[i], "ssd") == 0;
    }
    if (!want_fft && !want_scan && !want_ssd) want_fft = want_scan = want_ssd = true;
    const int only = std::getenv("SSM_BENCH_LOG2L") ? std::atoi(std::getenv("SSM_BENCH_LOG2L")) : 0;  // one length only
    std::printf("# device: %s\n", ssm::cuda::device_name(0).c_str());
    std::printf("kernel,L,channels,taps_or_state,median_ms,samples_per_s,bytes,GBps,pct_copy\n");
    {   // the ceiling: a large device-to-device copy, bytes read + written
        const std::size_t n = std::size_t{1} << 30;  // 4 GiB each way
        Buf a(n), b(n);
        fill(a, 1, 1.0f);
        const double ms = median_ms([&] { ck(cudaMemcpy(b.p, a.p, n * 4, cudaMemcpyDeviceToDevice), "copy"); });
        copy_gbps = 2.0 * n * 4 / (ms * 1e-3) / 1e9;
        row("copy", n, 1, 0, ms, static_cast<double>(n), 2.0 * n * 4);
    }
    const std::size_t total = quick ? std::size_t{1} << 24 : std::size_t{1} << 26;  // channels × L per FFT measurement
    const int lmax = quick ? 20 : 24;
    for (int lg = 14; lg <= lmax && want_fft; lg += 2) {
        if (only && lg != only) continue;
        const std::size_t L = std::size_t{1} << lg, H = std::max<std::size_t>(1, total / L);
        Buf x(H * L), y(H * L);
        fill(x, 100 + lg, 1.0f);
        // mode "": the library's choice (callbacks from transform size 2^16 on); "1" / "0": forced fused / separate.
        for (const std::size_t taps : {std::min<std::size_t>(L, 4096), L})
            for (const std::string mode : {"", "1", "0"}) {
                if (taps == L && L == 4096) continue;
                if (mode.empty()) unsetenv("SSM_CUFFT_CALLBACKS");
                else setenv("SSM_CUFFT_CALLBACKS", mode.c_str(), 1);
                Buf k(H * taps);
                fill(k, 200 + lg, 1.0f / std::sqrt(static_cast<float>(taps)));
                const auto t0 = std::chrono::steady_clock::now();
                ssm::cuda::FftConv conv(H, taps, L);
                conv.set_kernel(k.p);
                conv.run(x.p, L, y.p, L, L);  // the first call makes the plans (and JIT-links the callbacks)
                ck(cudaDeviceSynchronize(), "first call");
                std::printf("# fftconv L=%zu taps=%zu %s: construction + first call %.1f ms\n", L, taps, conv.fused() ? "fused" : "separate",
                            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
                const double ms = median_ms([&] {
                    conv.reset();
                    conv.run(x.p, L, y.p, L, L);
                });
                std::string name = taps == L ? "fftconv_ours_fullkernel" : "fftconv_ours_k4096";
                if (!mode.empty()) name += conv.fused() ? "_fused" : "_unfused";
                if (mode == "1" && !conv.fused()) std::printf("# callbacks unavailable: the fused rows are the unfused pipeline\n");
                row(name.c_str(), L, H, taps, ms, static_cast<double>(H * L), 2.0 * H * L * 4);
                unsetenv("SSM_CUFFT_CALLBACKS");
            }
        {   // cuFFT's own forward + inverse at the size a full-length causal convolution needs (2L, batch H)
            const std::size_t M = 2 * L, bins = M / 2 + 1;
            Buf sig(H * M), spec(H * bins * 2);
            fill(sig, 300 + lg, 1.0f);
            cufftHandle f, i;
            long long n[1] = {static_cast<long long>(M)};
            std::size_t work = 0;
            ckf(cufftCreate(&f), "create");
            ckf(cufftMakePlanMany64(f, 1, n, nullptr, 1, static_cast<long long>(M), nullptr, 1, static_cast<long long>(bins), CUFFT_R2C,
                                    static_cast<long long>(H), &work), "plan r2c");
            ckf(cufftCreate(&i), "create");
            ckf(cufftMakePlanMany64(i, 1, n, nullptr, 1, static_cast<long long>(bins), nullptr, 1, static_cast<long long>(M), CUFFT_C2R,
                                    static_cast<long long>(H), &work), "plan c2r");
            const double ms = median_ms([&] {
                ckf(cufftExecR2C(f, sig.p, reinterpret_cast<cufftComplex*>(spec.p)), "r2c");
                ckf(cufftExecC2R(i, reinterpret_cast<cufftComplex*>(spec.p), sig.p), "c2r");
            });
            row("cufft_fwd_inv_2L", L, H, M, ms, static_cast<double>(H * L), 2.0 * H * L * 4);
            cufftDestroy(f);
            cufftDestroy(i);
        }
    }
    // Selective scan: tokens × channels = 2^28 (1 GiB per array) at every length, dstate 16.
    const std::size_t elems = quick ? std::size_t{1} << 26 : std::size_t{1} << 28;
    for (int lg = 14; lg <= lmax && want_scan; lg += 2) {
        if (only && lg != only) continue;
        const std::size_t L = std::size_t{1} << lg, N = 16;
        const std::size_t dim = std::clamp<std::size_t>(elems / L, 64, 1536), batch = std::max<std::size_t>(1, elems / (L * dim));
        Buf u(batch * L * dim), dl(batch * L * dim), z(batch * L * dim), yb(batch * L * dim), B(batch * L * N), C(batch * L * N),
            A(dim * N), D(dim), db(dim);
        fill(u, 1 + lg, 1.0f);
        fill(dl, 2 + lg, 1.0f, -3.0f);
        fill(z, 3 + lg, 1.0f);
        fill(B, 4 + lg, 1.0f);
        fill(C, 5 + lg, 1.0f);
        fill(A, 6 + lg, 0.5f, -2.0f);
        fill(D, 7 + lg, 1.0f);
        fill(db, 8 + lg, 0.1f);
        ssm::cuda::SelectiveScanArgs a;
        a.u = u.p; a.delta = dl.p; a.z = z.p; a.B = B.p; a.C = C.p; a.A = A.p; a.D = D.p; a.delta_bias = db.p; a.y = yb.p;
        a.batch = batch; a.length = L; a.dim = dim; a.dstate = N;
        const double bytes = 4.0 * batch * L * (4.0 * dim + 2.0 * N);
        // chunk 0: the launcher's choice; then fixed chunk counts K (K = 1: one pass, no chunk edges)
        for (const std::size_t K : {std::size_t{0}, std::size_t{1}, std::size_t{4}, std::size_t{64}, std::size_t{1024}}) {
            if (K > 0 && (quick || K * batch * dim > (std::size_t{1} << 22) || (K == 1 && L > (1 << 16)) || (K > 0 && K * batch * dim < 8192))) continue;
            a.chunk = K == 0 ? 0 : (L + K - 1) / K;
            const double ms = median_ms([&] { ssm::cuda::selective_scan(a); });
            const std::string name = K == 0 ? "selective_scan_ours" : "selective_scan_ours_K" + std::to_string(K);
            row(name.c_str(), L, batch * dim, N, ms, static_cast<double>(batch * L * dim), bytes);
        }
        if (const char* e = std::getenv("SSM_BENCH_CHUNKS")) {  // extra chunk lengths, "2048,8192" (default algorithm)
            for (std::string list = e; !list.empty();) {
                const auto comma = list.find(',');
                a.chunk = std::stoul(list.substr(0, comma));
                list = comma == std::string::npos ? "" : list.substr(comma + 1);
                const double ms = median_ms([&] { ssm::cuda::selective_scan(a); });
                row(("selective_scan_ours_chunk" + std::to_string(a.chunk)).c_str(), L, batch * dim, N, ms,
                    static_cast<double>(batch * L * dim), bytes);
            }
        }
        for (const char* algo : {"rescan", "fixup"}) {  // both chunked algorithms forced, for comparison
            a.chunk = 0;
            setenv("SSM_SCAN_ALGO", algo, 1);
            const double ms = median_ms([&] { ssm::cuda::selective_scan(a); });
            unsetenv("SSM_SCAN_ALGO");
            row(("selective_scan_ours_" + std::string(algo)).c_str(), L, batch * dim, N, ms, static_cast<double>(batch * L * dim), bytes);
        }
        if (std::getenv("SSM_BENCH_POLY")) {  // variants of the exponential split (see selective_scan.cu, ex2_mix)
            a.chunk = 0;
            for (const char* v : {"1", "2", "257", "258"}) {
                setenv("SSM_SCAN_POLY", v, 1);
                const double ms = median_ms([&] { ssm::cuda::selective_scan(a); });
                row(("selective_scan_ours_poly" + std::string(v)).c_str(), L, batch * dim, N, ms, static_cast<double>(batch * L * dim), bytes);
            }
        }
    }
    // SSD: up to 24 heads of 64 (Mamba-2 130m's d_inner 1536), fewer at long lengths to fit; dstate 64.
    for (int lg = 14; lg <= lmax && want_ssd; lg += 2) {
        if (only && lg != only) continue;
        const std::size_t L = std::size_t{1} << lg, P = 64, N = 64, len = L;
        const std::size_t Hh = std::clamp<std::size_t>(elems / (L * P), 1, 24), batch = std::max<std::size_t>(1, elems / (L * Hh * P));
        Buf x(batch * len * Hh * P), y(batch * len * Hh * P), dt(batch * len * Hh), B(batch * len * N), C(batch * len * N), A(Hh), D(Hh);
        fill(x, 11 + lg, 1.0f);
        fill(dt, 12 + lg, 0.02f, 0.05f);
        fill(B, 13 + lg, 0.1f);
        fill(C, 14 + lg, 0.1f);
        fill(A, 15 + lg, 0.2f, -1.0f);
        fill(D, 16 + lg, 1.0f);
        ssm::cuda::SsdArgs a;
        a.x = x.p; a.dt = dt.p; a.A = A.p; a.B = B.p; a.C = C.p; a.D = D.p; a.y = y.p;
        a.batch = batch; a.length = len; a.heads = Hh; a.headdim = P; a.dstate = N; a.chunk = 64;
        const double ms = median_ms([&] { ssm::cuda::ssd_scan(a); });
        const double bytes = 4.0 * batch * len * (2.0 * Hh * P + Hh + 2.0 * N);
        row("ssd_ours", len, batch * Hh * P, N, ms, static_cast<double>(batch * len * Hh * P), bytes);
    }
    return 0;
}
