// Mamba / Mamba-2 benchmarks (Google Benchmark); bench/run_mamba.sh runs them with the PyTorch peer
// (bench/mamba_peer.py) and writes bench/results/mamba-<date>-<host>.md.
//
//   BM_MambaStream/D:/N:/block:     one Mamba mixer (expand 2, d_conv 4, dt_rank D/16) streamed through ssm::Stream,
//                                   `block` frames per call, one thread; ns_per_frame, GFLOPs (GFLOP/s, FLOPs below).
//   BM_Mamba2Stream/D:/N:/P:/block: one Mamba-2 mixer (expand 2, head_dim P, 1 group), the same way.
//   BM_SignalBatch/<family>[-ssd|-recurrence]/threads:  a signal model (Linear 1→64, 2 blocks d_model 64 expand 2, d_state 64 (Mamba-2:
//                                   head_dim 32), Linear 64→1) over 1 minute of 16 kHz through ssm::Batch;
//                                   x_realtime; BM_SignalStream the same model streamed at block 64 (one stream).
//   BM_CopyBandwidth               memcpy of 512 MiB: the machine's copy bandwidth (bytes read per second).
//   BM_LMStep/<dir>                one token step (Stream, block 1) of a checkpoint directory given by --lm=DIR[,DIR]
//                                   (e.g. a 130M-class config written by mamba_peer.py); ms_per_token, load_s.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ssmstream/ssmstream.hpp"

namespace {

using namespace ssm;
using nlohmann::json;

struct Builder {
    std::mt19937 rng{1};
    std::normal_distribution<double> nd{0.0, 1.0};
    std::vector<TensorData> t;
    void add(const std::string& name, std::vector<std::int64_t> shape, double scale, double offset = 0.0) {
        std::size_t n = 1;
        for (auto d : shape) n *= static_cast<std::size_t>(d);
        std::vector<double> v(n);
        for (auto& x : v) x = offset + scale * nd(rng);
        t.push_back({name, std::move(shape), std::move(v), DType::F32});
    }
};

json mixer(Builder& b, const std::string& name, bool two, std::int64_t D, std::int64_t N, std::int64_t P) {
    const std::int64_t E = 2 * D, K = 4;
    const std::string m = name + ".";
    if (!two) {
        const std::int64_t R = (D + 15) / 16;
        b.add(m + "in_proj.weight", {2 * E, D}, 1.0 / std::sqrt(double(D)));
        b.add(m + "conv1d.weight", {E, 1, K}, 0.3);
        b.add(m + "conv1d.bias", {E}, 0.1);
        b.add(m + "x_proj.weight", {R + 2 * N, E}, 1.0 / std::sqrt(double(E)));
        b.add(m + "dt_proj.weight", {E, R}, 0.3);
        b.add(m + "dt_proj.bias", {E}, 0.3, -4.0);
        b.add(m + "A_log", {E, N}, 0.3, 1.0);
        b.add(m + "D", {E}, 0.1, 1.0);
        b.add(m + "out_proj.weight", {D, E}, 1.0 / std::sqrt(double(E)));
        return {{"type", "mamba"}, {"name", name}, {"d_model", D}, {"d_inner", E}, {"d_state", N}, {"d_conv", K}, {"dt_rank", R}};
    }
    const std::int64_t H = E / P, CD = E + 2 * N;
    b.add(m + "in_proj.weight", {E + CD + H, D}, 1.0 / std::sqrt(double(D)));
    b.add(m + "conv1d.weight", {CD, 1, K}, 0.3);
    b.add(m + "conv1d.bias", {CD}, 0.1);
    b.add(m + "dt_bias", {H}, 0.3, -4.0);
    b.add(m + "A_log", {H}, 0.3, 1.0);
    b.add(m + "D", {H}, 0.1, 1.0);
    b.add(m + "norm.weight", {E}, 0.1, 1.0);
    b.add(m + "out_proj.weight", {D, E}, 1.0 / std::sqrt(double(E)));
    return {{"type", "mamba2"}, {"name", name}, {"d_model", D}, {"d_inner", E}, {"d_state", N}, {"d_conv", K}, {"head_dim", P},
            {"n_groups", 1}, {"chunk_size", 64}};
}

std::shared_ptr<const Model> build(Builder& b, const json& layers) {
    const json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "bench"}, {"sample_rate", 0}, {"layers", layers}};
    const auto bytes = encode_safetensors({{"ssmstream", cfg.dump()}}, b.t);
    return Model::from_tensor_file(TensorFile::from_bytes(bytes, "bench"));
}

