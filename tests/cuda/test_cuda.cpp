// The CUDA backend against the CPU paths: ssm::cuda::Batch vs ssm::Batch and ssm::Stream on the shipped and random
// S4D models (≤ 1e-4 × RMS, float32), state carried across chunk edges and call boundaries, and the standalone
// kernels (FFT convolution, selective scan, SSD) against float64 references. Skipped without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>

#include "mamba_support.hpp"
#include "ssmstream/cuda.hpp"
#include "support.hpp"

using namespace ssm;

namespace {

#define REQUIRE_GPU()                                                          \
    do {                                                                       \
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device here"; \
    } while (0)

double rel_rms(const std::vector<float>& got, const std::vector<float>& ref) {
    EXPECT_EQ(got.size(), ref.size());
    double d = 0, r = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;
        d += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
        r += static_cast<double>(ref[i]) * ref[i];
    }
    return std::sqrt(d / std::max(r, 1e-300));
}

struct Loaded {
    TensorFile file;
    std::shared_ptr<const Model> model;
};
Loaded load_file(const std::filesystem::path& p) {
    auto f = TensorFile::open(p);
    auto m = Model::from_tensor_file(f);
    return {std::move(f), m};
}
Loaded load_bytes(const std::vector<std::byte>& b) {
    auto f = TensorFile::from_bytes(b, "random-model");
    auto m = Model::from_tensor_file(f);
    return {std::move(f), m};
}

template <class T>
struct Dev {
    T* p = nullptr;
    explicit Dev(const std::vector<T>& v) {
        EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), std::max<std::size_t>(v.size(), 1) * sizeof(T)), cudaSuccess);
        if (!v.empty()) { EXPECT_EQ(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess); }
    }
    ~Dev() { cudaFree(p); }
    std::vector<T> get(std::size_t n) const {
        std::vector<T> v(n);
        EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
        return v;
    }
};

// Runs the model three ways over `frames` of noise and compares. `pieces` > 1 feeds the GPU in uneven calls.
void parity(const Loaded& L, std::size_t frames, std::size_t chunk, std::size_t pieces, const char* what) {
    const auto& mi = L.model->info();
    const auto in = test::random_signal(frames, mi.in_channels, 7, 0.5f);
    Batch cpu(L.model);
    const auto ref = cpu.run(in);
    const auto str = test::run_stream(L.model, in, 509);
    cuda::Batch gpu(L.model, L.file, {.chunk_frames = chunk});
    std::vector<float> got(frames * mi.out_channels);
    std::mt19937 rng(3);
    std::size_t t = 0;
    for (std::size_t k = 0; k < pieces && t < frames; ++k) {
        const std::size_t n = k + 1 == pieces ? frames - t : std::min(frames - t, std::size_t{1} + rng() % (2 * frames / pieces));
        gpu.process(in.data() + t * mi.in_channels, got.data() + t * mi.out_channels, n);
        t += n;
    }
    if (t < frames) gpu.process(in.data() + t * mi.in_channels, got.data() + t * mi.out_channels, frames - t);
    const double e_cpu = rel_rms(got, ref), e_stream = rel_rms(got, str);
    std::printf("[parity] %-34s frames %8zu chunk %8zu pieces %3zu: vs CPU batch %.2e, vs stream %.2e (x RMS)\n", what, frames,
                chunk, pieces, e_cpu, e_stream);
    for (const auto& p : gpu.plan())
        if (p.backend == "cuda-fft")
            std::printf("[plan]   %s: taps %zu, FFT %zu, hop %zu\n", p.layer.c_str(), p.kernel_length, p.fft_size, p.outputs_per_fft);
    EXPECT_LE(e_cpu, 1e-4) << what;
    EXPECT_LE(e_stream, 1e-4) << what;
}

}  // namespace

TEST(CudaBatch, ReportsDevice) {
    REQUIRE_GPU();
    std::printf("[device] %s (%d device(s))\n", cuda::device_name(0).c_str(), cuda::device_count());
}

TEST(CudaBatch, EcgDenoiserMatchesCpuAndStream) {
    REQUIRE_GPU();
    const auto L = load_file(SSM_SOURCE_DIR "/models/ecg-denoiser/ecg-denoiser.safetensors");
    EXPECT_EQ(cuda::unsupported_reason(L.file), "");
    parity(L, 200000, 1 << 20, 1, "ecg-denoiser, one call");
    parity(L, 200000, 8192, 7, "ecg-denoiser, chunks of 8192, 7 calls");
}

TEST(CudaBatch, HumRemoverMatchesCpuAndStream) {
    REQUIRE_GPU();
    const auto L = load_file(SSM_SOURCE_DIR "/models/hum-remover/hum-remover.safetensors");
    parity(L, 300000, 1 << 20, 1, "hum-remover, one call");
    parity(L, 300000, 3000, 13, "hum-remover, chunks of 3000, 13 calls");
}

