// LRU, S5, DSS and MEGA-EMA benchmarks (Google Benchmark); bench/run_lti_a.sh runs them beside the JAX reference code
// (bench/lti_a_peer.py) in one run and writes bench/results/lti_a-<date>-<host>.md.
//
//   BM_LtiAStream/<family>/H:64/N:64/block:B   one layer (LRU/S5: the recurrence alone; DSS: softmax kernel over 4096
//                                              taps, GELU and output_linear; EMA: ndim 64, silu) streamed through
//                                              ssm::Stream, B frames per call, one thread; ns_per_frame (one frame =
//                                              H samples), ns_per_sample (per channel).
//   BM_LtiABatch/<family>/threads:T            the same layer over 2^17 frames through ssm::Batch (chunked parallel
//                                              scan; DSS/EMA: split over channels); Mframes_per_s, ns_per_frame.
#include <benchmark/benchmark.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench_models.hpp"
#include "ssmstream/ssmstream.hpp"

namespace {

using namespace ssm;
using nlohmann::json;

constexpr std::int64_t kH = 64, kN = 64;

std::shared_ptr<const Model> layer_model(const std::string& family) {
    std::mt19937 rng(1);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::uniform_real_distribution<double> ud(0.0, 1.0);
    std::vector<TensorData> t;
    auto add = [&](const std::string& name, std::vector<std::int64_t> shape, auto gen) {
        std::size_t n = 1;
        for (auto d : shape) n *= static_cast<std::size_t>(d);
        std::vector<double> v(n);
        for (auto& x : v) x = gen();
        t.push_back({name, std::move(shape), std::move(v), DType::F32});
    };
    json layer;
    if (family == "lru") {  // minimal-LRU's initialisation (r_min 0, r_max 1, max_phase 6.28)
        add("l.nu_log", {kN}, [&] { return std::log(-0.5 * std::log(ud(rng) + 1e-12)); });
        add("l.theta_log", {kN}, [&] { return std::log(6.28 * ud(rng) + 1e-12); });
        add("l.gamma_log", {kN}, [&] { return 0.5 * nd(rng); });
        for (const char* n : {"l.B_re", "l.B_im"}) add(n, {kN, kH}, [&] { return nd(rng) / std::sqrt(2.0 * kH); });
        for (const char* n : {"l.C_re", "l.C_im"}) add(n, {kH, kN}, [&] { return nd(rng) / std::sqrt(double(kN)); });
        add("l.D", {kH}, [&] { return nd(rng); });
        layer = {{"type", "lru"}, {"name", "l"}, {"d_model", kH}, {"d_hidden", kN}};
    } else if (family == "dss") {  // DSS defaults: softmax, Λ = −0.5 + i·πn, sep_dt_re_im, kernel normalised over 4096
        std::int64_t i = 0;
        add("l.kernel.Lambda", {kN, 2}, [&] { return (i++ % 2 == 0) ? -0.5 : M_PI * double(i / 2); });
        add("l.kernel.log_dt", {kH, 2}, [&] { return std::log(0.001) + ud(rng) * (std::log(0.1) - std::log(0.001)); });
        add("l.kernel.W", {1, kH, kN, 2}, [&] { return nd(rng); });
        add("l.D", {1, kH}, [&] { return nd(rng); });
        add("l.output_linear.weight", {kH, kH}, [&] { return nd(rng) / std::sqrt(double(kH)); });
        add("l.output_linear.bias", {kH}, [&] { return 0.1 * nd(rng); });
        layer = {{"type", "dss"}, {"name", "l"}, {"d_model", kH}, {"d_state", kN}, {"kernel_length", 4096}};
    } else if (family == "ema") {  // MultiHeadEMA(64, ndim=64), its reset_parameters distributions
        for (const char* n : {"l.delta", "l.alpha"}) add(n, {kH, kN, 1}, [&] { return 0.2 * nd(rng); });
        std::int64_t i = 0;
        add("l.beta", {kH, kN, 1}, [&] { return ((i++ % kN) % 2 ? -1.0 : 1.0) + 0.02 * nd(rng); });
        add("l.gamma", {kH, kN}, [&] { return nd(rng); });
        add("l.omega", {kH}, [&] { return nd(rng); });
        layer = {{"type", "ema"}, {"name", "l"}, {"d_model", kH}, {"ndim", kN}};
    } else {  // S5: HiPPO-like eigenvalues, zoh, conj_sym
        add("l.Lambda_re", {kN}, [&] { return -0.5; });
        std::int64_t i = 0;
        add("l.Lambda_im", {kN}, [&] { return M_PI * double(i++); });
        add("l.B", {kN, kH, 2}, [&] { return nd(rng) / std::sqrt(double(kH)); });
        add("l.C", {kH, kN, 2}, [&] { return nd(rng) / std::sqrt(double(kN)); });
        add("l.D", {kH}, [&] { return nd(rng); });
        add("l.log_step", {kN, 1}, [&] { return std::log(0.001) + ud(rng) * (std::log(0.1) - std::log(0.001)); });
        layer = {{"type", "s5"}, {"name", "l"}, {"d_model", kH}, {"d_state", kN}};
    }
    const json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "bench"}, {"sample_rate", 0},
                      {"layers", json::array({layer})}};
    const auto bytes = encode_safetensors({{"ssmstream", cfg.dump()}}, t);
    return Model::from_tensor_file(TensorFile::from_bytes(bytes, "bench"));
}