std::shared_ptr<const Model> mixer_model(bool two, std::int64_t D, std::int64_t N, std::int64_t P) {
    Builder b;
    return build(b, json::array({mixer(b, "mixer", two, D, N, P)}));
}

std::shared_ptr<const Model> signal_model(bool two) {
    Builder b;
    const std::int64_t D = 64;
    json layers = json::array();
    b.add("encoder.weight", {D, 1}, 0.5);
    b.add("encoder.bias", {D}, 0.1);
    layers.push_back({{"type", "linear"}, {"name", "encoder"}, {"in", 1}, {"out", D}});
    for (int i = 0; i < 2; ++i) {
        const std::string n = "layers." + std::to_string(i);
        b.add(n + ".norm.weight", {D}, 0.1, 1.0);
        layers.push_back({{"type", "residual"}, {"prenorm", true},
                          {"body", json::array({{{"type", "rmsnorm"}, {"name", n + ".norm"}, {"dim", D}}, mixer(b, n + ".mixer", two, D, 64, 32)})}});
    }
    b.add("decoder.weight", {1, D}, 0.3);
    b.add("decoder.bias", {1}, 0.1);
    layers.push_back({{"type", "linear"}, {"name", "decoder"}, {"in", D}, {"out", 1}});
    return build(b, layers);
}

/** FLOPs per frame of a Mamba mixer (multiply-add = 2): the four projections, the convolution, and per (channel,
 * state) 7 for the recurrence (Δ·A, exp counted as 1, h·e^{ΔA} + ΔuB: 2 FMAs, C·h accumulate: 1 FMA). */
double mamba_flops(double D, double N) {
    const double E = 2 * D, R = std::ceil(D / 16), K = 4;
    return 2 * D * 2 * E + 2 * K * E + 2 * E * (R + 2 * N) + 2 * R * E + 7 * E * N + 2 * E * D;
}
/** Mamba-2 (1 group): projections, convolution over x/B/C, 4 per (channel, state): s·e + Δx·B (FMA), C·s (FMA). */
double mamba2_flops(double D, double N, double P) {
    const double E = 2 * D, H = E / P, CD = E + 2 * N, K = 4;
    return 2 * D * (E + CD + H) + 2 * K * CD + 4 * E * N + 2 * E * D;
}

