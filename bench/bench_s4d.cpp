// S4D benchmarks (Google Benchmark). What each family measures, and the FLOP count, are documented in
// bench/README.md; run_all.sh runs them and writes the report.
//
//   BM_S4DStream/H:/N:/block:   one S4D layer (gelu, glu) streamed through ssm::Stream, `block` frames per
//                               process call; ns_per_sample (per layer) and GFLOPs (GFLOP/s).
//   BM_S4DBatch/<backend>/<len>/threads:   the realistic audio model (encoder 1→64, 4 pre-norm residual S4D
//                               blocks H=64 N=64, decoder) through ssm::Batch on 1 minute or 1 hour of 16 kHz mono;
//                               the hour is fed in chunks of 2^16 frames through one reused pair of buffers.
//   BM_S4DConv/<backend>/N:/dtmin:   the convolution alone: one S4D layer H=64 with activation and output "none"
//                               (y = K∗u + Du), Batch with 1 thread; ns per sample per channel → cost model.
//   BM_FftwLimit/M:/out:       FFTW's own r2c + c2r pair of size M (planned as the library plans), counted as
//                               `out` outputs per pair (the plan's outputs_per_fft): samples/s per channel.
//   BM_ConvVsFftw/N:/dtmin:    the floor's ratio in one process: BM_S4DConv's path and FFTW's pairs of its size,
//                               alternated 40 times, the fastest of each (CPU time): conv_ns, fftw_ns, pct_of_fftw.
//
// Own flags (with Google Benchmark's): --hour=none|fft|all (which 1-hour runs to include; default fft)
//                                      --cost=0|1 (the full cost-model sweep, else only N=64; default 1)
//                                      --fftw=M:out,... (FFTW-limit sizes: fft_size:outputs_per_fft of BM_S4DConv)
#include <benchmark/benchmark.h>
#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bench_models.hpp"