TEST(CudaBatch, RandomModelsMatchCpuAndStream) {
    REQUIRE_GPU();
    for (const bool prenorm : {false, true})
        for (const char* disc : {"zoh", "bilinear"})
            for (const char* out : {"glu", "linear", "none"}) {
                test::S4DModelSpec s;
                s.d_model = 24;
                s.d_state = 16;
                s.n_layers = 2;
                s.prenorm = prenorm;
                s.disc = disc;
                s.output = out;
                s.d_input = 2;
                s.d_output = 3;
                s.dt_min = 0.01;
                const auto L = load_bytes(test::make_s4d_model_bytes(s));
                const std::string what = std::string(prenorm ? "prenorm " : "postnorm ") + disc + " " + out;
                parity(L, 50000, 4096, 5, what.c_str());
            }
}

// Mamba, FalconMamba and Mamba-2 signal models (encoder, residual RMSNorm + mixer blocks, final RMSNorm, decoder):
// small shapes, and shapes that take each kernel's main path (Mamba d_state 16, Mamba-2 head_dim = d_state = 64 on the
// tensor cores), in one call and in uneven calls across small chunks (windows and states carried).
TEST(CudaBatch, MambaSignalModelsMatchCpuAndStream) {
    REQUIRE_GPU();
    struct Case {
        const char* what;
        test::MambaSignalSpec s;
    };
    std::vector<Case> cases;
    for (const char* fam : {"mamba", "falcon", "mamba2"}) {
        test::MambaSignalSpec s;
        s.family = std::string(fam) == "mamba2" ? "mamba2" : "mamba";
        s.falcon = std::string(fam) == "falcon";
        s.n_groups = 1;
        cases.push_back({fam, s});
        s.d_model = 64;
        s.d_state = s.family == "mamba2" ? 64 : 16;
        s.head_dim = 64;
        s.seed = 7;
        cases.push_back({fam, s});
    }
    for (const auto& c : cases) {
        const auto L = load_bytes(test::make_mamba_signal_bytes(c.s));
        EXPECT_EQ(cuda::unsupported_reason(L.file), "");
        const std::string what = std::string(c.what) + " d_model " + std::to_string(c.s.d_model) + " d_state " + std::to_string(c.s.d_state);
        parity(L, 40000, 1 << 16, 1, (what + ", one call").c_str());
        parity(L, 40000, 3000, 9, (what + ", chunks of 3000").c_str());
        // one call of more rows than a launch of 65536 blocks has warps (2^19): the row kernels must stride
        if (c.s.d_model == 16 && !c.s.falcon) parity(L, 600000, 1 << 20, 1, (what + ", 600000 frames in one call").c_str());
        cuda::Batch gpu(L.model, L.file);
        for (const auto& p : gpu.plan())
            if (p.backend.rfind("cuda-s", 0) == 0) std::printf("[plan]   %s: %s (%s)\n", p.layer.c_str(), p.backend.c_str(), p.reason.c_str());
    }
    test::MambaSignalSpec g;
    g.family = "mamba2";
    g.n_groups = 2;
    const auto L = load_bytes(test::make_mamba_signal_bytes(g));
    EXPECT_NE(cuda::unsupported_reason(L.file).find("n_groups"), std::string::npos);
}

TEST(CudaBatch, NonFiniteInputIsZeroedAndCounted) {
    REQUIRE_GPU();
    const auto L = load_file(SSM_SOURCE_DIR "/models/hum-remover/hum-remover.safetensors");
    auto in = test::random_signal(20000, 1, 11, 0.5f);
    in[100] = NAN;
    in[5000] = INFINITY;
    cuda::Batch gpu(L.model, L.file);
    const auto got = gpu.run(in);
    EXPECT_EQ(gpu.nonfinite_count(), 2u);
    in[100] = in[5000] = 0.0f;
    Batch cpu(L.model);
    EXPECT_LE(rel_rms(got, cpu.run(in)), 1e-4);
}

TEST(CudaBatch, ResetEqualsFresh) {
    REQUIRE_GPU();
    const auto L = load_file(SSM_SOURCE_DIR "/models/hum-remover/hum-remover.safetensors");
    const auto in = test::random_signal(30000, 1, 5, 0.5f);
    cuda::Batch gpu(L.model, L.file);
    const auto a = gpu.run(in);
    gpu.reset();
    const auto b = gpu.run(in);
    EXPECT_EQ(a, b);
}