void stream_bench(benchmark::State& st, const std::shared_ptr<const Model>& m, std::size_t block, double flops) {
    Stream s(m);
    s.prepare({0, block, 0});
    const std::size_t cin = m->info().in_channels, cout = m->info().out_channels, frames = 4096;
    std::vector<float> in(frames * cin), out(frames * cout);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    for (auto& x : in) x = nd(rng);
    for (auto _ : st) {
        for (std::size_t t = 0; t < frames; t += block) s.process(in.data() + t * cin, out.data() + t * cout, std::min(block, frames - t));
        benchmark::DoNotOptimize(out.data());
    }
    const double n = static_cast<double>(frames);
    st.counters["ns_per_frame"] = benchmark::Counter(n * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    if (flops > 0) st.counters["GFLOPs"] = benchmark::Counter(n * flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_MambaStream(benchmark::State& st) {
    const auto D = st.range(0), N = st.range(1);
    stream_bench(st, mixer_model(false, D, N, 0), static_cast<std::size_t>(st.range(2)), mamba_flops(double(D), double(N)));
}
void BM_Mamba2Stream(benchmark::State& st) {
    const auto D = st.range(0), N = st.range(1), P = st.range(2);
    stream_bench(st, mixer_model(true, D, N, P), static_cast<std::size_t>(st.range(3)), mamba2_flops(double(D), double(N), double(P)));
}

constexpr std::size_t kMinute = 60 * 16000;

void BM_SignalBatch(benchmark::State& st, bool two, std::size_t threads, Backend backend = Backend::automatic) {
    const auto m = signal_model(two);
    BatchOptions o;
    o.threads = threads;
    o.backend = backend;
    Batch b(m, o);
    std::vector<float> in(kMinute), out(kMinute);
    std::mt19937 rng(4);
    std::normal_distribution<float> nd;
    for (auto& x : in) x = nd(rng);
    for (auto _ : st) {
        b.reset();
        for (std::size_t t = 0; t < kMinute; t += 1 << 16) b.process(in.data() + t, out.data() + t, std::min<std::size_t>(1 << 16, kMinute - t));
    }
    st.counters["x_realtime"] = benchmark::Counter(60.0, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["threads"] = static_cast<double>(b.threads());
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    st.counters["peak_rss_mb"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
}
void BM_SignalStream(benchmark::State& st, bool two) {
    const auto m = signal_model(two);
    Stream s(m);
    s.prepare({0, 64, 0});
    std::vector<float> in(kMinute), out(kMinute);
    std::mt19937 rng(4);
    std::normal_distribution<float> nd;
    for (auto& x : in) x = nd(rng);
    for (auto _ : st) {
        s.reset();
        for (std::size_t t = 0; t < kMinute; t += 64) s.process(in.data() + t, out.data() + t, 64);
    }
    st.counters["x_realtime"] = benchmark::Counter(60.0, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_CopyBandwidth(benchmark::State& st) {
    const std::size_t n = std::size_t{512} << 20;
    std::vector<char> a(n, 1), b(n, 2);
    for (auto _ : st) {
        std::memcpy(b.data(), a.data(), n);
        benchmark::DoNotOptimize(b.data());
    }
    st.counters["GBps_read"] = benchmark::Counter(static_cast<double>(n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_LMStep(benchmark::State& st, std::string dir) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto m = load_model(dir);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Stream s(m);
    s.prepare({0, 1, 0});
    std::vector<float> logits(m->info().out_channels);
    float tok = 1.0f;
    for (auto _ : st) {
        s.process(&tok, logits.data(), 1);
        tok = static_cast<float>((static_cast<int>(tok) * 31 + 7) % 1000);
    }
    st.counters["ms_per_token"] = benchmark::Counter(1e-3, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    st.counters["load_s"] = load_s;
    st.counters["weight_bytes_f32"] = static_cast<double>(m->info().parameters) * 4.0;
    st.counters["weight_bytes_held"] = static_cast<double>(m->info().weight_bytes);  // BF16 matrices stay BF16
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> lms;
    std::vector<char*> rest;
    for (int i = 0; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.rfind("--lm=", 0) == 0) {
            std::stringstream ss(a.substr(5));
            std::string d;
            while (std::getline(ss, d, ',')) if (!d.empty()) lms.push_back(d);
        } else {
            rest.push_back(argv[i]);
        }
    }
    for (long block : {1L, 64L}) {
        benchmark::RegisterBenchmark("BM_MambaStream", BM_MambaStream)->ArgNames({"D", "N", "block"})->Args({256, 16, block})->MinTime(0.3);
        benchmark::RegisterBenchmark("BM_Mamba2Stream", BM_Mamba2Stream)->ArgNames({"D", "N", "P", "block"})->Args({256, 64, 64, block})->MinTime(0.3);
    }
    for (bool two : {false, true}) {
        const std::string fam = two ? "mamba2" : "mamba";
        benchmark::RegisterBenchmark(("BM_SignalStream/" + fam + "/block:64").c_str(), [two](benchmark::State& s) { BM_SignalStream(s, two); })
            ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(2);
        for (std::size_t th : {1u, 2u}) {
            benchmark::RegisterBenchmark(("BM_SignalBatch/" + fam + "/threads:" + std::to_string(th)).c_str(),
                                         [two, th](benchmark::State& s) { BM_SignalBatch(s, two, th); })
                ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(2);
            if (two)  // Mamba-2's two scans forced: SSD (the parallel view) and the recurrence (auto's cost model)
                for (auto [tag, b] : {std::pair{"ssd", Backend::fft}, std::pair{"recurrence", Backend::recurrence}})
                    benchmark::RegisterBenchmark(("BM_SignalBatch/" + fam + "-" + tag + "/threads:" + std::to_string(th)).c_str(),
                                                 [two, th, b](benchmark::State& s) { BM_SignalBatch(s, two, th, b); })
                        ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1)->Repetitions(2);
        }
    }
    benchmark::RegisterBenchmark("BM_CopyBandwidth", BM_CopyBandwidth)->Unit(benchmark::kMillisecond)->MinTime(0.5);
    for (const auto& d : lms)
        benchmark::RegisterBenchmark(("BM_LMStep/" + std::filesystem::path(d).filename().string()).c_str(),
                                     [d](benchmark::State& s) { BM_LMStep(s, d); })->Unit(benchmark::kMillisecond)->MinTime(2.0);
    int n = static_cast<int>(rest.size());
    benchmark::Initialize(&n, rest.data());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