namespace {

using namespace ssm;

constexpr double kRate = 16000.0;
constexpr std::size_t kMinute = 60 * 16000, kHour = 3600 * 16000;

/** FLOPs per sample of one S4D layer, as documented in README.md: 16 per complex state (state update
 * x' = Āx + B̄u: 6 real mul/add for each of the real and imaginary parts; output 2·Re(Cx'): 2 mul + 2 add),
 * N/2 complex states per channel, plus the output 1×1 conv (2·H·2H for GLU, 2·H·H for linear).
 * Not counted: D·u, bias, the activation, the GLU gate. */
double s4d_flops_per_sample(std::size_t H, std::size_t N, const std::string& output) {
    const double conv = output == "glu" ? 2.0 * H * 2 * H : output == "linear" ? 2.0 * H * H : 0.0;
    return 16.0 * static_cast<double>(H) * static_cast<double>(N / 2) + conv;
}

// ---- streaming ---------------------------------------------------------------------------------------------------

void BM_S4DStream(benchmark::State& st) {
    const auto H = static_cast<std::size_t>(st.range(0)), N = static_cast<std::size_t>(st.range(1)),
               block = static_cast<std::size_t>(st.range(2));
    bench::S4DParams p;
    p.H = H;
    p.N = N;
    auto model = bench::single_s4d(p);
    Stream s(model);
    s.prepare({0, block, 0});
    const std::size_t T = 2048;  // frames per iteration (a multiple of every block size swept)
    std::vector<float> in(T * H), out(T * H);
    bench::fill_noise(in.data(), in.size(), 7);
    for (auto _ : st) {
        for (std::size_t t = 0; t < T; t += block) s.process(in.data() + t * H, out.data() + t * H, block);
        benchmark::ClobberMemory();
    }
    const double frames = static_cast<double>(T);
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * T));
    st.counters["ns_per_sample"] = benchmark::Counter(frames * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    st.counters["GFLOPs"] = benchmark::Counter(frames * s4d_flops_per_sample(H, N, p.output) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["flops_per_sample"] = s4d_flops_per_sample(H, N, p.output);
}

// ---- batch, realistic model --------------------------------------------------------------------------------------

// The same model streamed (ssm::Stream, blocks of 64 frames, one thread): what batch is measured against.
void BM_S4DStreamModel(benchmark::State& st, std::size_t total) {
    bench::S4DParams p;
    auto model = bench::audio_model(p, 4);
    Stream s(model);
    constexpr std::size_t block = 64;
    s.prepare({.sample_rate = kRate, .max_block = block, .channels = 1});
    std::vector<float> in(total), out(total);
    bench::fill_noise(in.data(), total, 11);
    for (auto _ : st) {
        for (std::size_t t = 0; t < total; t += block) s.process(in.data() + t, out.data() + t, std::min(block, total - t));
        benchmark::ClobberMemory();
    }
    const double frames = static_cast<double>(total);
    st.SetLabel("stream block 64");
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(total));
    st.counters["x_realtime"] = benchmark::Counter(frames / kRate, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["ns_per_sample"] = benchmark::Counter(frames * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    st.counters["threads"] = 1;
}

void BM_S4DBatch(benchmark::State& st, Backend backend, std::size_t total, std::size_t threads) {
    bench::S4DParams p;  // H = 64, N = 64, gelu, glu
    auto model = bench::audio_model(p, 4);
    BatchOptions o;
    o.backend = backend;
    o.threads = threads;
    Batch batch(model, o);
    std::string plan;
    for (const auto& lp : batch.plan())
        if (lp.backend != "pointwise") plan = lp.backend + " M=" + std::to_string(lp.fft_size) + " L=" + std::to_string(lp.kernel_length);
    st.SetLabel(plan);
    if (total <= kMinute) {  // the whole signal in memory, one call (as Batch::run)
        std::vector<float> in(total), out(total);
        bench::fill_noise(in.data(), total, 11);
        for (auto _ : st) {
            batch.process(in.data(), out.data(), total);
            benchmark::ClobberMemory();
        }
    } else {  // the hour in chunks: a 2^20-frame noise source read round-robin, one reused output buffer
        const std::size_t chunk = 1 << 16, src = 1 << 20;
        std::vector<float> in(src), out(chunk);
        bench::fill_noise(in.data(), src, 11);
        for (auto _ : st) {
            for (std::size_t done = 0; done < total;) {
                const std::size_t n = std::min(chunk, total - done), off = done % src;
                batch.process(in.data() + off, out.data(), n);
                done += n;
            }
            benchmark::ClobberMemory();
        }
    }
    const double frames = static_cast<double>(total);
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(total));
    st.counters["x_realtime"] = benchmark::Counter(frames / kRate, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["ns_per_sample"] = benchmark::Counter(frames * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    st.counters["threads"] = static_cast<double>(batch.threads());
}

// ---- the convolution alone: cost model and FFT-conv path ---------------------------------------------------------

// One S4D layer H=64 with activation and output "none" (y = K∗u + Du) through a 1-thread Batch.
Batch conv_batch(Backend backend, std::size_t N, double dt_min) {
    bench::S4DParams p;
    p.H = 64;
    p.N = N;
    p.activation = "none";
    p.output = "none";
    p.dt_min = dt_min;
    BatchOptions o;
    o.backend = backend;
    o.threads = 1;
    return Batch(bench::single_s4d(p), o);
}

void BM_S4DConv(benchmark::State& st, Backend backend, std::size_t N, double dt_min) {
    const std::size_t H = 64;
    Batch batch = conv_batch(backend, N, dt_min);
    const auto& lp = batch.plan().front();
    const std::size_t frames = 1 << 17;  // four internal chunks of 2^15
    std::vector<float> in(frames * H), out(frames * H);
    bench::fill_noise(in.data(), in.size(), 5);
    for (auto _ : st) {
        batch.process(in.data(), out.data(), frames);
        benchmark::ClobberMemory();
    }
    const double samples = static_cast<double>(frames * H);
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(frames * H));
    st.counters["ns_per_sample_channel"] = benchmark::Counter(samples * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    st.counters["N"] = static_cast<double>(N);
    st.counters["kernel_length"] = static_cast<double>(lp.kernel_length);
    st.counters["fft_size"] = static_cast<double>(lp.fft_size);
    if (lp.fft_size > 0) {
        const std::size_t eff = lp.outputs_per_fft;
        st.counters["outputs_per_fft"] = static_cast<double>(eff);
        // the library's work units per output: M·log2(M)/outputs × its cache factor (s4d.cpp, per_output)
        const double m = static_cast<double>(lp.fft_size);
        st.counters["mlogm_per_out"] = m * std::log2(m) / static_cast<double>(eff) * (1.0 + 0.16 * std::max(0.0, std::log2(m / 16384.0)));
    }
    st.SetLabel(lp.backend);
}

// ---- FFTW's own limit --------------------------------------------------------------------------------------------

void BM_FftwLimit(benchmark::State& st, std::size_t M, std::size_t outputs) {
    const std::size_t bins = M / 2 + 1;
    auto* x = static_cast<float*>(fftwf_malloc(sizeof(float) * M));
    auto* f = static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * bins));
    fftwf_set_timelimit(0.25);  // as the library plans (and the wisdom it left in this process is reused)
    fftwf_plan fwd = fftwf_plan_dft_r2c_1d(static_cast<int>(M), x, f, FFTW_MEASURE);
    fftwf_plan inv = fftwf_plan_dft_c2r_1d(static_cast<int>(M), f, x, FFTW_MEASURE);
    bench::fill_noise(x, M, 3);
    const float scale = 1.0f / static_cast<float>(M);
    for (auto _ : st) {
        fftwf_execute(fwd);
        fftwf_execute(inv);
        x[0] *= scale;  // keep values bounded; the full rescale is folded into the kernel in the library
        benchmark::ClobberMemory();
    }
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(outputs));
    st.counters["ns_per_sample_channel"] = benchmark::Counter(static_cast<double>(outputs) * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    st.counters["fft_size"] = static_cast<double>(M);
    st.counters["outputs_per_fft"] = static_cast<double>(outputs);
    fftwf_destroy_plan(fwd);
    fftwf_destroy_plan(inv);
    fftwf_free(x);
    fftwf_free(f);
}

// ---- the two side by side: the floor's ratio measured in one process ---------------------------------------------
// One round = one Batch::process of 2^15 frames × 64 channels through the FFT path, then as many bare r2c+c2r pairs of
// the plan's size as the path needs for those outputs, each timed in this process's CPU time; 40 rounds, the minimum
// of each (what the machine gives at its quietest: a busy neighbour slows both, unevenly, in separate runs). The
// pairs reuse the plan FFTW's wisdom made for the library in this process, so both run the same algorithm.
double cpu_ns() {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

void BM_ConvVsFftw(benchmark::State& st, std::size_t N, double dt_min) {
    const std::size_t H = 64, frames = 1 << 15;
    Batch batch = conv_batch(Backend::fft, N, dt_min);
    const std::size_t M = batch.plan().front().fft_size, outs = batch.plan().front().outputs_per_fft, bins = M / 2 + 1;
    auto* x = static_cast<float*>(fftwf_malloc(sizeof(float) * M));
    auto* f = static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * bins));
    fftwf_set_timelimit(0.25);
    fftwf_plan fwd = fftwf_plan_dft_r2c_1d(static_cast<int>(M), x, f, FFTW_MEASURE);
    fftwf_plan inv = fftwf_plan_dft_c2r_1d(static_cast<int>(M), f, x, FFTW_MEASURE);
    bench::fill_noise(x, M, 3);
    std::vector<float> in(frames * H), out(frames * H);
    bench::fill_noise(in.data(), in.size(), 5);
    batch.process(in.data(), out.data(), frames);  // warm
    const std::size_t pairs = (frames * H + outs - 1) / outs;
    double conv = INFINITY, lim = INFINITY;
    for (auto _ : st) {
        double t0 = cpu_ns();
        batch.process(in.data(), out.data(), frames);
        benchmark::ClobberMemory();
        conv = std::min(conv, (cpu_ns() - t0) / static_cast<double>(frames * H));
        t0 = cpu_ns();
        for (std::size_t k = 0; k < pairs; ++k) {
            fftwf_execute(fwd);
            fftwf_execute(inv);
            x[0] *= 1.0f / static_cast<float>(M);
        }
        benchmark::ClobberMemory();
        lim = std::min(lim, (cpu_ns() - t0) / static_cast<double>(pairs * outs));
    }
    st.counters["conv_ns"] = conv;
    st.counters["fftw_ns"] = lim;
    st.counters["pct_of_fftw"] = 100.0 * lim / conv;
    st.counters["fft_size"] = static_cast<double>(M);
    st.counters["outputs_per_fft"] = static_cast<double>(outs);
    fftwf_destroy_plan(fwd);
    fftwf_destroy_plan(inv);
    fftwf_free(x);
    fftwf_free(f);
}