TEST(CudaBatch, RejectsAnotherFile) {
    REQUIRE_GPU();
    const auto A = load_file(SSM_SOURCE_DIR "/models/hum-remover/hum-remover.safetensors");
    const auto B = load_file(SSM_SOURCE_DIR "/models/ecg-denoiser/ecg-denoiser.safetensors");
    EXPECT_THROW(cuda::Batch(A.model, B.file), UsageError);
}

TEST(CudaKernels, FftConvMatchesDirectConvolution) {
    REQUIRE_GPU();
    // Both pipelines: transforms with the fused callbacks (default) and separate gather/multiply/scatter kernels.
    for (const char* fused : {"1", "0"})
    for (const std::size_t taps : {std::size_t{1}, std::size_t{37}, std::size_t{3000}, std::size_t{7000}}) {
        setenv("SSM_CUFFT_CALLBACKS", fused, 1);
        const std::size_t H = 5, T = 20000;
        std::mt19937 rng(static_cast<unsigned>(taps));
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> k(H * taps), x(H * T);
        for (auto& v : k) v = nd(rng) / std::sqrt(static_cast<float>(taps));
        for (auto& v : x) v = nd(rng);
        std::vector<float> ref(H * T);
        for (std::size_t h = 0; h < H; ++h)
            for (std::size_t t = 0; t < T; ++t) {
                double s = 0;
                for (std::size_t j = 0; j < taps && j <= t; ++j) s += static_cast<double>(k[h * taps + j]) * x[h * T + t - j];
                ref[h * T + t] = static_cast<float>(s);
            }
        Dev<float> dk(k), dx(x), dy(std::vector<float>(H * T, NAN));
        cuda::FftConv conv(H, taps, 7000);
        conv.set_kernel(dk.p);
        for (std::size_t t = 0; t < T; t += 7000) conv.run(dx.p + t, T, dy.p + t, T, std::min<std::size_t>(7000, T - t));
        cuda::synchronize();
        const double e = rel_rms(dy.get(H * T), ref);
        std::printf("[parity] fft conv taps %5zu (M %zu, hop %zu, %s): %.2e x RMS\n", taps, conv.fft_size(), conv.hop(),
                    conv.fused() ? "fused callbacks" : "separate kernels", e);
        EXPECT_LE(e, 1e-5);
        unsetenv("SSM_CUFFT_CALLBACKS");
    }
}

namespace {
double softplus_d(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }
}  // namespace

TEST(CudaKernels, SelectiveScanMatchesFloat64Reference) {
    REQUIRE_GPU();
    for (const std::size_t N : {std::size_t{16}, std::size_t{5}}) {
        const std::size_t Bn = 2, L = 5000, Dm = 96;
        std::mt19937 rng(static_cast<unsigned>(N));
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::uniform_real_distribution<float> ud(0.0f, 1.0f);
        auto fill = [&](std::size_t n, auto gen) {
            std::vector<float> v(n);
            for (auto& x : v) x = gen();
            return v;
        };
        auto u = fill(Bn * L * Dm, [&] { return nd(rng); }), delta = fill(Bn * L * Dm, [&] { return nd(rng) - 2.0f; });
        auto z = fill(Bn * L * Dm, [&] { return nd(rng); }), Bm = fill(Bn * L * N, [&] { return nd(rng); });
        auto Cm = fill(Bn * L * N, [&] { return nd(rng); });
        auto A = fill(Dm * N, [&] { return -std::exp(std::log(1.0f + 15.0f * ud(rng))); });
        auto D = fill(Dm, [&] { return nd(rng); }), db = fill(Dm, [&] { return 0.5f * nd(rng); });
        auto s0 = fill(Bn * Dm * N, [&] { return nd(rng); });
        std::vector<float> ref(Bn * L * Dm), sref(Bn * Dm * N);
        for (std::size_t b = 0; b < Bn; ++b)
            for (std::size_t d = 0; d < Dm; ++d) {
                std::vector<double> h(N);
                for (std::size_t n = 0; n < N; ++n) h[n] = s0[(b * Dm + d) * N + n];
                for (std::size_t t = 0; t < L; ++t) {
                    const std::size_t i = (b * L + t) * Dm + d;
                    const double dt = softplus_d(static_cast<double>(delta[i]) + db[d]);
                    double y = 0;
                    for (std::size_t n = 0; n < N; ++n) {
                        h[n] = std::exp(dt * A[d * N + n]) * h[n] + dt * Bm[(b * L + t) * N + n] * u[i];
                        y += h[n] * Cm[(b * L + t) * N + n];
                    }
                    y += D[d] * u[i];
                    y *= z[i] / (1.0 + std::exp(-static_cast<double>(z[i])));
                    ref[i] = static_cast<float>(y);
                }
                for (std::size_t n = 0; n < N; ++n) sref[(b * Dm + d) * N + n] = static_cast<float>(h[n]);
            }
        // Time chunks: automatic, one per sequence, uneven (the last one short), and tiny ones (many chunk edges);
        // both algorithms (one scan + fix-up of each chunk's first steps, "fixup"; two scans, "rescan").
        for (const char* algo : {"fixup", "rescan"})
        for (const std::size_t chunk : {std::size_t{0}, L, std::size_t{700}, std::size_t{37}}) {
            setenv("SSM_SCAN_ALGO", algo, 1);
            Dev<float> du(u), ddel(delta), dz(z), dB(Bm), dC(Cm), dA(A), dD(D), ddb(db), ds(s0), dy(std::vector<float>(ref.size(), NAN));
            cuda::SelectiveScanArgs a;
            a.u = du.p; a.delta = ddel.p; a.z = dz.p; a.B = dB.p; a.C = dC.p; a.A = dA.p; a.D = dD.p; a.delta_bias = ddb.p;
            a.y = dy.p; a.state = ds.p; a.batch = Bn; a.length = L; a.dim = Dm; a.dstate = N; a.chunk = chunk;
            cuda::selective_scan(a);
            cuda::synchronize();
            const double ey = rel_rms(dy.get(ref.size()), ref), es = rel_rms(ds.get(sref.size()), sref);
            unsetenv("SSM_SCAN_ALGO");
            std::printf("[parity] selective scan dstate %zu chunk %4zu %-6s: y %.2e, final state %.2e x RMS\n", N, chunk, algo, ey, es);
            EXPECT_LE(ey, 1e-4);
            EXPECT_LE(es, 1e-4);
        }
    }
}