std::vector<float> noise(std::size_t n) {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

void BM_LtiAStream(benchmark::State& st, const std::string& family) {
    const auto block = static_cast<std::size_t>(st.range(0));
    const auto model = layer_model(family);
    Stream s(model);
    s.prepare({0, block, 0});
    const std::size_t frames = 1 << 14;
    const auto in = noise(frames * kH);
    std::vector<float> out(in.size());
    for (auto _ : st) {
        for (std::size_t t = 0; t + block <= frames; t += block) s.process(in.data() + t * kH, out.data() + t * kH, block);
        benchmark::DoNotOptimize(out.data());
    }
    const double n = double(st.iterations()) * double(frames / block * block);
    st.counters["ns_per_frame"] = benchmark::Counter(n * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    st.counters["ns_per_sample"] = benchmark::Counter(n * kH * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_LtiABatch(benchmark::State& st, const std::string& family) {
    const auto model = layer_model(family);
    BatchOptions o;
    o.threads = static_cast<std::size_t>(st.range(0));
    o.backend = st.range(1) == 1 ? Backend::recurrence : Backend::automatic;
    Batch b(model, o);
    st.SetLabel(bench::plan_label(b));
    const std::size_t frames = 1 << 17;
    const auto in = noise(frames * kH);
    std::vector<float> out(in.size());
    for (auto _ : st) {
        b.reset();
        b.process(in.data(), out.data(), frames);
        benchmark::DoNotOptimize(out.data());
    }
    const double n = double(st.iterations()) * double(frames);
    st.counters["Mframes_per_s"] = benchmark::Counter(n * 1e-6, benchmark::Counter::kIsRate);
    st.counters["ns_per_frame"] = benchmark::Counter(n * 1e-9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace

BENCHMARK_CAPTURE(BM_LtiAStream, lru, std::string("lru"))->Name("BM_LtiAStream/lru/H:64/N:64")->ArgName("block")->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_LtiAStream, s5, std::string("s5"))->Name("BM_LtiAStream/s5/H:64/N:64")->ArgName("block")->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_LtiABatch, lru, std::string("lru"))->Name("BM_LtiABatch/lru/H:64/N:64")->ArgNames({"threads", "recurrence"})->Args({1, 0})->Args({2, 0})->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_LtiABatch, s5, std::string("s5"))->Name("BM_LtiABatch/s5/H:64/N:64")->ArgNames({"threads", "recurrence"})->Args({1, 0})->Args({2, 0})->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_CAPTURE(BM_LtiAStream, dss, std::string("dss"))->Name("BM_LtiAStream/dss/H:64/N:64")->ArgName("block")->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_LtiAStream, ema, std::string("ema"))->Name("BM_LtiAStream/ema/H:64/N:64")->ArgName("block")->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_LtiABatch, dss, std::string("dss"))->Name("BM_LtiABatch/dss/H:64/N:64")->ArgNames({"threads", "recurrence"})->Args({1, 0})->Args({2, 0})->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_LtiABatch, ema, std::string("ema"))->Name("BM_LtiABatch/ema/H:64/N:64")->ArgNames({"threads", "recurrence"})->Args({1, 0})->Args({2, 0})->Args({1, 1})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