std::string fmt_dt(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    std::string hour = "fft";
    bool cost = true;
    std::set<std::pair<std::size_t, std::size_t>> fftw_sizes;
    std::vector<char*> rest{argv[0]};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.rfind("--hour=", 0) == 0) hour = a.substr(7);
        else if (a.rfind("--cost=", 0) == 0) cost = a.substr(7) != "0";
        else if (a.rfind("--fftw=", 0) == 0) {
            std::size_t pos = 7;
            while (pos < a.size()) {
                std::size_t end = a.find(',', pos);
                if (end == std::string::npos) end = a.size();
                const std::string item = a.substr(pos, end - pos);
                const std::size_t colon = item.find(':');
                if (colon != std::string::npos)
                    fftw_sizes.insert({std::stoul(item.substr(0, colon)), std::stoul(item.substr(colon + 1))});
                pos = end + 1;
            }
        }
        else rest.push_back(argv[i]);
    }
    int rargc = static_cast<int>(rest.size());
    benchmark::Initialize(&rargc, rest.data());

    for (long H : {16, 64, 256})
        for (long N : {16, 64})
            for (long block : {1, 32, 64, 256})
                benchmark::RegisterBenchmark("BM_S4DStream", BM_S4DStream)->ArgNames({"H", "N", "block"})->Args({H, N, block})->MinTime(0.2);

    benchmark::RegisterBenchmark("BM_S4DBatch/stream/1min/threads:1", BM_S4DStreamModel, kMinute)
        ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(5);
    for (std::size_t threads : {1, 2})
        for (auto [name, backend] : {std::pair{"fft", Backend::fft}, std::pair{"recurrence", Backend::recurrence}}) {
            const std::string tag = "/threads:" + std::to_string(threads);
            benchmark::RegisterBenchmark(("BM_S4DBatch/" + std::string(name) + "/1min" + tag).c_str(), BM_S4DBatch, backend, kMinute, threads)
                ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(5);
            if (hour == "all" || (hour == "fft" && backend == Backend::fft))
                benchmark::RegisterBenchmark(("BM_S4DBatch/" + std::string(name) + "/1h" + tag).c_str(), BM_S4DBatch, backend, kHour, threads)
                    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(1);
        }

    // The cost-model sweep. Each configuration builds its Batch inside the benchmark (not at registration), so
    // run_all.sh can run them one process each: a crash in one (see README: FFTW alignment) loses only that one.
    const std::vector<std::size_t> Ns = cost ? std::vector<std::size_t>{4, 8, 16, 32, 64, 128, 256} : std::vector<std::size_t>{64};
    const std::vector<double> dts = cost ? std::vector<double>{0.001, 0.003, 0.01, 0.02} : std::vector<double>{0.001};
    for (std::size_t N : Ns) {
        benchmark::RegisterBenchmark(("BM_S4DConv/recurrence/N:" + std::to_string(N)).c_str(), BM_S4DConv, Backend::recurrence, N, 0.001)->MinTime(0.3)->UseRealTime();
        for (double dt : dts)
            benchmark::RegisterBenchmark(("BM_S4DConv/fft/N:" + std::to_string(N) + "/dtmin:" + fmt_dt(dt)).c_str(), BM_S4DConv, Backend::fft, N, dt)->MinTime(0.3)->UseRealTime();
    }
    for (std::size_t N : {std::size_t{4}, std::size_t{64}, std::size_t{256}})
        for (double dt : {0.001, 0.003, 0.01, 0.02})
            benchmark::RegisterBenchmark(("BM_ConvVsFftw/N:" + std::to_string(N) + "/dtmin:" + fmt_dt(dt)).c_str(), BM_ConvVsFftw, N, dt)
                ->Iterations(40)->Unit(benchmark::kMillisecond);
    // FFTW's limit for the sizes the conv runs reported (fft_size, outputs_per_fft), given as --fftw=M:out,M:out
    for (const auto& [M, out] : fftw_sizes)
        benchmark::RegisterBenchmark(("BM_FftwLimit/M:" + std::to_string(M) + "/out:" + std::to_string(out)).c_str(), BM_FftwLimit, M, out)->MinTime(0.3);

    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