TEST(CudaKernels, SsdMatchesFloat64Reference) {
    REQUIRE_GPU();
    const std::size_t Bn = 2, L = 1000, Hh = 3, P = 64, N = 64;
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
    auto fill = [&](std::size_t n, auto gen) {
        std::vector<float> v(n);
        for (auto& x : v) x = gen();
        return v;
    };
    auto x = fill(Bn * L * Hh * P, [&] { return nd(rng); }), dt = fill(Bn * L * Hh, [&] { return 0.01f + 0.2f * ud(rng); });
    auto A = fill(Hh, [&] { return -(0.5f + 4.0f * ud(rng)); }), Bm = fill(Bn * L * N, [&] { return nd(rng) / 8.0f; });
    auto Cm = fill(Bn * L * N, [&] { return nd(rng) / 8.0f; }), D = fill(Hh, [&] { return nd(rng); });
    auto s0 = fill(Bn * Hh * P * N, [&] { return nd(rng); });
    std::vector<float> ref(x.size()), sref(s0.size());
    for (std::size_t b = 0; b < Bn; ++b)
        for (std::size_t h = 0; h < Hh; ++h) {
            std::vector<double> S(P * N);
            for (std::size_t k = 0; k < P * N; ++k) S[k] = s0[(b * Hh + h) * P * N + k];
            for (std::size_t t = 0; t < L; ++t) {
                const double d = dt[(b * L + t) * Hh + h], a = std::exp(d * A[h]);
                for (std::size_t p = 0; p < P; ++p) {
                    const double xv = x[((b * L + t) * Hh + h) * P + p];
                    double y = 0;
                    for (std::size_t n = 0; n < N; ++n) {
                        double& s = S[p * N + n];
                        s = a * s + d * xv * Bm[(b * L + t) * N + n];
                        y += s * Cm[(b * L + t) * N + n];
                    }
                    ref[((b * L + t) * Hh + h) * P + p] = static_cast<float>(y + D[h] * xv);
                }
            }
            for (std::size_t k = 0; k < P * N; ++k) sref[(b * Hh + h) * P * N + k] = static_cast<float>(S[k]);
        }
    Dev<float> dx(x), ddt(dt), dA(A), dB(Bm), dC(Cm), dD(D), ds(s0), dy(std::vector<float>(ref.size(), NAN));
    cuda::SsdArgs a;
    a.x = dx.p; a.dt = ddt.p; a.A = dA.p; a.B = dB.p; a.C = dC.p; a.D = dD.p; a.y = dy.p; a.state = ds.p;
    a.batch = Bn; a.length = L; a.heads = Hh; a.headdim = P; a.dstate = N; a.chunk = 64;
    cuda::ssd_scan(a);
    cuda::synchronize();
    const double ey = rel_rms(dy.get(ref.size()), ref), es = rel_rms(ds.get(sref.size()), sref);
    std::printf("[parity] ssd: y %.2e, final state %.2e x RMS\n", ey, es);
    EXPECT_LE(ey, 1e-4);
    EXPECT_LE(es, 1e-4);
}
